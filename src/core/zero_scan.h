// Whether a buffer holds only zero bytes, fast enough for the fault path.
#pragma once

#include <cstddef>
#include <cstring>
#include <span>

namespace faultline {

inline bool is_all_zero(std::span<const std::byte> bytes) {
  constexpr size_t kHead = 16;
  if (bytes.size() <= kHead) {
    for (std::byte b : bytes) {
      if (b != std::byte{0}) return false;
    }
    return true;
  }
  for (size_t i = 0; i < kHead; ++i) {
    if (bytes[i] != std::byte{0}) return false;
  }
  // The head is zero, so the buffer is zero iff it equals itself shifted by kHead.
  return std::memcmp(bytes.data(), bytes.data() + kHead, bytes.size() - kHead) == 0;
}

}  // namespace faultline
