# The CUDA backend on the SIMT simulator (native/tests/simt_simulator.h): its own sources — every
# .cu file, plus the plain C++ files that change with S2S_HAVE_CUDA — compiled as C++ against the
# CUDA runtime and cuBLASLt stand-ins (native/tests/simt_cuda/), and the CUDA tests linked against
# them: test_cuda_ops_sim and test_cuda_models_sim run test_cuda_ops.cpp / test_cuda_models.cpp
# with every kernel executed thread by thread on the CPU. No nvcc or GPU needed (Linux), so CI
# runs the kernels on every change. Included from CMakeLists.txt for tests
# when the real CUDA backend is not built (with it, the tests run on the GPU instead).
#
# About 5 s (ops, and again under each of two other schedules) and 95 s (models) on one core of
# the development machine.
#
# C++ cannot parse two pieces of CUDA syntax; each .cu file is copied into the build tree with
#   kernel<<<grid, block, smem, stream>>>(args)
#     ->  ::s2s::simt::cuda_launch("kernel", kernel, grid, block, smem, stream, args)
#   extern __shared__ [__align__(n)] T name[];   ->  T* name = ::s2s::simt::cuda_dynamic_smem<T>();
# and each static shared array is declared to the simulator, which counts and poisons it:
#   __shared__ T name[n];  ->  S2S_SIMT_STATIC_SHARED T name[n];
#                              ::s2s::simt::declare_static_shared(name, sizeof(name));
# (any other use of __shared__, __align__ on a static array included, stops the configuration).
# (kernels are launched by name with their template arguments written out).
# .cuh headers are rewritten too, into a folder that shadows native/src on the include path.
file(GLOB S2S_SIM_CU_SOURCES CONFIGURE_DEPENDS native/src/backends/cuda/*.cu
     native/src/backends/cuda/*.cuh)
set(S2S_SIM_GENERATED "")
foreach(cu IN LISTS S2S_SIM_CU_SOURCES)
  get_filename_component(stem ${cu} NAME_WE)
  get_filename_component(ext ${cu} EXT)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${cu})
  file(READ ${cu} text)
  string(REGEX REPLACE "extern __shared__ (__align__\\([0-9]+\\) )?([A-Za-z_0-9]+) ([A-Za-z_0-9]+)\\[\\];"
         "\\2* \\3 = ::s2s::simt::cuda_dynamic_smem<\\2>();" text "${text}")
  string(REGEX REPLACE "__shared__ ([A-Za-z_0-9:]+) ([A-Za-z_0-9]+)(\\[[^;]*\\]);"
         "S2S_SIMT_STATIC_SHARED \\1 \\2\\3; ::s2s::simt::declare_static_shared(\\2, sizeof(\\2));"
         text "${text}")
  string(REGEX REPLACE "([A-Za-z_][A-Za-z_0-9]*(<[^<>;()]*>)?)<<<([^;]*)>>>\\(\\)"
         "::s2s::simt::cuda_launch(\"\\1\", \\1, \\3)" text "${text}")
  string(REGEX REPLACE "([A-Za-z_][A-Za-z_0-9]*(<[^<>;()]*>)?)<<<([^;]*)>>>\\("
         "::s2s::simt::cuda_launch(\"\\1\", \\1, \\3, " text "${text}")
  if(text MATCHES "<<<|__shared__")
    message(FATAL_ERROR "cuda_sim.cmake: ${cu} has CUDA syntax the rewrite does not cover")
  endif()
  if(ext STREQUAL ".cuh")
    set(out ${CMAKE_BINARY_DIR}/simt_cuda/include/backends/cuda/${stem}.cuh)
  else()
    set(out ${CMAKE_BINARY_DIR}/simt_cuda/${stem}_cu.cpp)
    list(APPEND S2S_SIM_GENERATED ${out})
  endif()
  file(CONFIGURE OUTPUT ${out} CONTENT "// Generated from ${cu} by cmake/cuda_sim.cmake.\n${text}" @ONLY)
endforeach()

add_library(s2s_cuda_sim OBJECT ${S2S_SIM_GENERATED}
            native/tests/simt_cuda/simt_cuda_runtime.cpp native/tests/simt_cuda/cublaslt_sim.cpp
            native/src/backends/cuda/cuda_backend.cpp native/src/backends/cuda/device_query.cpp
            native/src/nn/cpu_backend.cpp)
set_property(TARGET s2s_cuda_sim PROPERTY POSITION_INDEPENDENT_CODE ON)  # also in the sim addon
# The stand-in headers come before any real CUDA include path.
target_include_directories(s2s_cuda_sim BEFORE PRIVATE native/tests/simt_cuda native/tests
                           ${CMAKE_BINARY_DIR}/simt_cuda/include)
target_include_directories(s2s_cuda_sim PRIVATE native/include native/src)
target_compile_definitions(s2s_cuda_sim PRIVATE $<TARGET_PROPERTY:s2s_core,COMPILE_DEFINITIONS>
                                                 S2S_HAVE_CUDA=1)
# Device code's `#pragma unroll` means nothing to GCC; no FMA contraction, as __fmul_rn & co.
# promise separately rounded operations.
target_compile_options(s2s_cuda_sim PRIVATE -Wno-unknown-pragmas -ffp-contract=off)

foreach(name test_cuda_ops test_cuda_models)
  add_executable(${name}_sim native/tests/${name}.cpp $<TARGET_OBJECTS:s2s_cuda_sim>)
  target_include_directories(${name}_sim BEFORE PRIVATE native/tests/simt_cuda
                             ${CMAKE_BINARY_DIR}/simt_cuda/include)
  target_include_directories(${name}_sim PRIVATE native/src native/tests)
  target_compile_definitions(${name}_sim PRIVATE S2S_HAVE_CUDA=1 S2S_SIMT_SIM=1)
  target_compile_options(${name}_sim PRIVATE -Wno-unknown-pragmas)
  target_link_libraries(${name}_sim PRIVATE s2s_test_harness)
endforeach()
add_test(NAME test_cuda_ops_sim COMMAND test_cuda_ops_sim)
# The model tests take most of the suite's time (over five minutes in the simulator): two
# shards of them (harness.cpp's S2S_TEST_SHARD, every other case) that ctest runs side by side.
foreach(shard 0 1)
  add_test(NAME test_cuda_models_sim_${shard} COMMAND test_cuda_models_sim)
  set_tests_properties(test_cuda_models_sim_${shard} PROPERTIES ENVIRONMENT
                       S2S_TEST_SHARD=${shard}/2)
endforeach()
# A GPU runs blocks, and a block's threads between collectives, in no promised order: the op
# tests (and the tensor-core attention's) again with the simulator's order reversed and shuffled (simt_simulator.h's Schedule), so
# a race shows as a wrong or NaN result. The model tests check deterministic mode's bits across
# the three orders themselves (cuda_model_deterministic_mode_ignores_the_schedule).
foreach(test test_cuda_ops_sim test_attention_mma_sim)
  foreach(schedule reversed shuffled)
    add_test(NAME ${test}_${schedule} COMMAND ${test})
    set_tests_properties(${test}_${schedule} PROPERTIES ENVIRONMENT S2S_SIMT_SCHEDULE=${schedule})
  endforeach()
endforeach()

# The GPU benchmarks' code paths (training: hand-composed step, model path, fp16 with the loss
# scaler, LoRA with --trace (which finds no CUPTI, or a CUPTI without a GPU, and says so), fp32
# attention with the per-op profile; decoding: generate and the cached-attention op)
# on a tiny GPT so that the first GPU session does not meet a
# host-side bug in them; the figures mean nothing here.
foreach(bench IN ITEMS bench_cuda_train bench_cuda_decode)
  add_executable(${bench}_sim bench/native/${bench}.cpp $<TARGET_OBJECTS:s2s_cuda_sim>)
  target_include_directories(${bench}_sim BEFORE PRIVATE native/tests/simt_cuda
                             ${CMAKE_BINARY_DIR}/simt_cuda/include)
  target_include_directories(${bench}_sim PRIVATE native/src native/tests)
  target_compile_definitions(${bench}_sim PRIVATE S2S_HAVE_CUDA=1 S2S_SIMT_SIM=1)
  target_compile_options(${bench}_sim PRIVATE -Wno-unknown-pragmas)
  target_link_libraries(${bench}_sim PRIVATE s2s_core)
endforeach()
set(S2S_SIM_BENCH_SHAPE --batch 2 --seq 64 --layers 2 --channels 64 --heads 2 --vocab 97
    --warmup 1 --steps 2)
add_test(NAME bench_cuda_train_sim_ops COMMAND bench_cuda_train_sim ${S2S_SIM_BENCH_SHAPE})
add_test(NAME bench_cuda_train_sim_model COMMAND bench_cuda_train_sim ${S2S_SIM_BENCH_SHAPE} --model)
add_test(NAME bench_cuda_train_sim_model_fp16
         COMMAND bench_cuda_train_sim ${S2S_SIM_BENCH_SHAPE} --model --fp16)
add_test(NAME bench_cuda_train_sim_model_llama
         COMMAND bench_cuda_train_sim ${S2S_SIM_BENCH_SHAPE} --model --arch llama --kv-heads 1
                 --intermediate 96 --work-detail)
add_test(NAME bench_cuda_train_sim_model_lora
         COMMAND bench_cuda_train_sim ${S2S_SIM_BENCH_SHAPE} --model --lora 2 --trace)
add_test(NAME bench_cuda_train_sim_profile
         COMMAND bench_cuda_train_sim ${S2S_SIM_BENCH_SHAPE} --attention-fp32 --profile)

# The Node addon with the simulated GPU (build/sim-addon/s2s_train_sim.node; test builds under
# cmake-js only; not in build/Release, where node-gyp-build loads the first .node file it lists): the N-API layer, the TypeScript trainer and CLI see a CUDA device, "SIMT
# simulator (CPU)", whose kernels run in the simulator. test/cuda-simulator.test.ts loads it
# through S2S_ADDON and trains on `device: cuda` end to end.
if(CMAKE_JS_VERSION)
  add_library(s2s_addon_sim SHARED ${S2S_NAPI_SOURCES} ${CMAKE_JS_SRC} $<TARGET_OBJECTS:s2s_cuda_sim>)
  set_target_properties(s2s_addon_sim PROPERTIES PREFIX "" SUFFIX ".node" OUTPUT_NAME "s2s_train_sim"
                        LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/sim-addon)
  target_include_directories(s2s_addon_sim PRIVATE ${CMAKE_JS_INC} ${NODE_ADDON_API_DIR})
  target_compile_definitions(s2s_addon_sim PRIVATE
    NAPI_VERSION=8 NODE_ADDON_API_DISABLE_DEPRECATED NAPI_CPP_EXCEPTIONS
    S2S_COMPILER="${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION} + SIMT simulator")
  target_link_libraries(s2s_addon_sim PRIVATE s2s_core ${CMAKE_JS_LIB})
endif()
add_test(NAME bench_cuda_decode_sim
         COMMAND bench_cuda_decode_sim --batch 2 --prompt 9 --new 5 --layers 2 --channels 64
                 --heads 2 --vocab 97 --repeat 1 --contexts 40,300)
