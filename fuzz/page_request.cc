// The page server's request parser: the first 16 bytes a peer sends on every
// request. An accepted request is a page the server may read: a power-of-two
// size within bounds, aligned, not wrapping, and it re-encodes to the same
// bytes. A rejected one is an InvalidArgument with a message.
#include <bit>
#include <cstring>

#include "fuzz_check.h"
#include "protocol/v1_wire.h"

using namespace faultline;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < v1::kRequestSize) return -1;  // the server waits for all 16 bytes
  v1::RequestBytes bytes;
  std::memcpy(bytes.data(), data, bytes.size());

  auto request = v1::decode_page_request(bytes);
  if (!request) {
    FUZZ_CHECK(request.status().code() == ErrorCode::kInvalidArgument);
    FUZZ_CHECK(!request.status().message().empty());
    return 0;
  }
  const Gpa gpa = request->gpa;
  const uint64_t page_size = request->page_size;
  FUZZ_CHECK(std::has_single_bit(page_size));
  FUZZ_CHECK(page_size >= v1::kMinWirePageSize && page_size <= v1::kMaxWirePageSize);
  FUZZ_CHECK(gpa % page_size == 0);
  FUZZ_CHECK(gpa + page_size > gpa);  // the last byte, gpa + page_size - 1, does not wrap
  FUZZ_CHECK(v1::validate_page_request(*request).is_ok());
  FUZZ_CHECK(v1::encode_page_request(*request) == bytes);
  // The reply header the server sends for it is the one the client accepts.
  FUZZ_CHECK(v1::check_reply_header(v1::encode_reply_header(*request), *request).is_ok());
  return 0;
}
