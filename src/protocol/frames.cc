#include "protocol/frames.h"

#include <fmt/format.h>
#include <lz4.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cstring>

namespace faultline::v2 {
namespace {

class Writer {
 public:
  explicit Writer(std::span<std::byte> out) : out_(out) {}
  template <typename T>
  void put(T value) {
    for (size_t i = 0; i < sizeof(T); ++i) {
      out_[pos_++] = static_cast<std::byte>((static_cast<uint64_t>(value) >> (8 * i)) & 0xff);
    }
  }
  void put_bytes(std::span<const std::byte> bytes) {
    if (!bytes.empty()) std::memcpy(out_.data() + pos_, bytes.data(), bytes.size());
    pos_ += bytes.size();
  }
  size_t pos() const { return pos_; }

 private:
  std::span<std::byte> out_;
  size_t pos_ = 0;
};

class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  template <typename T>
  T get() {
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) {
      v |= static_cast<uint64_t>(in_[pos_++]) << (8 * i);
    }
    return static_cast<T>(v);
  }
  std::span<const std::byte> rest() const { return in_.subspan(pos_); }
  size_t left() const { return in_.size() - pos_; }

 private:
  std::span<const std::byte> in_;
  size_t pos_ = 0;
};

Status malformed(std::string_view what, std::string detail) {
  return {ErrorCode::kProtocol, fmt::format("malformed {} frame: {}", what, detail)};
}

Status check_size(std::string_view what, std::span<const std::byte> body, size_t want) {
  if (body.size() != want) {
    return malformed(what, fmt::format("body is {} bytes, expected {}", body.size(), want));
  }
  return Status::ok();
}

std::vector<std::byte> frame(FrameType type, size_t body_length) {
  std::vector<std::byte> out(kFrameHeaderSize + body_length);
  const FrameHeaderBytes header = encode_frame_header({type, static_cast<uint32_t>(body_length)});
  std::memcpy(out.data(), header.data(), header.size());
  return out;
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
  w.put(type);
  w.put(uint8_t{0});
  w.put(header_check(type, header.body_length));
  w.put(header.body_length);
  return out;
}

Result<FrameHeader> decode_frame_header(std::span<const std::byte, kFrameHeaderSize> bytes) {
  Reader r(bytes);
  const auto type = r.get<uint8_t>();
  const auto reserved = r.get<uint8_t>();
  const auto check = r.get<uint16_t>();
  const auto length = r.get<uint32_t>();
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
  auto out = frame(FrameType::kHello, kHelloSize);
  Writer w{std::span(out).subspan(kFrameHeaderSize)};
  w.put(hello.version);
  w.put(uint16_t{0});
  w.put(hello.accepted_encodings);
  w.put(uint32_t{hello.want_push ? 1u : 0u});
  return out;
}

Result<Hello> decode_hello(std::span<const std::byte> body) {
  if (Status s = check_size("HELLO", body, kHelloSize); !s) return s;
  Reader r(body);
  Hello hello;
  hello.version = r.get<uint16_t>();
  if (r.get<uint16_t>() != 0) return malformed("HELLO", "reserved field is not zero");
  hello.accepted_encodings = r.get<uint32_t>();
  const auto flags = r.get<uint32_t>();
  if ((flags & ~1u) != 0) return malformed("HELLO", fmt::format("unknown flags {:#x}", flags));
  hello.want_push = (flags & 1u) != 0;
  if (hello.version != kVersion) {
    return Status(ErrorCode::kProtocol,
                  fmt::format("client speaks protocol version {}, this server speaks {}",
                              hello.version, kVersion));
  }
  return hello;
}

std::vector<std::byte> encode(const Welcome& welcome) {
  auto out = frame(FrameType::kWelcome, kWelcomeFixedSize + welcome.state.size());
  Writer w{std::span(out).subspan(kFrameHeaderSize)};
  w.put(welcome.version);
  w.put(uint16_t{0});
  w.put(uint32_t{static_cast<uint8_t>(welcome.encoding)});
  w.put(uint32_t{welcome.pushing ? 1u : 0u});
  w.put(welcome.page_size);
  w.put(welcome.ram_start);
  w.put(welcome.image_size);
  w.put(welcome.image_id);
  w.put(welcome.max_range);
  w.put(static_cast<uint32_t>(welcome.state.size()));
  w.put_bytes(welcome.state);
  return out;
}

