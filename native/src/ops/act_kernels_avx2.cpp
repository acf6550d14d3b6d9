// AVX2 + FMA build of the activation kernels (compiled with -mavx2 -mfma; see act_kernels.h).
#define S2S_ACT_KERNELS_NAME act_kernels_avx2
#define S2S_ACT_KERNELS_LABEL "avx2"
#include "ops/act_kernels_impl.h"
