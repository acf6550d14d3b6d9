# The CUDA backend (native/src/backends/cuda), chosen by S2S_CUDA (cache or environment):
#   AUTO (default)  build it into s2s_core (and so the addon, tests, benches) when nvcc and a
#                   cuBLASLt library are both found (a CUDA machine); when nvcc is found but
#                   cuBLASLt is not, compile the kernels anyway in the object library
#                   s2s_cuda_kernels (with the CUDA backend of the model path, the CUDA tests and
#                   bench), link them into cuda_link_check (so `npm test` keeps them compiling
#                   and linking) and build a CPU-only binary;
#                   without nvcc, say so and build a CPU-only binary.
#   ON              the full backend wherever nvcc is (a configure error without it).
#   OFF             never look.
# The backend links the CUDA runtime statically and loads cuBLASLt at run time
# (backends/cuda/cublaslt_api.h), so a binary built with it loads and runs on the CPU on any
# machine, and uses a GPU where a driver and libcublasLt.so are found: the published prebuild
# can carry it. cuBLASLt is looked for here only to decide AUTO: in S2S_CUBLAS_ROOT (cache or
# environment; a folder with lib/), the CUDA toolkit, and the `nvidia` Python package's folders
# (pip's nvidia-cublas, e.g. site-packages/nvidia/cu13 or nvidia/cublas). Where its header is
# found too, cublaslt_api_check.cpp compares our declarations with it.
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
set(S2S_CUBLAS_ROOT "$ENV{S2S_CUBLAS_ROOT}" CACHE PATH "Folder holding lib/libcublasLt.so* (and include/cublasLt.h)")
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
if(S2S_CUDA_MODE STREQUAL "ON" OR S2S_CUBLASLT_LIBRARY)
  set(S2S_CUDA_BUILD ON)
endif()

# Architectures: sm_80 machine code (runs on every 8.x GPU: A100, RTX 30/40, L4) and sm_90 with
# PTX (H100/H200, and JIT-compiled on newer GPUs); the compile-only check needs one.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  if(S2S_CUDA_BUILD)
    set(CMAKE_CUDA_ARCHITECTURES "80-real;90")
  else()
    set(CMAKE_CUDA_ARCHITECTURES "90")
  endif()
endif()
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
find_package(CUDAToolkit REQUIRED)

# The lowest compute capability the build has code for (device_query.cpp refuses older GPUs).
set(S2S_CUDA_MIN_CC 1000)
foreach(arch IN LISTS CMAKE_CUDA_ARCHITECTURES)
  string(REGEX MATCH "^[0-9]+" cc "${arch}")
  if(cc AND cc LESS S2S_CUDA_MIN_CC)
    set(S2S_CUDA_MIN_CC ${cc})
  endif()
endforeach()

