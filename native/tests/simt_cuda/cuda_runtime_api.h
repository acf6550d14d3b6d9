// The CUDA runtime stand-in (cuda_runtime.h) under the C API header's name.
#pragma once
#include "cuda_runtime.h"
