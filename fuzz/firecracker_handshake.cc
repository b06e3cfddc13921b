// Firecracker's handshake JSON, as a VMM (or anyone who can reach the handler's
// socket) sends it. An accepted handshake is a set of regions the handler may
// serve: each non-empty, page-aligned, inside the memory file, not wrapping,
// no two overlapping in host memory or in the file; at most 64 of them. A
// rejected one is a Protocol (bad JSON) or InvalidArgument error with a message.
#include <bit>
#include <string_view>

#include "firecracker/handshake.h"
#include "fuzz_check.h"

using namespace faultline;
using namespace faultline::firecracker;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  HandshakeLimits limits;
  limits.mem_file_size = uint64_t{1} << 30;
  auto regions = parse_region_mappings(json, limits);
  if (!regions.is_ok()) {
    FUZZ_CHECK(regions.status().code() == ErrorCode::kProtocol ||
               regions.status().code() == ErrorCode::kInvalidArgument);
    FUZZ_CHECK(!regions.status().message().empty());
    return 0;
  }
  FUZZ_CHECK(!regions->empty() && regions->size() <= limits.max_regions);
  for (size_t i = 0; i < regions->size(); ++i) {
    const RegionMapping& a = (*regions)[i];
    FUZZ_CHECK(std::has_single_bit(a.page_size));
    FUZZ_CHECK(a.page_size >= kDefaultPageSize && a.page_size <= limits.max_page_size);
    FUZZ_CHECK(a.size > 0 && a.size % a.page_size == 0);
    FUZZ_CHECK(a.base_host_virt_addr % a.page_size == 0 && a.offset % a.page_size == 0);
    FUZZ_CHECK(a.base_host_virt_addr + a.size > a.base_host_virt_addr);
    FUZZ_CHECK(a.offset + a.size > a.offset && a.offset + a.size <= *limits.mem_file_size);
    for (size_t j = i + 1; j < regions->size(); ++j) {
      const RegionMapping& b = (*regions)[j];
      FUZZ_CHECK(a.base_host_virt_addr + a.size <= b.base_host_virt_addr ||
                 b.base_host_virt_addr + b.size <= a.base_host_virt_addr);
      FUZZ_CHECK(a.offset + a.size <= b.offset || b.offset + b.size <= a.offset);
    }
  }
  // Complete, valid JSON is never called incomplete.
  FUZZ_CHECK(!is_incomplete_json(json));
  return 0;
}
