#include "os_linux/mapping_table.h"

#include <fmt/format.h>

namespace faultline {

void Mapping::mark_resident(uint64_t host_addr, uint64_t len) {
  const uint64_t first = page_index(host_addr);
  const uint64_t last = page_index(host_addr + len - 1);
  for (uint64_t page = first; page <= last; ++page) {
    resident[page / 64].fetch_or(uint64_t{1} << (page % 64), std::memory_order_release);
  }
}

Status MappingTable::add(const GuestMapping& layout, uint64_t allowed_ioctls) {
  const auto host = reinterpret_cast<uint64_t>(layout.host_addr);
  std::lock_guard lock(write_mu_);
  const size_t n = count_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < n; ++i) {
    const Mapping& m = mappings_[i];
    const bool host_overlap = host < m.host_end() && m.host_begin() < host + layout.size;
    const bool guest_overlap = layout.guest_base < m.layout.guest_base + m.layout.size &&
                               m.layout.guest_base < layout.guest_base + layout.size;
    if (host_overlap || guest_overlap) {
      return invalid_argument(fmt::format(
          "mapping guest [{:#x}, +{:#x}) at host {:#x} overlaps the mapping of guest [{:#x}, "
          "+{:#x}) at host {:#x}",
          layout.guest_base, layout.size, host, m.layout.guest_base, m.layout.size,
          m.host_begin()));
    }
  }
  if (n == kMaxMappings) {
    return invalid_argument(fmt::format("at most {} mappings per fault server", kMaxMappings));
  }
  Mapping& m = mappings_[n];
  m.layout = layout;
  m.allowed_ioctls = allowed_ioctls;
  const uint64_t words = (layout.size / layout.page_size + 63) / 64;
  m.resident = std::make_unique<std::atomic<uint64_t>[]>(words);
  count_.store(n + 1, std::memory_order_release);
  return Status::ok();
}

Mapping* MappingTable::find_host(uint64_t host_addr) {
  const size_t n = count_.load(std::memory_order_acquire);
  for (size_t i = 0; i < n; ++i) {
    Mapping& m = mappings_[i];
    if (host_addr >= m.host_begin() && host_addr < m.host_end()) return &m;
  }
  return nullptr;
}

Mapping* MappingTable::find_guest(uint64_t guest_addr, uint64_t size) {
  const size_t n = count_.load(std::memory_order_acquire);
  for (size_t i = 0; i < n; ++i) {
    Mapping& m = mappings_[i];
    const uint64_t base = m.layout.guest_base;
    if (guest_addr >= base && guest_addr - base < m.layout.size &&
        size <= m.layout.size - (guest_addr - base)) {
      return &m;
    }
  }
  return nullptr;
}

}  // namespace faultline
