// Guest RAM in host memory: anonymous, untouched until the guest (or a pager)
// fills it, on small pages so that a fault is one 4 KiB page of work.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>

#include "faultline/status.h"
#include "os_linux/anonymous_memory.h"

namespace faultline::vm {

class GuestRam {
 public:
  static Result<std::unique_ptr<GuestRam>> map(uint64_t size);

  std::byte* data() const { return memory_.data(); }
  uint64_t size() const { return memory_.size(); }
  std::span<std::byte> bytes() const { return memory_.bytes(); }

 private:
  explicit GuestRam(AnonymousMemory memory) : memory_(std::move(memory)) {}
  AnonymousMemory memory_;
};

}  // namespace faultline::vm
