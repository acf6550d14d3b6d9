# The CUDA backend (native/src/backends/cuda), chosen by S2S_CUDA (cache or environment):
#   AUTO (default)  build it into s2s_core (and so the addon, tests, benches) when nvcc and the
#                   cuBLASLt library are both found; when nvcc is found but cuBLASLt is not,
#                   compile the kernels anyway in the object library s2s_cuda_kernels (with the
#                   CUDA backend of the model path, the CUDA tests and bench, so `npm test` keeps
#                   them compiling) and build a CPU-only binary;
#                   without nvcc, say so and build a CPU-only binary.
#   ON              the full backend or a configure error saying what is missing.
#   OFF             never look.
# cuBLASLt is searched in S2S_CUBLAS_ROOT (cache or environment; a folder with include/ and
# lib/), the CUDA toolkit, and the `nvidia` Python package's folders (pip's nvidia-cublas, e.g.
# site-packages/nvidia/cu13 or nvidia/cublas), where PyTorch machines have it.
# Included by CMakeLists.txt after s2s_core is defined.

if(NOT DEFINED S2S_CUDA)
  set(S2S_CUDA_DEFAULT AUTO)
  if(DEFINED ENV{S2S_CUDA} AND NOT "$ENV{S2S_CUDA}" STREQUAL "")
    set(S2S_CUDA_DEFAULT "$ENV{S2S_CUDA}")
  endif()
endif()
set(S2S_CUDA "${S2S_CUDA_DEFAULT}" CACHE STRING "CUDA backend: AUTO, ON or OFF")
set_property(CACHE S2S_CUDA PROPERTY STRINGS AUTO ON OFF)
string(TOUPPER "${S2S_CUDA}" S2S_CUDA_MODE)
if(NOT S2S_CUDA_MODE MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "S2S_CUDA: expected AUTO, ON or OFF, got '${S2S_CUDA}'")
endif()

set(S2S_CUDA_BUILD OFF)
set(S2S_CUDA_COMPILE_ONLY OFF)
if(S2S_CUDA_MODE STREQUAL "OFF")
  message(STATUS "CUDA backend: off (S2S_CUDA=OFF)")
  return()
endif()

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  if(S2S_CUDA_MODE STREQUAL "ON")
    message(FATAL_ERROR "S2S_CUDA=ON but no CUDA compiler (nvcc) was found; put nvcc on PATH or set CMAKE_CUDA_COMPILER")
  endif()
  message(STATUS "CUDA backend: not built (no nvcc found; S2S_CUDA=AUTO)")
  return()
endif()

