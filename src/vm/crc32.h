// CRC-32 (IEEE 802.3, the zlib and PNG polynomial), for the state file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace faultline::vm {

// Continues `crc` (0 to start) over `bytes`.
uint32_t crc32(std::span<const std::byte> bytes, uint32_t crc = 0);

}  // namespace faultline::vm
