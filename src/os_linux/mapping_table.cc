#include "os_linux/mapping_table.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>

namespace faultline {

void PageBitmap::resize(uint64_t pages) {
  words_ = std::make_unique<std::atomic<uint64_t>[]>((pages + 63) / 64);
}

void PageBitmap::set_range(uint64_t first, uint64_t count) {
  for (uint64_t page = first; page < first + count; ++page) {
    words_[page / 64].fetch_or(uint64_t{1} << (page % 64), std::memory_order_release);
  }
}

void PageBitmap::clear_range(uint64_t first, uint64_t count) {
  for (uint64_t page = first; page < first + count; ++page) {
    words_[page / 64].fetch_and(~(uint64_t{1} << (page % 64)), std::memory_order_release);
  }
}

uint64_t Mapping::claim_run(uint64_t first, uint64_t limit) {
  uint64_t n = 0;
  while (n < limit && first + n < pages() && !resident.test(first + n) &&
         !removed.test(first + n) && claimed.test_and_set(first + n)) {
    // Installed between the test and the claim: give it back, stop here.
    if (resident.test(first + n)) {
      claimed.clear_range(first + n, 1);
      break;
    }
    ++n;
  }
  return n;
}

uint64_t Mapping::next_wanted(uint64_t from) const {
  const uint64_t n = pages();
  uint64_t page = from;
  while (page < n) {
    const uint64_t index = page / 64;
    const uint64_t taken = resident.word(index) | removed.word(index) | claimed.word(index);
    const uint64_t free = ~taken & (~uint64_t{0} << (page % 64));
    if (free != 0) {
      const uint64_t found = index * 64 + static_cast<uint64_t>(std::countr_zero(free));
      return found < n ? found : n;
    }
    page = (index + 1) * 64;
  }
  return n;
}

void PageBitmap::copy_range(const PageBitmap& from, uint64_t from_first, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) {
    if (from.test(from_first + i)) set_range(i, 1);
  }
}

void Mapping::mark_resident(uint64_t host_addr, uint64_t len) {
  const uint64_t begin = std::max(host_addr, host_begin());
  const uint64_t end = std::min(host_addr + len, host_end());
  if (begin >= end) return;
  resident.set_range(page_index(begin), page_index(end - 1) - page_index(begin) + 1);
}

uint64_t Mapping::mark_removed(uint64_t host_addr, uint64_t len) {
  const uint64_t begin = std::max(host_addr, host_begin());
  const uint64_t end = std::min(host_addr + len, host_end());
  if (begin >= end) return 0;
  const uint64_t count = page_index(end - 1) - page_index(begin) + 1;
  removed.set_range(page_index(begin), count);
  // Settled: after the userfaultfd closes, the kernel's zero page is right here.
  resident.set_range(page_index(begin), count);
  return count;
}

Status MappingTable::add(const GuestMapping& layout, uint64_t allowed_ioctls) {
  Result<Mapping*> added = append(layout, allowed_ioctls, /*check_guest=*/true);
  return added.is_ok() ? Status::ok() : added.status();
}

Result<Mapping*> MappingTable::add_alias(const GuestMapping& layout, uint64_t allowed_ioctls) {
  return append(layout, allowed_ioctls, /*check_guest=*/false);
}

Result<Mapping*> MappingTable::append(const GuestMapping& layout, uint64_t allowed_ioctls,
                                      bool check_guest) {
  const auto host = reinterpret_cast<uint64_t>(layout.host_addr);
  std::lock_guard lock(write_mu_);
  const size_t n = count_.load(std::memory_order_relaxed);
  for (size_t i = 0; check_guest && i < n; ++i) {
    const Mapping& m = mappings_[i];
    if (m.retired.load()) continue;
    const bool host_overlap = host < m.host_end() && m.host_begin() < host + layout.size;
    const bool guest_overlap =
        layout.gpa < m.layout.gpa + m.layout.size && m.layout.gpa < layout.gpa + layout.size;
    if (host_overlap || guest_overlap) {
      return invalid_argument(fmt::format(
          "mapping guest [{:#x}, +{:#x}) at host {:#x} overlaps the mapping of guest [{:#x}, "
          "+{:#x}) at host {:#x}",
          layout.gpa, layout.size, host, m.layout.gpa, m.layout.size, m.host_begin()));
    }
  }
  if (n == kMaxMappings) {
    return invalid_argument(fmt::format("at most {} mappings per fault server", kMaxMappings));
  }
  Mapping& m = mappings_[n];
  m.layout = layout;
  m.allowed_ioctls = allowed_ioctls;
  m.resident.resize(layout.size / layout.page_size);
  m.removed.resize(layout.size / layout.page_size);
  m.claimed.resize(layout.size / layout.page_size);
  count_.store(n + 1, std::memory_order_release);
  return &m;
}

Mapping* MappingTable::find_host(uint64_t host_addr) {
  for (size_t i = count_.load(std::memory_order_acquire); i-- > 0;) {
    Mapping& m = mappings_[i];
    if (host_addr >= m.host_begin() && host_addr < m.host_end() && !m.retired.load()) return &m;
  }
  return nullptr;
}

Mapping* MappingTable::find_guest(uint64_t guest_addr, uint64_t size) {
  for (size_t i = count_.load(std::memory_order_acquire); i-- > 0;) {
    Mapping& m = mappings_[i];
    const uint64_t base = m.layout.gpa;
    if (!m.retired.load() && guest_addr >= base && guest_addr - base < m.layout.size &&
        size <= m.layout.size - (guest_addr - base)) {
      return &m;
    }
  }
  return nullptr;
}

}  // namespace faultline