Result<Welcome> decode_welcome(std::span<const std::byte> body) {
  if (body.size() < kWelcomeFixedSize) {
    return malformed("WELCOME", fmt::format("body is {} bytes, at least {} expected", body.size(),
                                            kWelcomeFixedSize));
  }
  Reader r(body);
  Welcome welcome;
  welcome.version = r.get<uint16_t>();
  if (r.get<uint16_t>() != 0) return malformed("WELCOME", "reserved field is not zero");
  const auto encoding = r.get<uint32_t>();
  const auto flags = r.get<uint32_t>();
  welcome.page_size = r.get<uint32_t>();
  welcome.ram_start = r.get<uint64_t>();
  welcome.image_size = r.get<uint64_t>();
  welcome.image_id = r.get<uint64_t>();
  welcome.max_range = r.get<uint32_t>();
  const auto state_length = r.get<uint32_t>();
  if (encoding > static_cast<uint8_t>(Encoding::kZstd)) {
    return malformed("WELCOME", fmt::format("unknown encoding {}", encoding));
  }
  if ((flags & ~1u) != 0) return malformed("WELCOME", fmt::format("unknown flags {:#x}", flags));
  if (state_length != r.left()) {
    return malformed(
        "WELCOME", fmt::format("state of {} bytes announced, {} present", state_length, r.left()));
  }
  welcome.encoding = static_cast<Encoding>(encoding);
  welcome.pushing = (flags & 1u) != 0;
  auto state = r.rest();
  welcome.state.assign(state.begin(), state.end());
  if (Status s = check_welcome(welcome); !s) return s;
  return welcome;
}

std::array<std::byte, kFrameHeaderSize + 24> encode(const Request& request) {
  std::array<std::byte, kFrameHeaderSize + 24> out{};
  const FrameHeaderBytes header = encode_frame_header({FrameType::kRequest, kRequestSize});
  std::memcpy(out.data(), header.data(), header.size());
  Writer w{std::span(out).subspan(kFrameHeaderSize)};
  w.put(request.id);
  w.put(request.gpa);
  w.put(request.length);
  w.put(uint32_t{0});
  return out;
}

Result<Request> decode_request(std::span<const std::byte> body) {
  if (Status s = check_size("REQUEST", body, kRequestSize); !s) return s;
  Reader r(body);
  Request request;
  request.id = r.get<uint64_t>();
  request.gpa = r.get<uint64_t>();
  request.length = r.get<uint32_t>();
  if (r.get<uint32_t>() != 0) return malformed("REQUEST", "reserved field is not zero");
  if (request.id == 0) return malformed("REQUEST", "id 0 is reserved for pushed data");
  return request;
}

std::array<std::byte, kFrameHeaderSize + kDataPrefixSize> encode_data_prefix(
    const DataHeader& header, uint32_t payload_length) {
  std::array<std::byte, kFrameHeaderSize + kDataPrefixSize> out{};
  const FrameHeaderBytes frame_header = encode_frame_header(
      {FrameType::kData, static_cast<uint32_t>(kDataPrefixSize) + payload_length});
  std::memcpy(out.data(), frame_header.data(), frame_header.size());
  Writer w{std::span(out).subspan(kFrameHeaderSize)};
  w.put(header.id);
  w.put(header.gpa);
  w.put(header.length);
  w.put(static_cast<uint8_t>(header.encoding));
  w.put(uint8_t{0});
  w.put(uint16_t{0});
  w.put(header.checksum);
  return out;
}

Result<DataHeader> decode_data_prefix(std::span<const std::byte> body) {
  if (body.size() < kDataPrefixSize) {
    return malformed("DATA", fmt::format("body is {} bytes, shorter than its {}-byte prefix",
                                         body.size(), kDataPrefixSize));
  }
  Reader r(body);
  DataHeader header;
  header.id = r.get<uint64_t>();
  header.gpa = r.get<uint64_t>();
  header.length = r.get<uint32_t>();
  const auto encoding = r.get<uint8_t>();
  const auto reserved1 = r.get<uint8_t>();
  const auto reserved2 = r.get<uint16_t>();
  header.checksum = r.get<uint64_t>();
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
  auto out = frame(FrameType::kError, kErrorFixedSize + message_length);
  Writer w{std::span(out).subspan(kFrameHeaderSize)};
  w.put(error.id);
  w.put(static_cast<uint32_t>(error.code));
  w.put(uint32_t{0});
  w.put_bytes(std::as_bytes(std::span(error.message.data(), message_length)));
  return out;
}

Result<ErrorFrame> decode_error(std::span<const std::byte> body) {
  if (body.size() < kErrorFixedSize) {
    return malformed("ERROR", fmt::format("body is {} bytes, at least {} expected", body.size(),
                                          kErrorFixedSize));
  }
  Reader r(body);
  ErrorFrame error;
  error.id = r.get<uint64_t>();
  const auto code = r.get<uint32_t>();
  if (r.get<uint32_t>() != 0) return malformed("ERROR", "reserved field is not zero");
  if (code == 0 || code > static_cast<uint32_t>(ErrorCode::kShutdown)) {
    return malformed("ERROR", fmt::format("unknown error code {}", code));
  }
  error.code = static_cast<ErrorCode>(code);
  auto message = r.rest();
  error.message.assign(reinterpret_cast<const char*>(message.data()), message.size());
  return error;
}

std::vector<std::byte> encode(const Have& have) {
  auto out = frame(FrameType::kHave, 8 + have.bitmap.size());
  Writer w{std::span(out).subspan(kFrameHeaderSize)};
  w.put(have.first_page);
  w.put_bytes(have.bitmap);
  return out;
}

Result<Have> decode_have(std::span<const std::byte> body) {
  if (body.size() < 8) return malformed("HAVE", fmt::format("body is {} bytes", body.size()));
  Reader r(body);
  Have have;
  have.first_page = r.get<uint64_t>();
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
