// Anonymous host memory standing in for a VM's guest RAM: small pages (a
// transparent huge page would turn one fault into 2 MiB of work), no swap
// reserved.
#pragma once

#include <cstddef>
#include <cstdint>

#include "os_linux/anonymous_memory.h"

namespace faultline::testing {

class GuestMemory {
 public:
  // A test failure if it cannot be mapped; data() is then null.
  explicit GuestMemory(uint64_t size);

  std::byte* data() const { return memory_.data(); }
  uint64_t size() const { return memory_.size(); }

 private:
  AnonymousMemory memory_;
};

}  // namespace faultline::testing
