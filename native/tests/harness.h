// A small test harness for the C++ core: TEST(name) registers a case, CHECK* record failures
// without stopping the case, and main() (harness_main.cpp) runs every case and prints
// "N passed, N failed". Also the helpers most op tests need: seeded random fills, normalised
// error, and a central finite-difference gradient check.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace s2s_test {

struct Case {
  const char* name;
  void (*fn)();
};
std::vector<Case>& registry();
struct Registrar {
  Registrar(const char* name, void (*fn)()) { registry().push_back({name, fn}); }
};
void record_failure(const char* file, int line, const std::string& what);

// Deterministic xorshift generator so fixtures are the same on every machine.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s; }
  float uniform(float lo = -1.f, float hi = 1.f) {
    return lo + (hi - lo) * static_cast<float>((next() >> 40) * (1.0 / 16777216.0));
  }
};
std::vector<float> random_vector(size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f);

// max |a - b| / max(1, |b|) over elements (the tolerance unit used throughout the tests).
double max_normalized_error(const float* a, const float* b, size_t n);
double max_abs_error(const float* a, const float* b, size_t n);

// Central finite differences of a scalar loss with respect to each element of `param`
// (perturbed in place by +-eps and restored). Compares against `analytic` and returns the
// worst |numeric - analytic| / max(1e-2... scale) as described in harness.cpp.
double gradient_check(std::vector<float>& param, const std::vector<float>& analytic,
                      const std::function<double()>& loss, float eps = 1e-2f);

}  // namespace s2s_test

#define TEST(name)                                                        \
  static void name();                                                     \
  static ::s2s_test::Registrar name##_registrar(#name, name);             \
  static void name()

#define CHECK(cond)                                                               \
  do {                                                                            \
    if (!(cond)) ::s2s_test::record_failure(__FILE__, __LINE__, "CHECK(" #cond ")"); \
  } while (0)

#define CHECK_MSG(cond, msg)                                                       \
  do {                                                                             \
    if (!(cond)) ::s2s_test::record_failure(__FILE__, __LINE__, std::string(msg)); \
  } while (0)

// CHECK_LE_TOL(err, tol, what): prints the measured error either way, so logs show margins.
#define CHECK_ERR(err, tol, what)                                                          \
  do {                                                                                     \
    const double e_ = (err);                                                               \
    if (!(e_ <= (tol)))                                                                     \
      ::s2s_test::record_failure(__FILE__, __LINE__,                                       \
                                 std::string(what) + ": error " + std::to_string(e_) +     \
                                     " > tolerance " + std::to_string(double(tol)));       \
  } while (0)

#define CHECK_THROWS_CODE(stmt, code_str)                                                \
  do {                                                                                   \
    bool thrown_ = false;                                                                \
    try {                                                                                \
      stmt;                                                                              \
    } catch (const ::s2s::Error& e_) {                                                   \
      thrown_ = true;                                                                    \
      if (e_.code() != (code_str))                                                       \
        ::s2s_test::record_failure(__FILE__, __LINE__,                                   \
                                   "expected code " + std::string(code_str) + ", got " + \
                                       e_.code() + ": " + e_.what());                    \
    }                                                                                    \
    if (!thrown_)                                                                        \
      ::s2s_test::record_failure(__FILE__, __LINE__, "expected " #stmt " to throw");     \
  } while (0)
