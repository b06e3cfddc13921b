// The fault server's host-memory mappings, each with a residency bitmap (one
// bit per page: installed or not). Appended under a lock, read lock-free.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "faultline/fault_server.h"

namespace faultline {

struct Mapping {
  GuestMapping layout;
  uint64_t allowed_ioctls = 0;                        // what UFFDIO_REGISTER said may be used here
  std::unique_ptr<std::atomic<uint64_t>[]> resident;  // bit per page

  uint64_t host_begin() const { return reinterpret_cast<uint64_t>(layout.host_addr); }
  uint64_t host_end() const { return host_begin() + layout.size; }
  uint64_t pages() const { return layout.size / layout.page_size; }
  uint64_t page_index(uint64_t host_addr) const {
    return (host_addr - host_begin()) / layout.page_size;
  }
  uint64_t guest_address(uint64_t host_addr) const {
    return layout.guest_base + (host_addr - host_begin());
  }
  void mark_resident(uint64_t host_addr, uint64_t len);
  bool is_resident(uint64_t page) const {
    return (resident[page / 64].load(std::memory_order_acquire) >> (page % 64)) & 1;
  }
};

class MappingTable {
 public:
  static constexpr size_t kMaxMappings = 64;

  // Rejects overlap with an existing mapping (host or guest side).
  Status add(const GuestMapping& layout, uint64_t allowed_ioctls);
  Mapping* find_host(uint64_t host_addr);
  Mapping* find_guest(uint64_t guest_addr, uint64_t size);
  size_t size() const { return count_.load(std::memory_order_acquire); }
  Mapping& at(size_t i) { return mappings_[i]; }

 private:
  std::mutex write_mu_;
  std::array<Mapping, kMaxMappings> mappings_{};
  std::atomic<size_t> count_{0};
};

}  // namespace faultline
