#include "protocol/v1_wire.h"

#include <fmt/format.h>

#include <bit>

#include "core/little_endian.h"

namespace faultline::v1 {
namespace {

// Request and reply header share one layout.
std::array<std::byte, 16> encode_pair(const PageRequest& request) {
  std::array<std::byte, 16> bytes{};
  le::put_u64(bytes, request.gpa);
  le::put_u64(std::span(bytes).subspan(8), request.page_size);
  return bytes;
}

PageRequest decode_pair(std::span<const std::byte, 16> bytes) {
  return {le::get_u64(bytes), le::get_u64(bytes.subspan(8))};
}

}  // namespace

Status validate_page_request(const PageRequest& request) {
  const uint64_t size = request.page_size;
  if (!std::has_single_bit(size) || size < kMinWirePageSize || size > kMaxWirePageSize) {
    return invalid_argument(
        fmt::format("page size {:#x} is not a power of two between {:#x} and {:#x}", size,
                    kMinWirePageSize, kMaxWirePageSize));
  }
  if (request.gpa % size != 0) {
    return invalid_argument(
        fmt::format("address {:#x} is not aligned to the page size {:#x}", request.gpa, size));
  }
  if (request.gpa + size < request.gpa) {
    return invalid_argument(
        fmt::format("page at {:#x} of size {:#x} wraps past 2^64", request.gpa, size));
  }
  return Status::ok();
}

RequestBytes encode_page_request(const PageRequest& request) {
  return encode_pair(request);
}

Result<PageRequest> decode_page_request(std::span<const std::byte, kRequestSize> bytes) {
  PageRequest request = decode_pair(bytes);
  if (Status status = validate_page_request(request); !status) return status;
  return request;
}

ReplyHeaderBytes encode_reply_header(const PageRequest& request) {
  return encode_pair(request);
}

Status check_reply_header(std::span<const std::byte, kReplyHeaderSize> header,
                          const PageRequest& sent) {
  const PageRequest echo = decode_pair(header);
  if (echo.gpa != sent.gpa) {
    return {ErrorCode::kProtocol,
            fmt::format("reply echoes address {:#x} but the request was for {:#x}", echo.gpa,
                        sent.gpa)};
  }
  if (echo.page_size != sent.page_size) {
    return {ErrorCode::kProtocol,
            fmt::format("reply echoes page size {:#x} but the request asked for {:#x}",
                        echo.page_size, sent.page_size)};
  }
  return Status::ok();
}

uint64_t largest_request_at(Gpa gpa, uint64_t length) {
  if (length < kMinWirePageSize || gpa % kMinWirePageSize != 0 || length % kMinWirePageSize != 0) {
    return 0;
  }
  uint64_t size = std::bit_floor(std::min(length, kMaxWirePageSize));
  while (gpa % size != 0) size /= 2;
  return size;
}

}  // namespace faultline::v1