file(GLOB S2S_CUDA_SOURCES CONFIGURE_DEPENDS native/src/backends/cuda/*.cu)
# nvcc flags: device lambdas for the elementwise ops; -O3 host code like the rest of the core.
set(S2S_CUDA_FLAGS "$<$<COMPILE_LANGUAGE:CUDA>:--extended-lambda;-Xcompiler=-fno-math-errno>")
# The loader tries the cuBLASLt of the runtime it was built with first; the device query knows
# the oldest GPU the kernels run on.
set_source_files_properties(native/src/backends/cuda/cublaslt_loader.cpp PROPERTIES
  COMPILE_DEFINITIONS S2S_CUDA_RUNTIME_MAJOR=${CUDAToolkit_VERSION_MAJOR})
set_source_files_properties(native/src/backends/cuda/device_query.cpp PROPERTIES
  COMPILE_DEFINITIONS S2S_CUDA_MIN_CC=${S2S_CUDA_MIN_CC})
if(S2S_CUBLASLT_INCLUDE_DIR)
  # cublaslt_api_check.cpp: our declarations against the real header (see its comment).
  target_include_directories(s2s_core PRIVATE ${S2S_CUBLASLT_INCLUDE_DIR} ${CUDAToolkit_INCLUDE_DIRS})
endif()

if(S2S_CUDA_BUILD)
  set(S2S_CUBLASLT_SEEN "${S2S_CUBLASLT_LIBRARY}")
  if(NOT S2S_CUBLASLT_SEEN)
    set(S2S_CUBLASLT_SEEN "none here; loaded at run time")
  endif()
  message(STATUS "CUDA backend: built (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, static CUDA runtime, "
                 "cuBLASLt loaded at run time [${S2S_CUBLASLT_SEEN}], archs ${CMAKE_CUDA_ARCHITECTURES})")
  target_sources(s2s_core PRIVATE ${S2S_CUDA_SOURCES})
  # s2s_core was created before CMAKE_CUDA_ARCHITECTURES was set above, so its property (copied
  # from the variable when a target is created) is empty unless the archs came from the command
  # line: set it (CMake refuses CUDA sources in a target without architectures).
  set_property(TARGET s2s_core PROPERTY CUDA_ARCHITECTURES ${CMAKE_CUDA_ARCHITECTURES})
  target_link_libraries(s2s_core PUBLIC CUDA::cudart_static ${CMAKE_DL_LIBS})
  target_compile_definitions(s2s_core PUBLIC S2S_HAVE_CUDA=1)
  target_compile_options(s2s_core PRIVATE ${S2S_CUDA_FLAGS})
  return()
endif()

# nvcc without cuBLASLt (this development machine, CI): the addon stays CPU-only, and the
# kernels are compiled and linked, not run, so they cannot rot unnoticed.
set(S2S_CUDA_COMPILE_ONLY ON)
message(STATUS "CUDA backend: not built (nvcc found, no cuBLASLt library; S2S_CUDA=ON builds "
               "it anyway, loading cuBLASLt at run time). Compile-only targets s2s_cuda_kernels "
               "and cuda_link_check check the kernels")
if(S2S_TESTS)
  # The backend as the full build compiles it (S2S_HAVE_CUDA=1): the kernels, the model path's
  # CUDA backend and the device query (plain C++ files that change with S2S_HAVE_CUDA).
  add_library(s2s_cuda_kernels OBJECT ${S2S_CUDA_SOURCES}
              native/src/backends/cuda/device_query.cpp native/src/backends/cuda/cuda_backend.cpp)
  # The CUDA test and bench compile here as the full build would compile them.
  add_library(s2s_cuda_tests_compiled OBJECT
              native/tests/test_cuda_ops.cpp native/tests/test_cuda_models.cpp
              bench/native/bench_cuda_train.cpp bench/native/bench_cuda_decode.cpp)
  foreach(target s2s_cuda_kernels s2s_cuda_tests_compiled)
    target_include_directories(${target} PRIVATE native/include native/src native/tests)
    target_link_libraries(${target} PRIVATE CUDA::cudart_static)
    target_compile_definitions(${target} PRIVATE S2S_HAVE_CUDA=1 S2S_VERSION="${S2S_VERSION}")
    target_compile_options(${target} PRIVATE ${S2S_CUDA_FLAGS})
  endforeach()
  # Linked with the static CUDA runtime: every symbol the backend uses is defined; run without a
  # GPU: the backend reports that cleanly (native/tests/cuda_link_check.cpp).
  add_executable(cuda_link_check native/tests/cuda_link_check.cpp $<TARGET_OBJECTS:s2s_cuda_kernels>)
  target_include_directories(cuda_link_check PRIVATE native/include native/src)
  target_compile_definitions(cuda_link_check PRIVATE S2S_HAVE_CUDA=1)
  target_link_libraries(cuda_link_check PRIVATE s2s_core CUDA::cudart_static ${CMAKE_DL_LIBS})
  add_test(NAME cuda_link_check COMMAND cuda_link_check)
endif()
