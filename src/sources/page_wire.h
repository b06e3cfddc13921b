// The v1 page-server wire format, as pure functions (no I/O) so it can be
// fuzzed. Request: <u64 LE ipa><u64 LE page_size>. Reply: the same 16 bytes
// echoed, then exactly page_size payload bytes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "faultline/status.h"

namespace faultline::wire {

inline constexpr size_t kRequestSize = 16;
inline constexpr size_t kReplyHeaderSize = 16;
inline constexpr uint64_t kMinWirePageSize = 4096;
inline constexpr uint64_t kMaxWirePageSize = uint64_t{2} << 20;

struct PageRequest {
  uint64_t ipa = 0;
  uint64_t page_size = 0;
};

using RequestBytes = std::array<std::byte, kRequestSize>;
using ReplyHeaderBytes = std::array<std::byte, kReplyHeaderSize>;

// page_size a power of two in [kMinWirePageSize, kMaxWirePageSize]; ipa aligned
// to it; ipa + page_size not wrapping past 2^64.
Status validate_page_request(const PageRequest& request);

// Encoding does not validate: callers validate first.
RequestBytes encode_page_request(const PageRequest& request);
// Decodes and validates.
Result<PageRequest> decode_page_request(std::span<const std::byte, kRequestSize> bytes);

ReplyHeaderBytes encode_reply_header(const PageRequest& request);
// OK when the header echoes `sent`; otherwise kProtocol naming the mismatch.
// The largest request v1 can carry for the start of [ipa, ipa + length): a
// power of two that `ipa` is aligned to, at most `length` and kMaxWirePageSize.
// Ranges are sent as a run of such requests. 0 if ipa or length is not
// aligned to kMinWirePageSize.
uint64_t largest_request_at(uint64_t ipa, uint64_t length);

Status check_reply_header(std::span<const std::byte, kReplyHeaderSize> header,
                          const PageRequest& sent);

}  // namespace faultline::wire
