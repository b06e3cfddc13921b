// The v2 protocol's frame parsers, on both ends: a stream of frames as a peer
// might send them. Every header and body decoder either rejects with
// kProtocol and a message, or accepts something that holds its bounds and
// (for the fixed layouts) re-encodes to the very same bytes; a DATA payload
// decodes into exactly its announced length or is rejected, never past it.
#include <cstring>
#include <vector>

#include "fuzz_check.h"
#include "protocol/frames.h"
#include "protocol/page_codec.h"

using namespace faultline;

namespace {

bool same(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

void check_rejected(const Status& s) {
  FUZZ_CHECK(s.code() == ErrorCode::kProtocol);
  FUZZ_CHECK(!s.message().empty());
}

void one_frame(v2::FrameType type, std::span<const std::byte> frame,
               std::span<const std::byte> body) {
  switch (type) {
    case v2::FrameType::kHello: {
      auto hello = v2::decode_hello(body);
      if (!hello) return check_rejected(hello.status());
      FUZZ_CHECK(same(v2::encode(*hello), frame));
      return;
    }
    case v2::FrameType::kWelcome: {
      auto welcome = v2::decode_welcome(body);
      if (!welcome) return check_rejected(welcome.status());
      FUZZ_CHECK(v2::check_welcome(*welcome).is_ok());
      FUZZ_CHECK(welcome->image_size % welcome->page_size == 0);
      FUZZ_CHECK(welcome->state.size() <= v2::kMaxStateLength);
      FUZZ_CHECK(same(v2::encode(*welcome), frame));
      return;
    }
    case v2::FrameType::kRequest: {
      auto request = v2::decode_request(body);
      if (!request) return check_rejected(request.status());
      FUZZ_CHECK(request->id != 0);
      FUZZ_CHECK(same(v2::encode(*request), frame));
      // What the server then checks: inside a 1 GiB image of 4 KiB pages.
      Status range =
          v2::check_range(request->gpa, request->length, 4096, 0, 1ull << 30, v2::kMaxRange);
      if (range.is_ok()) {
        FUZZ_CHECK(request->length % 4096 == 0 && request->length <= v2::kMaxRange);
        FUZZ_CHECK(request->gpa + request->length <= (1ull << 30));
      }
      return;
    }
    case v2::FrameType::kData: {
      auto header = v2::decode_data_prefix(body);
      if (!header) return check_rejected(header.status());
      FUZZ_CHECK(header->length > 0 && header->length <= v2::kMaxRange);
      auto payload = body.subspan(v2::kDataPrefixSize);
      std::vector<std::byte> dest(header->length + 1, std::byte{0x77});
      Status decoded =
          v2::decode_payload(*header, payload, std::span(dest).first(header->length), true);
      if (!decoded.is_ok()) check_rejected(decoded);
      FUZZ_CHECK(dest.back() == std::byte{0x77});  // never written past the range
      return;
    }
    case v2::FrameType::kError: {
      auto error = v2::decode_error(body);
      if (!error) return check_rejected(error.status());
      FUZZ_CHECK(error->code != ErrorCode::kOk);
      if (error->message.size() <= v2::kMaxErrorMessage) {
        FUZZ_CHECK(same(v2::encode(*error), frame));
      }
      return;
    }
    case v2::FrameType::kHave: {
      auto have = v2::decode_have(body);
      if (!have) return check_rejected(have.status());
      FUZZ_CHECK(same(v2::encode(*have), frame));
      return;
    }
    case v2::FrameType::kPushDone:
    case v2::FrameType::kComplete:
      FUZZ_CHECK(body.empty());
      return;
  }
  FUZZ_CHECK(false);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  while (in.size() >= v2::kFrameHeaderSize) {
    auto header = v2::decode_frame_header(in.first<v2::kFrameHeaderSize>());
    if (!header) {
      check_rejected(header.status());
      return 0;  // a reader closes the connection here
    }
    FUZZ_CHECK(header->body_length <= v2::max_body_length(header->type));
    FUZZ_CHECK(v2::encode_frame_header(*header) == [&] {
      v2::FrameHeaderBytes b;
      std::memcpy(b.data(), in.data(), b.size());
      return b;
    }());
    const size_t whole = v2::kFrameHeaderSize + header->body_length;
    if (in.size() < whole) return 0;  // a reader waits for the rest
    one_frame(header->type, in.first(whole), in.subspan(v2::kFrameHeaderSize, header->body_length));
    in = in.subspan(whole);
  }
  return 0;
}
