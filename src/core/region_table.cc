#include "core/region_table.h"

#include <fmt/format.h>

#include <algorithm>

namespace faultline {

Status RegionTable::add(uint64_t base, uint64_t size) {
  if (size == 0) return invalid_argument(fmt::format("region at {:#x} is empty", base));
  if (base + size < base) {
    return invalid_argument(
        fmt::format("region [{:#x}, +{:#x}) wraps past the end of the address space", base, size));
  }
  if (base % kMinPageSize != 0 || size % kMinPageSize != 0) {
    return invalid_argument(
        fmt::format("region [{:#x}, +{:#x}) is not aligned to {} bytes", base, size, kMinPageSize));
  }
  std::lock_guard lock(write_mu_);
  const size_t n = count_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < n; ++i) {
    const GuestRange& r = regions_[i];
    if (base < r.base + r.size && r.base < base + size) {
      return invalid_argument(fmt::format("region [{:#x}, {:#x}) overlaps region [{:#x}, {:#x})",
                                          base, base + size, r.base, r.base + r.size));
    }
  }
  if (n == kMaxRegions) {
    return invalid_argument(
        fmt::format("region [{:#x}, +{:#x}): at most {} regions", base, size, kMaxRegions));
  }
  regions_[n] = {base, size};
  count_.store(n + 1, std::memory_order_release);
  return Status::ok();
}

bool RegionTable::contains(Gpa gpa) const {
  return contains_range(gpa, 1);
}

bool RegionTable::contains_range(uint64_t base, uint64_t size) const {
  const size_t n = count_.load(std::memory_order_acquire);
  for (size_t i = 0; i < n; ++i) {
    const GuestRange& r = regions_[i];
    if (base >= r.base && base - r.base < r.size && size <= r.size - (base - r.base)) return true;
  }
  return false;
}

uint64_t RegionTable::room_after(uint64_t base, uint64_t size) const {
  const size_t n = count_.load(std::memory_order_acquire);
  for (size_t i = 0; i < n; ++i) {
    const GuestRange& r = regions_[i];
    if (base >= r.base && base - r.base < r.size) return std::min(size, r.size - (base - r.base));
  }
  return 0;
}

std::vector<GuestRange> RegionTable::snapshot() const {
  const size_t n = count_.load(std::memory_order_acquire);
  return {regions_.begin(), regions_.begin() + static_cast<std::ptrdiff_t>(n)};
}

}  // namespace faultline
