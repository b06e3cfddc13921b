// The Pager's guest-physical regions: written rarely under a lock, read on
// every fault without one. Entries are append-only and published with a
// release store of the count, so readers never see a half-written region.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "faultline/pager.h"
#include "faultline/status.h"

namespace faultline {

class RegionTable {
 public:
  static constexpr size_t kMaxRegions = Pager::kMaxRegions;

  Status add(uint64_t base, uint64_t size);
  bool contains(Gpa gpa) const;
  bool contains_range(uint64_t base, uint64_t size) const;
  // How many of the `size` bytes from `base` lie in the region holding `base`.
  uint64_t room_after(uint64_t base, uint64_t size) const;
  std::vector<GuestRange> snapshot() const;

 private:
  std::mutex write_mu_;
  std::array<GuestRange, kMaxRegions> regions_{};
  std::atomic<size_t> count_{0};
};

}  // namespace faultline
