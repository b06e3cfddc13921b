// The fault server's host-memory mappings. Each mapping keeps two bitmaps, one
// bit per page: resident (installed, or otherwise settled) and removed (the
// VMM dropped the page with MADV_DONTNEED/REMOVE: from then on it reads as
// zeros, never as source bytes). Appended under a lock, read lock-free;
// lookups prefer the newest mapping, so a range moved by mremap is found at
// its new address.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "faultline/fault_server.h"

namespace faultline {

class PageBitmap {
 public:
  void resize(uint64_t pages);
  bool test(uint64_t page) const {
    return (words_[page / 64].load(std::memory_order_acquire) >> (page % 64)) & 1;
  }
  void set_range(uint64_t first, uint64_t count);
  void clear_range(uint64_t first, uint64_t count);
  // The 64 bits of pages [64 * index, 64 * index + 64).
  uint64_t word(uint64_t index) const { return words_[index].load(std::memory_order_acquire); }
  // Sets the bit; false if it was set already.
  bool test_and_set(uint64_t page) {
    const uint64_t bit = uint64_t{1} << (page % 64);
    return (words_[page / 64].fetch_or(bit, std::memory_order_acq_rel) & bit) == 0;
  }
  void copy_range(const PageBitmap& from, uint64_t from_first, uint64_t count);

 private:
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
};

struct Mapping {
  GuestMapping layout;
  uint64_t allowed_ioctls = 0;  // what UFFDIO_REGISTER said may be used here
  PageBitmap resident;
  PageBitmap removed;
  // Pages some thread is fetching and installing right now (a demand
  // window, a fill chunk, a replayed run): nobody else fetches them.
  PageBitmap claimed;
  std::atomic<bool> retired{false};  // wholly unmapped or moved away

  uint64_t host_begin() const { return reinterpret_cast<uint64_t>(layout.host_addr); }
  uint64_t host_end() const { return host_begin() + layout.size; }
  uint64_t pages() const { return layout.size / layout.page_size; }
  uint64_t page_index(uint64_t host_addr) const {
    return (host_addr - host_begin()) / layout.page_size;
  }
  uint64_t guest_address(uint64_t host_addr) const {
    return layout.gpa + (host_addr - host_begin());
  }
  uint64_t host_address(uint64_t guest_addr) const {
    return host_begin() + (guest_addr - layout.gpa);
  }
  bool contains_guest(uint64_t guest_addr, uint64_t len) const {
    return guest_addr >= layout.gpa && guest_addr - layout.gpa + len <= layout.size;
  }
  // Marks the pages overlapping [host_addr, host_addr + len) (clipped to the mapping).
  void mark_resident(uint64_t host_addr, uint64_t len);
  uint64_t mark_removed(uint64_t host_addr, uint64_t len);  // returns pages marked
  // Neither present nor being fetched by anyone.
  bool wanted(uint64_t page) const {
    return !resident.test(page) && !removed.test(page) && !claimed.test(page);
  }
  // Claims the wanted pages from `first` on, up to `limit` of them, stopping
  // at the first that is not wanted or was claimed meanwhile. Returns how
  // many it claimed (0: `first` itself is taken).
  uint64_t claim_run(uint64_t first, uint64_t limit);
  void release(uint64_t first, uint64_t count) { claimed.clear_range(first, count); }
  // The first wanted page at or after `from`, or pages() if there is none.
  uint64_t next_wanted(uint64_t from) const;
};

class MappingTable {
 public:
  static constexpr size_t kMaxMappings = 64;

  // Rejects overlap with a live mapping, host or guest side.
  Status add(const GuestMapping& layout, uint64_t allowed_ioctls);
  // A mapping that may share guest pages with others (a range moved by mremap,
  // or a forked child's copy). Returns it so its bitmaps can be filled.
  Result<Mapping*> add_alias(const GuestMapping& layout, uint64_t allowed_ioctls);
  Mapping* find_host(uint64_t host_addr);
  Mapping* find_guest(uint64_t guest_addr, uint64_t size);
  size_t size() const { return count_.load(std::memory_order_acquire); }
  Mapping& at(size_t i) { return mappings_[i]; }

 private:
  Result<Mapping*> append(const GuestMapping& layout, uint64_t allowed_ioctls, bool check_guest);

  std::mutex write_mu_;
  std::array<Mapping, kMaxMappings> mappings_{};
  std::atomic<size_t> count_{0};
};

}  // namespace faultline
