// The v1 page-server wire format, as pure functions (no I/O) so it can be
// fuzzed. Request: <u64 LE gpa><u64 LE page_size>. Reply: the same 16 bytes
// echoed, then exactly page_size payload bytes. (v2, which a client selects
// by opening with its magic, is in frames.h.)
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "faultline/page_source.h"
#include "faultline/status.h"

namespace faultline::v1 {

inline constexpr size_t kRequestSize = 16;
inline constexpr size_t kReplyHeaderSize = 16;
inline constexpr uint64_t kMinWirePageSize = 4096;
inline constexpr uint64_t kMaxWirePageSize = uint64_t{2} << 20;

struct PageRequest {
  Gpa gpa = 0;
  uint64_t page_size = 0;
};

using RequestBytes = std::array<std::byte, kRequestSize>;
using ReplyHeaderBytes = std::array<std::byte, kReplyHeaderSize>;

// page_size a power of two in [kMinWirePageSize, kMaxWirePageSize]; gpa aligned
// to it; gpa + page_size not wrapping past 2^64.
Status validate_page_request(const PageRequest& request);

// Encoding does not validate: callers validate first.
RequestBytes encode_page_request(const PageRequest& request);
// Decodes and validates.
Result<PageRequest> decode_page_request(std::span<const std::byte, kRequestSize> bytes);

ReplyHeaderBytes encode_reply_header(const PageRequest& request);
// OK when the header echoes `sent`; otherwise kProtocol naming the mismatch.
Status check_reply_header(std::span<const std::byte, kReplyHeaderSize> header,
                          const PageRequest& sent);

// The largest request v1 can carry for the start of [gpa, gpa + length): a
// power of two that `gpa` is aligned to, at most `length` and kMaxWirePageSize.
// Ranges are sent as a run of such requests. 0 if gpa or length is not
// aligned to kMinWirePageSize.
uint64_t largest_request_at(Gpa gpa, uint64_t length);

}  // namespace faultline::v1
