#include "os_linux/anonymous_memory.h"

#include <fmt/format.h>
#include <linux/mman.h>
#include <sys/mman.h>

#include <cerrno>
#include <utility>

namespace faultline {
namespace {

int protection(const AnonymousMemoryOptions& options) {
  return options.reserve_only ? PROT_NONE : PROT_READ | PROT_WRITE;
}

int flags(const AnonymousMemoryOptions& options) {
  int f = MAP_PRIVATE | MAP_ANONYMOUS;
  if (options.no_reserve) f |= MAP_NORESERVE;
  if (options.pages == PageBacking::kHugeTlb2M) f |= MAP_HUGETLB | MAP_HUGE_2MB;
  return f;
}

void advise(void* at, uint64_t size, const AnonymousMemoryOptions& options) {
  // Advice only: where the kernel has no transparent huge pages there is
  // nothing to turn off, and the mapping is still good.
  if (options.pages == PageBacking::kSmallPages) ::madvise(at, size, MADV_NOHUGEPAGE);
}

Status mmap_failed(uint64_t size, std::string_view what) {
  return io_error(fmt::format("mmap of {} bytes of {}", size, what), errno);
}

}  // namespace

Result<AnonymousMemory> AnonymousMemory::map(uint64_t size, std::string_view what,
                                             AnonymousMemoryOptions options) {
  void* p = ::mmap(nullptr, size, protection(options), flags(options), -1, 0);
  if (p == MAP_FAILED) return mmap_failed(size, what);
  advise(p, size, options);
  return AnonymousMemory(static_cast<std::byte*>(p), size);
}

AnonymousMemory::AnonymousMemory(AnonymousMemory&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

AnonymousMemory& AnonymousMemory::operator=(AnonymousMemory&& other) noexcept {
  if (this != &other) {
    unmap();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

AnonymousMemory::~AnonymousMemory() {
  unmap();
}

Result<std::span<std::byte>> AnonymousMemory::map_within(uint64_t offset, uint64_t size,
                                                         std::string_view what,
                                                         AnonymousMemoryOptions options) {
  if (offset > size_ || size > size_ - offset) {
    return invalid_argument(fmt::format("{} bytes at offset {} of {}: outside the {} bytes mapped",
                                        size, offset, what, size_));
  }
  void* p = ::mmap(data_ + offset, size, protection(options), flags(options) | MAP_FIXED, -1, 0);
  if (p == MAP_FAILED) return mmap_failed(size, what);
  advise(p, size, options);
  return std::span<std::byte>(static_cast<std::byte*>(p), size);
}

std::span<std::byte> AnonymousMemory::release() {
  return {std::exchange(data_, nullptr), std::exchange(size_, 0)};
}

void AnonymousMemory::unmap() {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace faultline
