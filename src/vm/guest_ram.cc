#include "vm/guest_ram.h"

#include <fmt/format.h>
#include <sys/mman.h>

#include <cerrno>

namespace faultline::vm {

Result<std::unique_ptr<GuestRam>> GuestRam::map(uint64_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return io_error(fmt::format("mmap of {} bytes of guest RAM", size), errno);
  ::madvise(p, size, MADV_NOHUGEPAGE);
  return std::unique_ptr<GuestRam>(new GuestRam(static_cast<std::byte*>(p), size));
}

GuestRam::~GuestRam() {
  ::munmap(data_, size_);
}

}  // namespace faultline::vm
