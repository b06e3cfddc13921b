// The client's reply check: a peer's 16-byte reply header against the request
// the client sent. Accepted exactly when it echoes the request byte for byte;
// anything else is a protocol error with a message, and the check has no state
// to leave behind (the same call gives the same answer twice).
#include <cstring>

#include "fuzz_check.h"
#include "protocol/v1_wire.h"

using namespace faultline;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < v1::kRequestSize + v1::kReplyHeaderSize) return -1;
  v1::RequestBytes request_bytes;
  v1::ReplyHeaderBytes header;
  std::memcpy(request_bytes.data(), data, request_bytes.size());
  std::memcpy(header.data(), data + request_bytes.size(), header.size());

  // The client only ever sends requests it has validated.
  auto sent = v1::decode_page_request(request_bytes);
  if (!sent) return -1;

  const Status status = v1::check_reply_header(header, *sent);
  const bool echoes = header == v1::encode_reply_header(*sent);
  FUZZ_CHECK(status.is_ok() == echoes);
  if (!status) {
    FUZZ_CHECK(status.code() == ErrorCode::kProtocol);
    FUZZ_CHECK(!status.message().empty());
  }
  const Status again = v1::check_reply_header(header, *sent);
  FUZZ_CHECK(again.code() == status.code() && again.message() == status.message());
  return 0;
}
