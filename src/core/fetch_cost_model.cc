#include "core/fetch_cost_model.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace faultline {

void FetchCostModel::record(uint64_t bytes, uint64_t ns) {
  const double x = static_cast<double>(bytes);
  const double y = static_cast<double>(ns);
  std::lock_guard lock(mu_);
  const double keep = 1.0 - kDecay;
  w_ = w_ * keep + 1;
  x_ = x_ * keep + x;
  y_ = y_ * keep + y;
  xx_ = xx_ * keep + x * x;
  xy_ = xy_ * keep + x * y;
  samples_.fetch_add(1, std::memory_order_relaxed);
}

FetchCostModel::Fit FetchCostModel::fit() const {
  std::lock_guard lock(mu_);
  if (w_ < 4) return {kPriorCallNs, kPriorByteNs};
  const double mean_x = x_ / w_;
  const double mean_y = y_ / w_;
  const double var_x = xx_ / w_ - mean_x * mean_x;
  double byte_ns = kPriorByteNs;
  // Calls of one size only tell the sum of both costs: keep the prior slope.
  if (var_x > 1.0 && mean_x > 0 && var_x / (mean_x * mean_x) > 1e-3) {
    byte_ns = (xy_ / w_ - mean_x * mean_y) / var_x;
  }
  byte_ns = std::clamp(byte_ns, 0.01, 1e6);
  const double call_ns = std::max(0.0, mean_y - byte_ns * mean_x);
  return {call_ns, byte_ns};
}

double FetchCostModel::per_call_ns() const {
  return fit().call_ns;
}

double FetchCostModel::per_byte_ns() const {
  return fit().byte_ns;
}

uint64_t FetchCostModel::window_for(uint64_t page_size, uint64_t max_window, double ratio) const {
  const Fit f = fit();
  const double budget = ratio * (round_trip_ns() + f.call_ns);
  const double bytes = budget / f.byte_ns;
  if (bytes <= static_cast<double>(page_size)) return page_size;
  if (bytes >= static_cast<double>(max_window)) return std::max(max_window, page_size);
  return std::max(page_size, std::bit_floor(static_cast<uint64_t>(bytes)));
}

bool FetchCostModel::split_pays(uint64_t window) const {
  const Fit f = fit();
  return f.call_ns < f.byte_ns * static_cast<double>(window) / 4;
}

}  // namespace faultline
