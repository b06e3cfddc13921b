// Guest RAM in host memory: anonymous, untouched until the guest (or a pager)
// fills it, on small pages so that a fault is one 4 KiB page of work.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "faultline/status.h"

namespace faultline::vm {

class GuestRam {
 public:
  static Result<std::unique_ptr<GuestRam>> map(uint64_t size);
  ~GuestRam();
  GuestRam(const GuestRam&) = delete;
  GuestRam& operator=(const GuestRam&) = delete;

  std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }
  std::span<std::byte> bytes() const { return {data_, size_}; }

 private:
  GuestRam(std::byte* data, uint64_t size) : data_(data), size_(size) {}
  std::byte* data_;
  uint64_t size_;
};

}  // namespace faultline::vm
