#include "support/guest_memory.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

namespace faultline::testing {

GuestMemory::GuestMemory(uint64_t size) : size_(size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    ADD_FAILURE() << "mmap of " << size << " bytes: " << std::strerror(errno);
    return;
  }
  // Transparent huge pages would turn one fault into 2 MiB of our work.
  ::madvise(p, size, MADV_NOHUGEPAGE);
  data_ = static_cast<std::byte*>(p);
}

GuestMemory::~GuestMemory() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

}  // namespace faultline::testing
