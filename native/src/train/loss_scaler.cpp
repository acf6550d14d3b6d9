// DynamicLossScaler (s2s/train/loss_scaler.h): GradScaler's update rule on the host.
#include "s2s/train/loss_scaler.h"

#include <cmath>

#include "s2s/error.h"

namespace s2s {

namespace {
constexpr const char* kOp = "loss_scaler";
}

DynamicLossScaler::DynamicLossScaler(const LossScalerOptions& o) : options_(o) {
  S2S_REQUIRE(std::isfinite(o.init_scale) && o.init_scale > 0.0f, code::kArgument, kOp,
              "expected init_scale > 0 and finite, got ", o.init_scale);
  S2S_REQUIRE(std::isfinite(o.growth_factor) && o.growth_factor > 1.0f, code::kArgument, kOp,
              "expected growth_factor > 1, got ", o.growth_factor);
  S2S_REQUIRE(o.backoff_factor > 0.0f && o.backoff_factor < 1.0f, code::kArgument, kOp,
              "expected backoff_factor in (0, 1), got ", o.backoff_factor);
  S2S_REQUIRE(o.growth_interval >= 1, code::kArgument, kOp,
              "expected growth_interval >= 1, got ", o.growth_interval);
  state_.scale = o.init_scale;
}

float DynamicLossScaler::inverse_scale() const {
  return options_.enabled ? 1.0f / state_.scale : 1.0f;
}

// torch's _amp_update_scale_: on inf, scale *= backoff and the tracker restarts; otherwise the
// tracker counts this good step and, on reaching growth_interval, the scale grows (only if the
// product is still finite in fp32) and the tracker restarts.
bool DynamicLossScaler::update(bool found_inf) {
  if (!options_.enabled) return true;
  if (found_inf) {
    state_.scale = state_.scale * options_.backoff_factor;
    state_.growth_tracker = 0;
    ++skipped_;
    return false;
  }
  const int64_t successful = state_.growth_tracker + 1;
  if (successful == options_.growth_interval) {
    const float grown = state_.scale * options_.growth_factor;
    if (std::isfinite(grown)) state_.scale = grown;
    state_.growth_tracker = 0;
  } else {
    state_.growth_tracker = successful;
  }
  return true;
}

void DynamicLossScaler::load_state(const LossScalerState& s) {
  S2S_REQUIRE(std::isfinite(s.scale) && s.scale > 0.0f, code::kArgument, kOp,
              "expected a saved scale > 0 and finite, got ", s.scale);
  S2S_REQUIRE(s.growth_tracker >= 0 && s.growth_tracker < options_.growth_interval,
              code::kArgument, kOp, "expected a saved growth_tracker in [0, ",
              options_.growth_interval, "), got ", s.growth_tracker);
  state_ = s;
}

}  // namespace s2s
