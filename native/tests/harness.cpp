// Test runner and shared helpers (see harness.h).
#include "harness.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "s2s/error.h"

namespace s2s_test {

std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

static int g_failures_in_case = 0;

void record_failure(const char* file, int line, const std::string& what) {
  ++g_failures_in_case;
  std::fprintf(stderr, "    FAIL %s:%d: %s\n", file, line, what.c_str());
}

std::vector<float> random_vector(size_t n, uint64_t seed, float lo, float hi) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}

double max_normalized_error(const float* a, const float* b, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::fabs(double(a[i]) - double(b[i]));
    const double scale = std::fmax(1.0, std::fabs(double(b[i])));
    if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
    if (d / scale > worst) worst = d / scale;
  }
  return worst;
}

double max_abs_error(const float* a, const float* b, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::fabs(double(a[i]) - double(b[i]));
    if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
    if (d > worst) worst = d;
  }
  return worst;
}

// Error per element: |numeric - analytic| / max(1, |numeric|, |analytic|). With fp32 forward
// passes and eps = 1e-2 the truncation error is O(eps^2) and the rounding error O(1e-7 / eps),
// so well-implemented backward passes land near 1e-4.
double gradient_check(std::vector<float>& param, const std::vector<float>& analytic,
                      const std::function<double()>& loss, float eps) {
  double worst = 0;
  for (size_t i = 0; i < param.size(); ++i) {
    const float saved = param[i];
    param[i] = saved + eps;
    const double up = loss();
    param[i] = saved - eps;
    const double down = loss();
    param[i] = saved;
    const double numeric = (up - down) / (2.0 * double(eps));
    const double scale = std::fmax(1.0, std::fmax(std::fabs(numeric), std::fabs(analytic[i])));
    const double err = std::fabs(numeric - double(analytic[i])) / scale;
    if (err > worst) worst = err;
  }
  return worst;
}

}  // namespace s2s_test

namespace {

// S2S_TEST_SHARD=i/n runs every n-th case from the i-th (0-based): ctest runs a long executable
// as n tests side by side (cmake/cuda_sim.cmake). Unset: every case.
struct Shard {
  int index = 0, count = 1;
};

Shard shard_from_env() {
  Shard s;
  const char* v = std::getenv("S2S_TEST_SHARD");
  if (v == nullptr || *v == '\0') return s;
  char slash = 0;
  char rest = 0;
  if (std::sscanf(v, "%d%c%d%c", &s.index, &slash, &s.count, &rest) != 3 || slash != '/' ||
      s.count < 1 || s.index < 0 || s.index >= s.count) {
    std::fprintf(stderr, "S2S_TEST_SHARD: expected i/n with 0 <= i < n, got '%s'\n", v);
    std::exit(2);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : nullptr;
  const Shard shard = shard_from_env();
  int passed = 0, failed = 0, position = -1;
  for (const auto& c : s2s_test::registry()) {
    if (++position % shard.count != shard.index) continue;
    if (filter && std::strstr(c.name, filter) == nullptr) continue;
    s2s_test::g_failures_in_case = 0;
    const auto start = std::chrono::steady_clock::now();
    try {
      c.fn();
    } catch (const s2s::Error& e) {
      s2s_test::record_failure(__FILE__, __LINE__,
                               std::string("uncaught s2s::Error ") + e.code() + ": " + e.what());
    } catch (const std::exception& e) {
      s2s_test::record_failure(__FILE__, __LINE__, std::string("uncaught exception: ") + e.what());
    }
    const bool ok = s2s_test::g_failures_in_case == 0;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // The time, so the suite's slow cases are found (never a pass condition).
    std::printf("%s %s (%.2f s)\n", ok ? "  ok  " : "  FAIL", c.name, seconds);
    std::fflush(stdout);
    ok ? ++passed : ++failed;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