# Where cuBLASLt may be: an explicit root, the toolkit next to nvcc, pip's nvidia packages.
set(S2S_CUBLAS_ROOT "$ENV{S2S_CUBLAS_ROOT}" CACHE PATH "Folder holding include/cublasLt.h and lib/libcublasLt.so*")
get_filename_component(S2S_NVCC_BIN "${CMAKE_CUDA_COMPILER}" REALPATH)
get_filename_component(S2S_NVCC_BIN "${S2S_NVCC_BIN}" DIRECTORY)
get_filename_component(S2S_CUDA_TOOLKIT_ROOT "${S2S_NVCC_BIN}" DIRECTORY)
set(S2S_CUBLAS_HINTS ${S2S_CUBLAS_ROOT} ${S2S_CUDA_TOOLKIT_ROOT} /usr/local/cuda)
find_program(S2S_PYTHON3 NAMES python3)
if(S2S_PYTHON3)
  execute_process(
    COMMAND "${S2S_PYTHON3}" -c "import nvidia, os; print(';'.join(os.path.join(p, s) for p in nvidia.__path__ for s in ('cu13', 'cu12', 'cublas')))"
    OUTPUT_VARIABLE S2S_PIP_NVIDIA_DIRS OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  list(APPEND S2S_CUBLAS_HINTS ${S2S_PIP_NVIDIA_DIRS})
endif()
find_path(S2S_CUBLASLT_INCLUDE_DIR cublasLt.h HINTS ${S2S_CUBLAS_HINTS}
          PATH_SUFFIXES include targets/x86_64-linux/include targets/sbsa-linux/include)
find_library(S2S_CUBLASLT_LIBRARY NAMES cublasLt libcublasLt.so.13 libcublasLt.so.12
             HINTS ${S2S_CUBLAS_HINTS} PATH_SUFFIXES lib lib64 targets/x86_64-linux/lib)

# Architectures: sm_80 machine code (runs on every 8.x GPU: A100, RTX 30/40) and sm_90 with PTX
# (H100/H200, and JIT-compiled on newer GPUs); the compile-only check needs one.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  if(S2S_CUBLASLT_INCLUDE_DIR AND S2S_CUBLASLT_LIBRARY)
    set(CMAKE_CUDA_ARCHITECTURES "80-real;90")
  else()
    set(CMAKE_CUDA_ARCHITECTURES "90")
  endif()
endif()
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
find_package(CUDAToolkit REQUIRED)

file(GLOB S2S_CUDA_SOURCES CONFIGURE_DEPENDS native/src/backends/cuda/*.cu)
# nvcc flags: device lambdas for the elementwise ops; -O3 host code like the rest of the core.
set(S2S_CUDA_FLAGS "$<$<COMPILE_LANGUAGE:CUDA>:--extended-lambda;-Xcompiler=-fno-math-errno>")

if(S2S_CUBLASLT_INCLUDE_DIR AND S2S_CUBLASLT_LIBRARY)
  set(S2S_CUDA_BUILD ON)
  message(STATUS "CUDA backend: built (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, cuBLASLt ${S2S_CUBLASLT_LIBRARY}, archs ${CMAKE_CUDA_ARCHITECTURES})")
  target_sources(s2s_core PRIVATE ${S2S_CUDA_SOURCES})
  # s2s_core was created before CMAKE_CUDA_ARCHITECTURES was set above, so its property (copied
  # from the variable when a target is created) is empty unless the archs came from the command
  # line: set it (CMake refuses CUDA sources in a target without architectures).
  set_property(TARGET s2s_core PROPERTY CUDA_ARCHITECTURES ${CMAKE_CUDA_ARCHITECTURES})
  target_include_directories(s2s_core PRIVATE ${S2S_CUBLASLT_INCLUDE_DIR})
  target_link_libraries(s2s_core PUBLIC CUDA::cudart ${S2S_CUBLASLT_LIBRARY})
  target_compile_definitions(s2s_core PUBLIC S2S_HAVE_CUDA=1)
  target_compile_options(s2s_core PRIVATE ${S2S_CUDA_FLAGS})
  return()
endif()

if(S2S_CUDA_MODE STREQUAL "ON")
  message(FATAL_ERROR "S2S_CUDA=ON: nvcc was found but not the cuBLASLt library/header "
                      "(searched ${S2S_CUBLAS_HINTS}); set S2S_CUBLAS_ROOT to a folder with "
                      "include/cublasLt.h and lib/libcublasLt.so*")
endif()

# nvcc without cuBLASLt (this development machine, CI if it had nvcc): the addon stays CPU-only,
# and the kernels are compiled, not linked, so they cannot rot unnoticed.
set(S2S_CUDA_COMPILE_ONLY ON)
if(NOT S2S_CUBLASLT_INCLUDE_DIR)
  list(FILTER S2S_CUDA_SOURCES EXCLUDE REGEX "/gemm\\.cu$")
  message(STATUS "CUDA backend: not built (nvcc found, cuBLASLt not; set S2S_CUBLAS_ROOT). "
                 "Compile-only target s2s_cuda_kernels checks the kernels; gemm.cu (the cuBLASLt "
                 "caller) is left out: no cublasLt.h")
else()
  message(STATUS "CUDA backend: not built (nvcc and cublasLt.h found, no libcublasLt). "
                 "Compile-only target s2s_cuda_kernels checks every .cu file, gemm.cu included")
endif()
if(S2S_TESTS)
  # The CUDA test and bench compile here as the full build would compile them (S2S_HAVE_CUDA=1).
  # The plain-C++ files that are only compiled with S2S_HAVE_CUDA (the model path's CUDA backend,
  # the device query) are compiled here the way the full build compiles them.
  add_library(s2s_cuda_kernels OBJECT ${S2S_CUDA_SOURCES}
              native/src/backends/cuda/device_query.cpp native/src/backends/cuda/cuda_backend.cpp
              native/tests/test_cuda_ops.cpp native/tests/test_cuda_models.cpp
              bench/native/bench_cuda_train.cpp bench/native/bench_cuda_decode.cpp)
  target_include_directories(s2s_cuda_kernels PRIVATE native/include native/src native/tests)
  if(S2S_CUBLASLT_INCLUDE_DIR)
    target_include_directories(s2s_cuda_kernels PRIVATE ${S2S_CUBLASLT_INCLUDE_DIR})
  endif()
  target_link_libraries(s2s_cuda_kernels PRIVATE CUDA::cudart)
  target_compile_definitions(s2s_cuda_kernels PRIVATE S2S_HAVE_CUDA=1 S2S_VERSION="${S2S_VERSION}")
  target_compile_options(s2s_cuda_kernels PRIVATE ${S2S_CUDA_FLAGS})
endif()
