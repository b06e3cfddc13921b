// Private anonymous memory with one owner: guest RAM, the fault server's page
// buffers, the memory tests and benchmarks stand guest RAM in with. Unmapped
// when the owner goes away.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "faultline/status.h"

namespace faultline {

// Which pages back the mapping.
enum class PageBacking {
  kKernelDefault,  // whatever the kernel's transparent-huge-page policy says
  kSmallPages,     // 4 KiB pages only (MADV_NOHUGEPAGE): a fault is one page of work, not 2 MiB
  kHugeTlb2M,      // 2 MiB hugetlbfs pages (MAP_HUGETLB): needs pages reserved by the admin
};

struct AnonymousMemoryOptions {
  // Address space only (PROT_NONE), to map regions into later (map_within).
  bool reserve_only = false;
  // No swap reserved up front (MAP_NORESERVE): guest RAM may be larger than
  // what the host could hold, as long as the guest does not touch it all.
  bool no_reserve = false;
  PageBacking pages = PageBacking::kKernelDefault;
};

class AnonymousMemory {
 public:
  // Maps `size` bytes, zero until written. `what` names the memory in the error.
  static Result<AnonymousMemory> map(uint64_t size, std::string_view what,
                                     AnonymousMemoryOptions options = {});

  AnonymousMemory() = default;  // owns nothing
  AnonymousMemory(AnonymousMemory&& other) noexcept;
  AnonymousMemory& operator=(AnonymousMemory&& other) noexcept;
  AnonymousMemory(const AnonymousMemory&) = delete;
  AnonymousMemory& operator=(const AnonymousMemory&) = delete;
  ~AnonymousMemory();

  // Replaces `size` bytes at `offset` with fresh read-write memory (MAP_FIXED),
  // the way a VMM maps its RAM regions into one reservation. They stay part of
  // this mapping: unmapped with it.
  Result<std::span<std::byte>> map_within(uint64_t offset, uint64_t size, std::string_view what,
                                          AnonymousMemoryOptions options = {});

  std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }
  std::span<std::byte> bytes() const { return {data_, size_}; }
  explicit operator bool() const { return data_ != nullptr; }

  // Gives the mapping up without unmapping it: for a caller that moves or
  // unmaps parts of it itself (mremap, munmap).
  std::span<std::byte> release();

 private:
  AnonymousMemory(std::byte* data, uint64_t size) : data_(data), size_(size) {}
  void unmap();

  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace faultline
