#include "table_format.h"

#include <fmt/format.h>

#include <algorithm>

namespace faultline::bench {
namespace {

template <typename T>
T median_of(std::vector<T> values) {
  if (values.empty()) return T{};
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

Outcome median(const std::vector<Outcome>& runs) {
  Outcome m;
  std::vector<double> total, resident;
  std::vector<uint64_t> faults, p50, p99;
  for (const Outcome& o : runs) {
    total.push_back(o.total_ms);
    if (o.resident_ms >= 0) resident.push_back(o.resident_ms);
    faults.push_back(o.faults);
    p50.push_back(o.first_touch.p50_ns);
    p99.push_back(o.first_touch.p99_ns);
    m.wrong = std::max(m.wrong, o.wrong);
    m.aborted = m.aborted || o.aborted;
  }
  m.total_ms = median_of(total);
  m.resident_ms = resident.empty() ? -1 : median_of(resident);
  m.faults = median_of(faults);
  m.first_touch.p50_ns = median_of(p50);
  m.first_touch.p99_ns = median_of(p99);
  return m;
}

std::string fmt_ms(double ms) {
  return ms < 0 ? "-" : fmt::format("{:.0f}", ms);
}

std::string fmt_us(uint64_t ns) {
  return fmt::format("{:.1f}", static_cast<double>(ns) / 1e3);
}

std::string ratio(double a, double b) {
  return a < 0 || b <= 0 ? "-" : fmt::format("{:.2f}x", a / b);
}

std::string verdict(double value, double limit) {
  if (value < 0) return "-";
  return value <= limit ? "met" : "NOT met";
}

}  // namespace faultline::bench
