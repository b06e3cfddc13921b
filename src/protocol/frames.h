// The v2 page protocol's wire format, as pure functions (no I/O) so it can be
// fuzzed. All integers little-endian.
//
// A v2 client opens with the 8 bytes "FLTLINE2" (a v1 request can never start
// so: as a v1 gpa it is not page-aligned), then both sides exchange frames:
//   header  <u8 type><u8 0><u16 check><u32 body_length>, check = the low 16 bits
//           of XXH3 over (type << 32 | body_length), so a corrupted length is
//           caught before anyone waits for bytes that never come
//   body    body_length bytes, laid out per type (below)
//
//   HELLO    c->s  <u16 version><u16 0><u32 accepted_encodings (bit per Encoding)>
//                  <u32 flags: 1 push wanted>
//   WELCOME  s->c  <u16 version><u16 0><u32 encoding chosen><u32 flags: 1 pushing>
//                  <u32 page_size><u64 ram_start><u64 image_size><u64 image_id>
//                  <u32 max_range><u32 state_length><state bytes>
//   REQUEST  c->s  <u64 id (never 0)><u64 gpa><u32 length><u32 0>
//   DATA     s->c  <u64 id (0: pushed)><u64 gpa><u32 length><u8 encoding><u8 0><u16 0>
//                  <u64 checksum><payload>
//   ERROR    s->c  <u64 id (0: the connection)><u32 error code><u32 0><message>
//   HAVE     c->s  <u64 first_page (a multiple of 8)><bitmap: bit i of byte j = page
//                  first_page+8j+i held>. An empty bitmap ends them: pushing (if
//                  asked for) begins then, skipping every page held.
//   PUSH_DONE s->c (empty) every page the client lacked has been sent once
//   COMPLETE c->s  (empty) the client holds every page; the server may finish
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "faultline/page_source.h"
#include "faultline/status.h"

namespace faultline::v2 {

inline constexpr std::array<std::byte, 8> kMagic = {std::byte{'F'}, std::byte{'L'}, std::byte{'T'},
                                                    std::byte{'L'}, std::byte{'I'}, std::byte{'N'},
                                                    std::byte{'E'}, std::byte{'2'}};
inline constexpr uint16_t kVersion = 2;
inline constexpr size_t kFrameHeaderSize = 8;
// The largest range one REQUEST or DATA frame carries.
inline constexpr uint32_t kMaxRange = 2u << 20;
inline constexpr uint32_t kMaxStateLength = 1u << 20;
inline constexpr uint32_t kMaxErrorMessage = 4096;
// A HAVE bitmap of at most this many bytes (2 GiB of 4 KiB pages per frame).
inline constexpr uint32_t kMaxHaveBytes = 64u << 10;

enum class FrameType : uint8_t {
  kHello = 1,
  kWelcome = 2,
  kRequest = 3,
  kData = 4,
  kError = 5,
  kHave = 6,
  kPushDone = 7,
  kComplete = 8,
};

enum class Encoding : uint8_t { kRaw = 0, kLz4 = 1, kZstd = 2, kZero = 3 };

inline constexpr uint32_t encoding_bit(Encoding e) {
  return 1u << static_cast<uint8_t>(e);
}

struct FrameHeader {
  FrameType type = FrameType::kHello;
  uint32_t body_length = 0;
};

using FrameHeaderBytes = std::array<std::byte, kFrameHeaderSize>;

FrameHeaderBytes encode_frame_header(const FrameHeader& header);
// Rejects unknown types, a failed check, a non-zero reserved byte and bodies longer than the
// type allows (the bound a reader must enforce before allocating).
Result<FrameHeader> decode_frame_header(std::span<const std::byte, kFrameHeaderSize> bytes);
// The largest body a frame of this type may have.
uint32_t max_body_length(FrameType type);

struct Hello {
  uint16_t version = kVersion;
  uint32_t accepted_encodings = encoding_bit(Encoding::kRaw);
  bool want_push = false;
};

struct Welcome {
  uint16_t version = kVersion;
  Encoding encoding = Encoding::kRaw;  // what DATA payloads may use besides raw and zero
  bool pushing = false;
  uint32_t page_size = 4096;
  uint64_t ram_start = 0;
  uint64_t image_size = 0;
  uint64_t image_id = 0;  // the same image, across reconnections
  uint32_t max_range = kMaxRange;
  std::vector<std::byte> state;  // opaque to the protocol (a migrating VM's vCPU state)
};

struct Request {
  uint64_t id = 0;
  Gpa gpa = 0;
  uint32_t length = 0;
};

inline constexpr size_t kDataPrefixSize = 32;  // DATA body before the payload

struct DataHeader {
  uint64_t id = 0;  // 0: pushed
  Gpa gpa = 0;
  uint32_t length = 0;  // bytes of guest memory described
  Encoding encoding = Encoding::kRaw;
  uint64_t checksum = 0;
};

struct ErrorFrame {
  uint64_t id = 0;
  ErrorCode code = ErrorCode::kProtocol;
  std::string message;
};

struct Have {
  uint64_t first_page = 0;
  std::vector<std::byte> bitmap;
};

// Whole frames (header included), for everything but DATA.
std::vector<std::byte> encode(const Hello& hello);
std::vector<std::byte> encode(const Welcome& welcome);
std::array<std::byte, kFrameHeaderSize + 24> encode(const Request& request);
std::vector<std::byte> encode(const ErrorFrame& error);
std::vector<std::byte> encode(const Have& have);
FrameHeaderBytes encode_empty(FrameType type);  // PUSH_DONE, COMPLETE
// The frame header and DATA prefix for a payload of `payload_length` bytes.
std::array<std::byte, kFrameHeaderSize + kDataPrefixSize> encode_data_prefix(
    const DataHeader& header, uint32_t payload_length);

// Body decoders: each checks the exact layout, reserved fields and bounds.
Result<Hello> decode_hello(std::span<const std::byte> body);
Result<Welcome> decode_welcome(std::span<const std::byte> body);
Result<Request> decode_request(std::span<const std::byte> body);
// The prefix of a DATA body; the payload is body.subspan(kDataPrefixSize).
// Checks that the payload length fits the encoding (raw: exactly `length`;
// zero: none; compressed: at most the codec's bound).
Result<DataHeader> decode_data_prefix(std::span<const std::byte> body);
Result<ErrorFrame> decode_error(std::span<const std::byte> body);
Result<Have> decode_have(std::span<const std::byte> body);

// Geometry checks shared by both ends: `length` a non-zero multiple of
// page_size, at most max_range; gpa page-aligned; the range inside
// [ram_start, ram_start + image_size).
Status check_range(Gpa gpa, uint64_t length, uint32_t page_size, uint64_t ram_start,
                   uint64_t image_size, uint32_t max_range);
// A WELCOME the client can work with: version, page size a power of two in
// [4 KiB, max_range], image size a multiple of it, max_range within kMaxRange.
Status check_welcome(const Welcome& welcome);

}  // namespace faultline::v2
