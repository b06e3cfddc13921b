// Firecracker's Uffd handshake: one JSON array of guest region mappings,
// parsed and validated without I/O (so it can be fuzzed).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "faultline/status.h"

namespace faultline::firecracker {

// One guest memory region: host memory at [base_host_virt_addr, +size) holds
// the bytes at [offset, +size) of the snapshot memory file.
struct RegionMapping {
  uint64_t base_host_virt_addr = 0;
  uint64_t size = 0;
  uint64_t offset = 0;
  uint64_t page_size = 0;
};

struct HandshakeLimits {
  // Size of the memory file; regions must lie inside it. Unknown (e.g. pages
  // from a page server): no such check.
  std::optional<uint64_t> mem_file_size;
  std::string mem_file_name = "the memory file";  // what holds mem_file_size bytes, for messages
  size_t max_regions = 64;
  uint64_t max_page_size = 2ull << 20;
};

inline constexpr uint64_t kDefaultPageSize = 4096;

// Parses the mapping array. The page size is taken from "page_size", else from
// "page_size_kib" (which, despite its name, Firecracker fills with bytes), else
// the system page size. Rejects, naming the region and the problem: anything
// but a non-empty array of objects with unsigned integer fields; page sizes
// that are not powers of two in [4 KiB, max_page_size]; empty or unaligned
// regions; regions that wrap, overlap (in host memory or in the file) or reach
// past the memory file. kProtocol for malformed JSON; kInvalidArgument for
// well-formed JSON with bad values.
Result<std::vector<RegionMapping>> parse_region_mappings(std::string_view json,
                                                         const HandshakeLimits& limits);

// True if `json` is a valid prefix of a JSON text (more bytes may complete it).
bool is_incomplete_json(std::string_view json);

}  // namespace faultline::firecracker
