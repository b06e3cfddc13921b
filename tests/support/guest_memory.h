// Anonymous host memory standing in for a VM's guest RAM.
#pragma once

#include <cstddef>
#include <cstdint>

namespace faultline::testing {

class GuestMemory {
 public:
  explicit GuestMemory(uint64_t size);
  ~GuestMemory();
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  uint64_t size_;
};

}  // namespace faultline::testing
