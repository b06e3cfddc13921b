#include "protocol/frames.h"

#include <fmt/format.h>
#include <lz4.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>

#include "core/little_endian.h"

namespace faultline::v2 {
namespace {

using le::Reader;
using le::Writer;

Status malformed(std::string_view what, std::string detail) {
  return {ErrorCode::kProtocol, fmt::format("malformed {} frame: {}", what, detail)};
}

Status check_size(std::string_view what, std::span<const std::byte> body, size_t want) {
  if (body.size() != want) {
    return malformed(what, fmt::format("body is {} bytes, expected {}", body.size(), want));
  }
  return Status::ok();
}

Status check_min_size(std::string_view what, std::span<const std::byte> body, size_t least) {
  if (body.size() < least) {
    return malformed(what,
                     fmt::format("body is {} bytes, at least {} expected", body.size(), least));
  }
  return Status::ok();
}

// Writes a frame header announcing `body_length` bytes, then has `write_body`
// fill the rest of `out`: the whole body, or (for DATA) the part before a
// payload that is sent from where it lies.
template <typename WriteBody>
void write_frame(std::span<std::byte> out, FrameType type, size_t body_length,
                 const WriteBody& write_body) {
  const FrameHeaderBytes header = encode_frame_header({type, static_cast<uint32_t>(body_length)});
  std::memcpy(out.data(), header.data(), header.size());
  Writer w{out.subspan(kFrameHeaderSize)};
  write_body(w);
  assert(!w.overrun() && w.pos() == out.size() - kFrameHeaderSize);
}

template <typename WriteBody>
std::vector<std::byte> frame(FrameType type, size_t body_length, const WriteBody& write_body) {
  std::vector<std::byte> out(kFrameHeaderSize + body_length);
  write_frame(out, type, body_length, write_body);
  return out;
}

// HELLO and WELCOME open alike:
//   <u16 version><u16 0><u32 encodings (accepted / chosen)><u32 flags: 1 push>
struct Opening {
  uint16_t version = 0;
  uint32_t encodings = 0;
  bool push = false;
};

void write_opening(Writer& w, const Opening& opening) {
  w.u16(opening.version);
  w.u16(0);
  w.u32(opening.encodings);
  w.u32(opening.push ? 1u : 0u);
}

Result<Opening> read_opening(Reader& r, std::string_view what) {
  Opening opening;
  opening.version = r.u16();
  if (r.u16() != 0) return malformed(what, "reserved field is not zero");
  opening.encodings = r.u32();
  const auto flags = r.u32();
  if ((flags & ~1u) != 0) return malformed(what, fmt::format("unknown flags {:#x}", flags));
  opening.push = (flags & 1u) != 0;
  return opening;
}

constexpr size_t kHelloSize = 12;
constexpr size_t kWelcomeFixedSize = 48;
constexpr size_t kRequestSize = 24;
constexpr size_t kErrorFixedSize = 16;

bool is_known_encoding(uint8_t e) {
  return e <= static_cast<uint8_t>(Encoding::kZero);
}

}  // namespace

uint32_t max_body_length(FrameType type) {
  switch (type) {
    case FrameType::kHello:
      return kHelloSize;
    case FrameType::kWelcome:
      return kWelcomeFixedSize + kMaxStateLength;
    case FrameType::kRequest:
      return kRequestSize;
    case FrameType::kData:
      return kDataPrefixSize + static_cast<uint32_t>(std::max<size_t>(
                                   {kMaxRange, static_cast<size_t>(LZ4_compressBound(kMaxRange)),
                                    ZSTD_compressBound(kMaxRange)}));
    case FrameType::kError:
      return kErrorFixedSize + kMaxErrorMessage;
    case FrameType::kHave:
      return 8 + kMaxHaveBytes;
    case FrameType::kPushDone:
    case FrameType::kComplete:
      return 0;
  }
  return 0;
}

// Guards the type and length: a corrupted length would otherwise make a
// reader wait for bytes that never come, or read a payload as a header.
uint16_t header_check(uint8_t type, uint32_t body_length) {
  const uint64_t packed = (uint64_t{type} << 32) | body_length;
  return static_cast<uint16_t>(XXH3_64bits(&packed, sizeof packed) & 0xffff);
}

FrameHeaderBytes encode_frame_header(const FrameHeader& header) {
  FrameHeaderBytes out{};
  Writer w(out);
  const auto type = static_cast<uint8_t>(header.type);
  w.u8(type);
  w.u8(0);
  w.u16(header_check(type, header.body_length));
  w.u32(header.body_length);
  return out;
}

Result<FrameHeader> decode_frame_header(std::span<const std::byte, kFrameHeaderSize> bytes) {
  Reader r(bytes);
  const auto type = r.u8();
  const auto reserved = r.u8();
  const auto check = r.u16();
  const auto length = r.u32();
  if (type < static_cast<uint8_t>(FrameType::kHello) ||
      type > static_cast<uint8_t>(FrameType::kComplete)) {
    return Status(ErrorCode::kProtocol, fmt::format("unknown frame type {}", type));
  }
  if (reserved != 0) {
    return Status(ErrorCode::kProtocol,
                  fmt::format("frame type {}: reserved header byte is not zero", type));
  }
  if (check != header_check(type, length)) {
    return Status(
        ErrorCode::kProtocol,
        fmt::format("frame header check failed (type {}, length {}): corrupted", type, length));
  }
  const FrameHeader header{static_cast<FrameType>(type), length};
  if (length > max_body_length(header.type)) {
    return Status(ErrorCode::kProtocol,
                  fmt::format("frame type {}: body of {} bytes exceeds the limit of {}", type,
                              length, max_body_length(header.type)));
  }
  return header;
}

std::vector<std::byte> encode(const Hello& hello) {
  return frame(FrameType::kHello, kHelloSize, [&](Writer& w) {
    write_opening(w, {hello.version, hello.accepted_encodings, hello.want_push});
  });
}

Result<Hello> decode_hello(std::span<const std::byte> body) {
  if (Status s = check_size("HELLO", body, kHelloSize); !s) return s;
  Reader r(body);
  auto opening = read_opening(r, "HELLO");
  if (!opening) return opening.status();
  const Hello hello{opening->version, opening->encodings, opening->push};
  if (hello.version != kVersion) {
    return Status(ErrorCode::kProtocol,
                  fmt::format("client speaks protocol version {}, this server speaks {}",
                              hello.version, kVersion));
  }
  return hello;
}

std::vector<std::byte> encode(const Welcome& welcome) {
  return frame(FrameType::kWelcome, kWelcomeFixedSize + welcome.state.size(), [&](Writer& w) {
    write_opening(w, {welcome.version, static_cast<uint8_t>(welcome.encoding), welcome.pushing});
    w.u32(welcome.page_size);
    w.u64(welcome.ram_start);
    w.u64(welcome.image_size);
    w.u64(welcome.image_id);
    w.u32(welcome.max_range);
    w.u32(static_cast<uint32_t>(welcome.state.size()));
    w.bytes(welcome.state);
  });
}

Result<Welcome> decode_welcome(std::span<const std::byte> body) {
  if (Status s = check_min_size("WELCOME", body, kWelcomeFixedSize); !s) return s;
  Reader r(body);
  auto opening = read_opening(r, "WELCOME");
  if (!opening) return opening.status();
  Welcome welcome;
  welcome.version = opening->version;
  const uint32_t encoding = opening->encodings;
  welcome.page_size = r.u32();
  welcome.ram_start = r.u64();
  welcome.image_size = r.u64();
  welcome.image_id = r.u64();
  welcome.max_range = r.u32();
  const auto state_length = r.u32();
  if (encoding > static_cast<uint8_t>(Encoding::kZstd)) {
    return malformed("WELCOME", fmt::format("unknown encoding {}", encoding));
  }
  if (state_length != r.left()) {
    return malformed(
        "WELCOME", fmt::format("state of {} bytes announced, {} present", state_length, r.left()));
  }
  welcome.encoding = static_cast<Encoding>(encoding);
  welcome.pushing = opening->push;
  auto state = r.rest();
  welcome.state.assign(state.begin(), state.end());
  if (Status s = check_welcome(welcome); !s) return s;
  return welcome;
}

std::array<std::byte, kFrameHeaderSize + 24> encode(const Request& request) {
  static_assert(kRequestSize == 24);
  std::array<std::byte, kFrameHeaderSize + kRequestSize> out{};
  write_frame(out, FrameType::kRequest, kRequestSize, [&](Writer& w) {
    w.u64(request.id);
    w.u64(request.gpa);
    w.u32(request.length);
    w.u32(0);
  });
  return out;
}

Result<Request> decode_request(std::span<const std::byte> body) {
  if (Status s = check_size("REQUEST", body, kRequestSize); !s) return s;
  Reader r(body);
  Request request;
  request.id = r.u64();
  request.gpa = r.u64();
  request.length = r.u32();
  if (r.u32() != 0) return malformed("REQUEST", "reserved field is not zero");
  if (request.id == 0) return malformed("REQUEST", "id 0 is reserved for pushed data");
  return request;
}

std::array<std::byte, kFrameHeaderSize + kDataPrefixSize> encode_data_prefix(
    const DataHeader& header, uint32_t payload_length) {
  std::array<std::byte, kFrameHeaderSize + kDataPrefixSize> out{};
  const uint32_t body_length = static_cast<uint32_t>(kDataPrefixSize) + payload_length;
  write_frame(out, FrameType::kData, body_length, [&](Writer& w) {
    w.u64(header.id);
    w.u64(header.gpa);
    w.u32(header.length);
    w.u8(static_cast<uint8_t>(header.encoding));
    w.u8(0);
    w.u16(0);
    w.u64(header.checksum);
  });
  return out;
}

Result<DataHeader> decode_data_prefix(std::span<const std::byte> body) {
  if (body.size() < kDataPrefixSize) {
    return malformed("DATA", fmt::format("body is {} bytes, shorter than its {}-byte prefix",
                                         body.size(), kDataPrefixSize));
  }
  Reader r(body);
  DataHeader header;
  header.id = r.u64();
  header.gpa = r.u64();
  header.length = r.u32();
  const auto encoding = r.u8();
  const auto reserved1 = r.u8();
  const auto reserved2 = r.u16();
  header.checksum = r.u64();
  if (reserved1 != 0 || reserved2 != 0) return malformed("DATA", "reserved field is not zero");
  if (!is_known_encoding(encoding))
    return malformed("DATA", fmt::format("unknown encoding {}", encoding));
  header.encoding = static_cast<Encoding>(encoding);
  if (header.length == 0 || header.length > kMaxRange) {
    return malformed("DATA", fmt::format("length {} outside (0, {}]", header.length, kMaxRange));
  }
  const size_t payload = body.size() - kDataPrefixSize;
  size_t bound = 0;
  switch (header.encoding) {
    case Encoding::kRaw:
      if (payload != header.length) {
        return malformed("DATA", fmt::format("raw payload of {} bytes for a length of {}", payload,
                                             header.length));
      }
      return header;
    case Encoding::kZero:
      if (payload != 0)
        return malformed("DATA", fmt::format("zero range carries {} bytes", payload));
      return header;
    case Encoding::kLz4:
      bound = static_cast<size_t>(LZ4_compressBound(static_cast<int>(header.length)));
      break;
    case Encoding::kZstd:
      bound = ZSTD_compressBound(header.length);
      break;
  }
  if (payload == 0 || payload > bound) {
    return malformed("DATA", fmt::format("compressed payload of {} bytes for a length of {}",
                                         payload, header.length));
  }
  return header;
}

std::vector<std::byte> encode(const ErrorFrame& error) {
  const size_t message_length = std::min<size_t>(error.message.size(), kMaxErrorMessage);
  return frame(FrameType::kError, kErrorFixedSize + message_length, [&](Writer& w) {
    w.u64(error.id);
    w.u32(static_cast<uint32_t>(error.code));
    w.u32(0);
    w.bytes(std::as_bytes(std::span(error.message.data(), message_length)));
  });
}

Result<ErrorFrame> decode_error(std::span<const std::byte> body) {
  if (Status s = check_min_size("ERROR", body, kErrorFixedSize); !s) return s;
  Reader r(body);
  ErrorFrame error;
  error.id = r.u64();
  const auto code = r.u32();
  if (r.u32() != 0) return malformed("ERROR", "reserved field is not zero");
  if (code == 0 || code > static_cast<uint32_t>(ErrorCode::kShutdown)) {
    return malformed("ERROR", fmt::format("unknown error code {}", code));
  }
  error.code = static_cast<ErrorCode>(code);
  auto message = r.rest();
  error.message.assign(reinterpret_cast<const char*>(message.data()), message.size());
  return error;
}

std::vector<std::byte> encode(const Have& have) {
  return frame(FrameType::kHave, 8 + have.bitmap.size(), [&](Writer& w) {
    w.u64(have.first_page);
    w.bytes(have.bitmap);
  });
}

Result<Have> decode_have(std::span<const std::byte> body) {
  if (Status s = check_min_size("HAVE", body, 8); !s) return s;
  Reader r(body);
  Have have;
  have.first_page = r.u64();
  auto bitmap = r.rest();
  have.bitmap.assign(bitmap.begin(), bitmap.end());
  return have;
}

FrameHeaderBytes encode_empty(FrameType type) {
  return encode_frame_header({type, 0});
}

Status check_range(Gpa gpa, uint64_t length, uint32_t page_size, uint64_t ram_start,
                   uint64_t image_size, uint32_t max_range) {
  if (length == 0 || length % page_size != 0 || length > max_range) {
    return {ErrorCode::kProtocol,
            fmt::format("range length {:#x} is not a multiple of the page size {:#x} in (0, {:#x}]",
                        length, page_size, max_range)};
  }
  if (gpa % page_size != 0) {
    return {ErrorCode::kProtocol,
            fmt::format("range start {:#x} is not aligned to the page size {:#x}", gpa, page_size)};
  }
  if (gpa < ram_start || gpa - ram_start > image_size || length > image_size - (gpa - ram_start)) {
    return {ErrorCode::kOutOfRange,
            fmt::format("range [{:#x}, +{:#x}) is outside the image [{:#x}, +{:#x})", gpa, length,
                        ram_start, image_size)};
  }
  return Status::ok();
}

Status check_welcome(const Welcome& welcome) {
  if (welcome.version != kVersion) {
    return {ErrorCode::kProtocol, fmt::format("server speaks protocol version {}, expected {}",
                                              welcome.version, kVersion)};
  }
  if (welcome.max_range < 4096 || welcome.max_range > kMaxRange ||
      !std::has_single_bit(welcome.max_range)) {
    return {ErrorCode::kProtocol, fmt::format("bad max_range {:#x}", welcome.max_range)};
  }
  if (welcome.page_size < 4096 || !std::has_single_bit(welcome.page_size) ||
      welcome.page_size > welcome.max_range) {
    return {ErrorCode::kProtocol, fmt::format("bad page size {:#x}", welcome.page_size)};
  }
  if (welcome.image_size == 0 || welcome.image_size % welcome.page_size != 0 ||
      welcome.ram_start % welcome.page_size != 0 ||
      welcome.ram_start + welcome.image_size < welcome.ram_start) {
    return {ErrorCode::kProtocol,
            fmt::format("bad image geometry: {:#x} bytes at {:#x} in pages of {:#x}",
                        welcome.image_size, welcome.ram_start, welcome.page_size)};
  }
  return Status::ok();
}

}  // namespace faultline::v2
