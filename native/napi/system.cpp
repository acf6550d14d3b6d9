// JS family "system": build and machine information, thread count, kernel path selection.
#include <napi.h>

#include <thread>

#include "errors.h"
#include "s2s/cpu_features.h"
#include "s2s/device.h"
#include "s2s/kernels.h"
#include "s2s/thread_pool.h"

#ifndef S2S_COMPILER
#define S2S_COMPILER "unknown"
#endif

namespace s2s_napi {

static Napi::Array strings(Napi::Env env, const std::vector<std::string>& items) {
  Napi::Array a = Napi::Array::New(env, items.size());
  for (size_t i = 0; i < items.size(); ++i) a.Set(static_cast<uint32_t>(i), items[i]);
  return a;
}

static Napi::Value info(const Napi::CallbackInfo& cb) {
  return guarded(cb, [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    out.Set("version", S2S_VERSION);
    out.Set("compiler", S2S_COMPILER);
    out.Set("napiVersion", NAPI_VERSION);
    const s2s::CudaStatus cs = s2s::cuda_status();
    out.Set("backends", cs.built ? strings(env, {"cpu", "cuda"}) : strings(env, {"cpu"}));
    Napi::Object cuda = Napi::Object::New(env);
    cuda.Set("built", cs.built);
    cuda.Set("runtimeVersion", cs.runtime_version);
    cuda.Set("driverVersion", cs.driver_version);
    Napi::Array devices = Napi::Array::New(env, cs.devices.size());
    for (size_t i = 0; i < cs.devices.size(); ++i) {
      const s2s::CudaDeviceInfo& d = cs.devices[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("index", d.index);
      o.Set("name", d.name);
      o.Set("computeCapability", std::to_string(d.compute_major) + "." + std::to_string(d.compute_minor));
      o.Set("multiprocessors", d.multiprocessors);
      o.Set("totalBytes", static_cast<double>(d.total_bytes));
      o.Set("freeBytes", static_cast<double>(d.free_bytes));
      o.Set("supported", d.supported);
      devices.Set(static_cast<uint32_t>(i), o);
    }
    cuda.Set("devices", devices);
    cuda.Set("usable", cs.usable());
    if (cs.built) {
      cuda.Set("minComputeCapability", std::to_string(cs.min_compute_capability / 10) + "." +
                                           std::to_string(cs.min_compute_capability % 10));
    }
    if (!cs.cublaslt_library.empty()) {
      Napi::Object lt = Napi::Object::New(env);
      lt.Set("library", cs.cublaslt_library);
      const size_t v = cs.cublaslt_version;  // e.g. 130100
      lt.Set("version", v == 0 ? std::string() : std::to_string(v / 10000) + "." +
                                                     std::to_string(v / 100 % 100) + "." +
                                                     std::to_string(v % 100));
      cuda.Set("cublasLt", lt);
    }
    if (!cs.cublaslt_problem.empty()) cuda.Set("cublasLtProblem", cs.cublaslt_problem);
    if (!cs.problem.empty()) cuda.Set("problem", cs.problem);
    out.Set("cuda", cuda);
    const s2s::CpuFeatures& f = s2s::cpu_features();
    Napi::Object cpu = Napi::Object::New(env);
    cpu.Set("vendor", f.vendor);
    cpu.Set("brand", f.brand);
    cpu.Set("logicalCores", static_cast<double>(std::thread::hardware_concurrency()));
    cpu.Set("features", strings(env, s2s::cpu_feature_names()));
    out.Set("cpu", cpu);
    std::vector<std::string> isas;
    for (s2s::Isa isa : s2s::supported_isas()) isas.emplace_back(s2s::isa_name(isa));
    out.Set("supportedIsas", strings(env, isas));
    out.Set("bestIsa", s2s::isa_name(s2s::best_isa()));
    out.Set("activeIsa", s2s::isa_name(s2s::active_isa()));
    Napi::Object kernels = Napi::Object::New(env);
    for (const auto& [family, name] : s2s::kernel_choices()) kernels.Set(family, name);
    out.Set("kernels", kernels);
    out.Set("threads", s2s::num_threads());
    return out;
  });
}

static Napi::Value set_threads(const Napi::CallbackInfo& cb) {
  return guarded(cb, [](const Napi::CallbackInfo& info) -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsNumber()) {
      throw_argument("setNumThreads", "expected a thread count (integer >= 1)");
    }
    const double n = info[0].As<Napi::Number>().DoubleValue();
    if (n != static_cast<double>(static_cast<int>(n))) {
      throw_argument("setNumThreads", "expected an integer thread count");
    }
    s2s::set_num_threads(static_cast<int>(n));
    return info.Env().Undefined();
  });
}

static Napi::Value set_isa(const Napi::CallbackInfo& cb) {
  return guarded(cb, [](const Napi::CallbackInfo& info) -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsString()) {
      throw_argument("setIsa", "expected an instruction set name such as 'avx2'");
    }
    s2s::set_isa(s2s::parse_isa(info[0].As<Napi::String>().Utf8Value()));
    return info.Env().Undefined();
  });
}

void register_system(Napi::Env env, Napi::Object exports) {
  exports.Set("info", Napi::Function::New(env, info, "info"));
  exports.Set("setNumThreads", Napi::Function::New(env, set_threads, "setNumThreads"));
  exports.Set("setIsa", Napi::Function::New(env, set_isa, "setIsa"));
}

}  // namespace s2s_napi
