// The working-set file's bytes (docs/working-set-format.md): a fixed header
// naming the image and the counts, the touches as varints, and an XXH3
// checksum over everything before it. Apart from files, so the parser can be
// fuzzed on bytes (fuzz/working_set_file.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "faultline/status.h"
#include "faultline/working_set.h"

namespace faultline::working_set_format {

inline constexpr uint32_t kVersion = 1;
inline constexpr size_t kHeaderSize = 48;
inline constexpr size_t kChecksumSize = 8;
// Each touch takes at least three bytes (three varints).
inline constexpr uint64_t kMinTouchBytes = 3;
// Larger files are refused before they are read: 256 MiB hold tens of
// millions of touches, far beyond any guest's first seconds.
inline constexpr uint64_t kMaxFileBytes = 256ull << 20;
// The largest page a touch may name.
inline constexpr uint64_t kMaxPageSize = 1ull << 30;

// A set that cannot be written (a page size that is not a power of two in
// [4 KiB, 1 GiB], an unaligned or wrapping page, overlapping pages, a count
// of recordings out of range) is refused with a message naming the touch.
Result<std::vector<std::byte>> encode(const WorkingSet& set);

// Refuses anything encode() could not have written, with a message naming
// what is wrong (no file name: load() adds it). Never allocates more than the
// input's size justifies.
Result<WorkingSet> decode(std::span<const std::byte> bytes);

// What encode() and decode() both insist on.
Status check_touches(std::span<const WorkingSetTouch> touches, uint32_t recordings,
                     uint64_t image_size);

}  // namespace faultline::working_set_format
