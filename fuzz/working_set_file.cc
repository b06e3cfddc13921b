// The working-set file parser, on bytes as a damaged or hostile file holds
// them. It either refuses with kInvalidArgument and a message, or accepts a
// set that holds its bounds and re-encodes to the very same bytes. The first
// input byte chooses whether the rest is taken as it is or given a correct
// checksum first, so the fuzzer also reaches what lies behind the checksum.
#include <xxhash.h>

#include <cstring>
#include <vector>

#include "core/little_endian.h"
#include "core/working_set_format.h"
#include "fuzz_check.h"

using namespace faultline;
namespace format = faultline::working_set_format;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return -1;
  const bool sign = (data[0] & 1) != 0;
  std::vector<std::byte> bytes(size - 1);
  if (!bytes.empty()) std::memcpy(bytes.data(), data + 1, bytes.size());
  if (sign) le::append_u64(bytes, XXH3_64bits(bytes.data(), bytes.size()));

  auto set = format::decode(bytes);
  if (!set.is_ok()) {
    FUZZ_CHECK(set.status().code() == ErrorCode::kInvalidArgument);
    FUZZ_CHECK(!set.status().message().empty());
    return 0;
  }
  FUZZ_CHECK(set->recordings() >= 1);
  FUZZ_CHECK(set->bytes() <= set->image().size);
  FUZZ_CHECK(set->touches().size() <= bytes.size() / format::kMinTouchBytes);
  for (const WorkingSetTouch& t : set->touches()) {
    FUZZ_CHECK(t.page_size >= kMinPageSize && t.gpa % t.page_size == 0);
    FUZZ_CHECK(t.recordings_seen >= 1 && t.recordings_seen <= set->recordings());
  }
  // What was accepted is what encode() writes, byte for byte, unless its
  // varints were longer than needed (then at least the same set).
  auto again = format::encode(*set);
  FUZZ_CHECK(again.is_ok());
  auto reread = format::decode(*again);
  FUZZ_CHECK(reread.is_ok());
  FUZZ_CHECK(reread->image() == set->image() && reread->recordings() == set->recordings());
  FUZZ_CHECK(reread->touches().size() == set->touches().size());
  for (size_t i = 0; i < set->touches().size(); ++i) {
    const WorkingSetTouch& a = set->touches()[i];
    const WorkingSetTouch& b = reread->touches()[i];
    FUZZ_CHECK(a.gpa == b.gpa && a.page_size == b.page_size && a.write == b.write &&
               a.since_resume_us == b.since_resume_us && a.recordings_seen == b.recordings_seen);
  }
  FUZZ_CHECK(again->size() <= bytes.size());
  return 0;
}
