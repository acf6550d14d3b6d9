// AVX-512 build of the activation kernels (compiled with -mavx512f/bw/vl/dq; see act_kernels.h).
#define S2S_ACT_KERNELS_NAME act_kernels_avx512
#define S2S_ACT_KERNELS_LABEL "avx512"
#include "ops/act_kernels_impl.h"
