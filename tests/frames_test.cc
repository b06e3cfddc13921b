// The v2 wire format (protocol/frames.h): every frame round-trips, and every
// malformed header or body is refused with kProtocol before anyone trusts it.
#include "protocol/frames.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "core/little_endian.h"

namespace faultline::v2 {
namespace {

constexpr FrameType kAllTypes[] = {FrameType::kHello,    FrameType::kWelcome, FrameType::kRequest,
                                   FrameType::kData,     FrameType::kError,   FrameType::kHave,
                                   FrameType::kPushDone, FrameType::kComplete};

// kOk for a value, else the code of the Status that explains its absence.
template <typename T>
ErrorCode code_of(const Result<T>& result) {
  return result ? ErrorCode::kOk : result.status().code();
}

// A whole encoded frame, split: its decoded header and its body.
struct Split {
  FrameHeader header;
  std::vector<std::byte> body;
};

Split split(std::span<const std::byte> frame) {
  EXPECT_GE(frame.size(), kFrameHeaderSize);
  auto header = decode_frame_header(frame.first<kFrameHeaderSize>());
  EXPECT_TRUE(header) << header.status().to_string();
  if (!header) return {};
  EXPECT_EQ(header->body_length, frame.size() - kFrameHeaderSize);
  auto body = frame.subspan(kFrameHeaderSize);
  return {*header, {body.begin(), body.end()}};
}

Welcome a_welcome() {
  Welcome w;
  w.encoding = Encoding::kLz4;
  w.pushing = true;
  w.page_size = 4096;
  w.ram_start = 0x10'0000;
  w.image_size = 64 << 20;
  w.image_id = 0x1234'5678'9abc'def0;
  w.max_range = kMaxRange;
  w.state = {std::byte{1}, std::byte{2}, std::byte{3}};
  return w;
}

// --- headers --------------------------------------------------------------

TEST(FrameHeader, EveryTypeRoundTripsUpToItsLargestBody) {
  for (FrameType type : kAllTypes) {
    for (uint32_t length : {uint32_t{0}, max_body_length(type) / 2, max_body_length(type)}) {
      auto decoded = decode_frame_header(encode_frame_header({type, length}));
      ASSERT_TRUE(decoded) << decoded.status().to_string();
      EXPECT_EQ(decoded->type, type);
      EXPECT_EQ(decoded->body_length, length);
    }
  }
}

TEST(FrameHeader, IsTypeZeroCheckThenLittleEndianLength) {
  const FrameHeaderBytes bytes = encode_frame_header({FrameType::kRequest, 0x01020304});
  EXPECT_EQ(bytes[0], std::byte{3});
  EXPECT_EQ(bytes[1], std::byte{0});
  EXPECT_EQ(le::get_u32(std::span(bytes).subspan(4)), 0x01020304u);
}

TEST(FrameHeader, UnknownTypeIsRefused) {
  for (uint8_t type : {0, 9, 255}) {
    FrameHeaderBytes bytes = encode_frame_header({FrameType::kHello, 0});
    bytes[0] = std::byte{type};
    EXPECT_EQ(code_of(decode_frame_header(bytes)), ErrorCode::kProtocol) << int{type};
  }
}

TEST(FrameHeader, NonZeroReservedByteIsRefused) {
  FrameHeaderBytes bytes = encode_frame_header({FrameType::kHello, 12});
  bytes[1] = std::byte{1};
  EXPECT_EQ(code_of(decode_frame_header(bytes)), ErrorCode::kProtocol);
}

TEST(FrameHeader, CorruptedTypeOrLengthFailsTheCheck) {
  const FrameHeaderBytes good = encode_frame_header({FrameType::kData, 4096 + kDataPrefixSize});
  for (size_t byte : {0, 4, 5, 6, 7}) {  // DATA (4) flipped to ERROR (5): a known type
    FrameHeaderBytes bytes = good;
    bytes[byte] ^= std::byte{0x01};
    EXPECT_EQ(code_of(decode_frame_header(bytes)), ErrorCode::kProtocol)
        << "flipped a bit in byte " << byte;
  }
}

TEST(FrameHeader, BodyLongerThanTheTypeAllowsIsRefusedEvenWithAGoodCheck) {
  for (FrameType type : kAllTypes) {
    const uint32_t length = max_body_length(type) + 1;
    const FrameHeaderBytes bytes = encode_frame_header({type, length});
    EXPECT_EQ(code_of(decode_frame_header(bytes)), ErrorCode::kProtocol) << static_cast<int>(type);
  }
}

TEST(FrameHeader, EmptyFramesCarryNoBody) {
  for (FrameType type : {FrameType::kPushDone, FrameType::kComplete}) {
    const Split s = split(encode_empty(type));
    EXPECT_EQ(s.header.type, type);
    EXPECT_TRUE(s.body.empty());
    EXPECT_EQ(max_body_length(type), 0u);
  }
}

// --- HELLO ----------------------------------------------------------------

TEST(HelloFrame, RoundTrips) {
  const Hello hello{kVersion, encoding_bit(Encoding::kRaw) | encoding_bit(Encoding::kZstd), true};
  const Split s = split(encode(hello));
  EXPECT_EQ(s.header.type, FrameType::kHello);
  auto decoded = decode_hello(s.body);
  ASSERT_TRUE(decoded) << decoded.status().to_string();
  EXPECT_EQ(decoded->version, hello.version);
  EXPECT_EQ(decoded->accepted_encodings, hello.accepted_encodings);
  EXPECT_TRUE(decoded->want_push);
}

TEST(HelloFrame, BodyOfAnotherLengthIsRefused) {
  std::vector<std::byte> body = split(encode(Hello{})).body;
  for (size_t size : {size_t{0}, body.size() - 1, body.size() + 1}) {
    std::vector<std::byte> b = body;
    b.resize(size);
    EXPECT_EQ(code_of(decode_hello(b)), ErrorCode::kProtocol) << size;
  }
}

TEST(HelloFrame, AnotherVersionIsRefused) {
  EXPECT_EQ(code_of(decode_hello(split(encode(Hello{kVersion + 1, 1, false})).body)),
            ErrorCode::kProtocol);
}

TEST(HelloFrame, UnknownFlagsAndReservedBitsAreRefused) {
  const std::vector<std::byte> good = split(encode(Hello{})).body;
  std::vector<std::byte> flags = good;
  le::put_u32(std::span(flags).subspan(8), 2);
  std::vector<std::byte> reserved = good;
  le::put_u16(std::span(reserved).subspan(2), 1);
  for (const auto& body : {flags, reserved}) {
    EXPECT_EQ(code_of(decode_hello(body)), ErrorCode::kProtocol);
  }
}

// --- WELCOME --------------------------------------------------------------

TEST(WelcomeFrame, RoundTripsWithItsState) {
  const Welcome welcome = a_welcome();
  const Split s = split(encode(welcome));
  EXPECT_EQ(s.header.type, FrameType::kWelcome);
  auto decoded = decode_welcome(s.body);
  ASSERT_TRUE(decoded) << decoded.status().to_string();
  EXPECT_EQ(decoded->version, welcome.version);
  EXPECT_EQ(decoded->encoding, welcome.encoding);
  EXPECT_EQ(decoded->pushing, welcome.pushing);
  EXPECT_EQ(decoded->page_size, welcome.page_size);
  EXPECT_EQ(decoded->ram_start, welcome.ram_start);
  EXPECT_EQ(decoded->image_size, welcome.image_size);
  EXPECT_EQ(decoded->image_id, welcome.image_id);
  EXPECT_EQ(decoded->max_range, welcome.max_range);
  EXPECT_EQ(decoded->state, welcome.state);
}

TEST(WelcomeFrame, BodyShorterOrLongerThanItsStateLengthIsRefused) {
  std::vector<std::byte> body = split(encode(a_welcome())).body;
  for (size_t size : {size_t{0}, size_t{47}, body.size() - 1}) {
    EXPECT_EQ(code_of(decode_welcome(std::span(body).first(size))), ErrorCode::kProtocol) << size;
  }
  body.push_back(std::byte{9});
  EXPECT_EQ(code_of(decode_welcome(body)), ErrorCode::kProtocol);
}

TEST(WelcomeFrame, UnknownEncodingIsRefused) {
  std::vector<std::byte> body = split(encode(a_welcome())).body;
  le::put_u32(std::span(body).subspan(4), static_cast<uint32_t>(Encoding::kZero));
  EXPECT_EQ(code_of(decode_welcome(body)), ErrorCode::kProtocol);
}

TEST(WelcomeFrame, GeometryTheClientCannotUseIsRefused) {
  const auto with = [](auto change) {
    Welcome w = a_welcome();
    change(w);
    return w;
  };
  for (const Welcome& w :
       {with([](Welcome& w) { w.page_size = 3000; }),
        with([](Welcome& w) { w.page_size = 1u << 22; }),  // over max_range
        with([](Welcome& w) { w.max_range = kMaxRange * 2; }),
        with([](Welcome& w) { w.image_size = 0; }), with([](Welcome& w) { w.image_size += 100; }),
        with([](Welcome& w) { w.ram_start = ~uint64_t{0} - 4095; }),  // wraps
        with([](Welcome& w) { w.version = 1; })}) {
    EXPECT_EQ(check_welcome(w).code(), ErrorCode::kProtocol);
    EXPECT_EQ(code_of(decode_welcome(split(encode(w)).body)), ErrorCode::kProtocol);
  }
  EXPECT_TRUE(check_welcome(a_welcome()));
}

// --- REQUEST --------------------------------------------------------------

TEST(RequestFrame, RoundTrips) {
  const Request request{7, 0xdead'b000, 0x10000};
  const Split s = split(encode(request));
  EXPECT_EQ(s.header.type, FrameType::kRequest);
  auto decoded = decode_request(s.body);
  ASSERT_TRUE(decoded) << decoded.status().to_string();
  EXPECT_EQ(decoded->id, request.id);
  EXPECT_EQ(decoded->gpa, request.gpa);
  EXPECT_EQ(decoded->length, request.length);
}

TEST(RequestFrame, IdZeroIsRefused) {
  EXPECT_EQ(code_of(decode_request(split(encode(Request{0, 0x1000, 0x1000})).body)),
            ErrorCode::kProtocol);
}

TEST(RequestFrame, BodyOfAnotherLengthOrNonZeroReservedIsRefused) {
  const std::vector<std::byte> body = split(encode(Request{1, 0x1000, 0x1000})).body;
  std::vector<std::byte> longer = body;
  longer.push_back(std::byte{0});
  std::vector<std::byte> reserved = body;
  reserved.back() = std::byte{1};
  for (const auto& b : {std::vector<std::byte>(body.begin(), body.end() - 1), longer, reserved}) {
    EXPECT_EQ(code_of(decode_request(b)), ErrorCode::kProtocol);
  }
}

// --- DATA -----------------------------------------------------------------

// A DATA frame as sent: the prefix, then the payload.
std::vector<std::byte> data_frame(const DataHeader& header, std::span<const std::byte> payload) {
  const auto prefix = encode_data_prefix(header, static_cast<uint32_t>(payload.size()));
  std::vector<std::byte> frame(prefix.size() + payload.size());
  std::memcpy(frame.data(), prefix.data(), prefix.size());
  if (!payload.empty()) std::memcpy(frame.data() + prefix.size(), payload.data(), payload.size());
  return frame;
}

TEST(DataFrame, RawPrefixRoundTripsAndThePayloadFollowsIt) {
  std::vector<std::byte> payload(8192, std::byte{0x5c});
  const DataHeader header{0, 0x4000'0000, 8192, Encoding::kRaw, 0x0123'4567'89ab'cdef};
  const Split s = split(data_frame(header, payload));
  EXPECT_EQ(s.header.type, FrameType::kData);
  auto decoded = decode_data_prefix(s.body);
  ASSERT_TRUE(decoded) << decoded.status().to_string();
  EXPECT_EQ(decoded->id, 0u);
  EXPECT_EQ(decoded->gpa, header.gpa);
  EXPECT_EQ(decoded->length, header.length);
  EXPECT_EQ(decoded->encoding, Encoding::kRaw);
  EXPECT_EQ(decoded->checksum, header.checksum);
  const auto rest = std::span(s.body).subspan(kDataPrefixSize);
  EXPECT_TRUE(std::equal(rest.begin(), rest.end(), payload.begin(), payload.end()));
}

TEST(DataFrame, EveryEncodingRoundTrips) {
  const std::vector<std::byte> some(100, std::byte{1});
  for (Encoding e : {Encoding::kRaw, Encoding::kLz4, Encoding::kZstd, Encoding::kZero}) {
    const uint32_t length = e == Encoding::kRaw ? 100 : 4096;
    const auto payload = e == Encoding::kZero ? std::span<const std::byte>{} : std::span(some);
    auto decoded = decode_data_prefix(split(data_frame({3, 0x2000, length, e, 1}, payload)).body);
    ASSERT_TRUE(decoded) << static_cast<int>(e) << ": " << decoded.status().to_string();
    EXPECT_EQ(decoded->encoding, e);
    EXPECT_EQ(decoded->id, 3u);
  }
}

TEST(DataFrame, BodyShorterThanThePrefixIsRefused) {
  const std::vector<std::byte> body(kDataPrefixSize - 1);
  EXPECT_EQ(code_of(decode_data_prefix(body)), ErrorCode::kProtocol);
}

TEST(DataFrame, PayloadThatDoesNotFitTheEncodingIsRefused) {
  const std::vector<std::byte> payload(4097);
  const auto four_k = std::span(payload).first(4096);
  struct Case {
    DataHeader header;
    std::span<const std::byte> payload;
  };
  const Case cases[] = {
      {{1, 0, 4096, Encoding::kRaw, 0}, std::span(payload)},  // raw, one too many
      {{1, 0, 4096, Encoding::kRaw, 0}, four_k.first(4095)},  // raw, one too few
      {{1, 0, 4096, Encoding::kZero, 0}, four_k.first(1)},    // zero with bytes
      {{1, 0, 4096, Encoding::kLz4, 0}, {}},                  // compressed, empty
      {{1, 0, 16, Encoding::kZstd, 0}, four_k},               // beyond zstd's bound
      {{1, 0, 16, Encoding::kLz4, 0}, four_k},                // beyond lz4's bound
      {{1, 0, 0, Encoding::kZero, 0}, {}},                    // length 0
      {{1, 0, kMaxRange + 4096, Encoding::kZero, 0}, {}},     // over kMaxRange
  };
  for (const Case& c : cases) {
    EXPECT_EQ(code_of(decode_data_prefix(split(data_frame(c.header, c.payload)).body)),
              ErrorCode::kProtocol)
        << "encoding " << static_cast<int>(c.header.encoding) << ", length " << c.header.length
        << ", payload " << c.payload.size();
  }
}

TEST(DataFrame, UnknownEncodingOrNonZeroReservedIsRefused) {
  const std::vector<std::byte> good = split(data_frame({1, 0, 4096, Encoding::kZero, 0}, {})).body;
  std::vector<std::byte> encoding = good;
  encoding[20] = std::byte{4};
  std::vector<std::byte> reserved1 = good;
  reserved1[21] = std::byte{1};
  std::vector<std::byte> reserved2 = good;
  reserved2[23] = std::byte{1};
  ASSERT_TRUE(decode_data_prefix(good));
  for (const auto& body : {encoding, reserved1, reserved2}) {
    EXPECT_EQ(code_of(decode_data_prefix(body)), ErrorCode::kProtocol);
  }
}

// --- ERROR ----------------------------------------------------------------

TEST(ErrorFrame, RoundTripsEveryErrorCode) {
  for (int c = static_cast<int>(ErrorCode::kInvalidArgument);
       c <= static_cast<int>(ErrorCode::kShutdown); ++c) {
    const ErrorFrame error{42, static_cast<ErrorCode>(c), "range is gone"};
    const Split s = split(encode(error));
    EXPECT_EQ(s.header.type, FrameType::kError);
    auto decoded = decode_error(s.body);
    ASSERT_TRUE(decoded) << decoded.status().to_string();
    EXPECT_EQ(decoded->id, 42u);
    EXPECT_EQ(decoded->code, error.code);
    EXPECT_EQ(decoded->message, error.message);
  }
}

TEST(ErrorFrame, LongMessageIsCutToTheLimit) {
  const ErrorFrame error{0, ErrorCode::kSource, std::string(kMaxErrorMessage + 100, 'x')};
  auto decoded = decode_error(split(encode(error)).body);
  ASSERT_TRUE(decoded) << decoded.status().to_string();
  EXPECT_EQ(decoded->message, std::string(kMaxErrorMessage, 'x'));
}

TEST(ErrorFrame, UnknownCodeTruncatedBodyOrReservedFieldIsRefused) {
  const std::vector<std::byte> good = split(encode(ErrorFrame{1, ErrorCode::kIo, ""})).body;
  std::vector<std::byte> zero_code = good;
  le::put_u32(std::span(zero_code).subspan(8), 0);
  std::vector<std::byte> unknown_code = good;
  le::put_u32(std::span(unknown_code).subspan(8), static_cast<uint32_t>(ErrorCode::kShutdown) + 1);
  std::vector<std::byte> reserved = good;
  reserved[12] = std::byte{1};
  const std::vector<std::byte> truncated(good.begin(), good.end() - 1);
  for (const auto& body : {zero_code, unknown_code, reserved, truncated}) {
    EXPECT_EQ(code_of(decode_error(body)), ErrorCode::kProtocol);
  }
}

// --- HAVE -----------------------------------------------------------------

TEST(HaveFrame, RoundTripsItsBitmap) {
  const Have have{64, {std::byte{0xff}, std::byte{0x01}, std::byte{0x80}}};
  const Split s = split(encode(have));
  EXPECT_EQ(s.header.type, FrameType::kHave);
  auto decoded = decode_have(s.body);
  ASSERT_TRUE(decoded) << decoded.status().to_string();
  EXPECT_EQ(decoded->first_page, 64u);
  EXPECT_EQ(decoded->bitmap, have.bitmap);
}

TEST(HaveFrame, EmptyBitmapRoundTrips) {
  auto decoded = decode_have(split(encode(Have{8, {}})).body);
  ASSERT_TRUE(decoded) << decoded.status().to_string();
  EXPECT_TRUE(decoded->bitmap.empty());
}

TEST(HaveFrame, BodyWithoutItsFirstPageIsRefused) {
  const std::vector<std::byte> body(7);
  EXPECT_EQ(code_of(decode_have(body)), ErrorCode::kProtocol);
}

// --- layouts, byte for byte, as frames.h documents them ------------------

// The bytes a body must be, written field by field.
template <typename Fields>
std::vector<std::byte> laid_out(size_t size, const Fields& fields) {
  std::vector<std::byte> out(size);
  le::Writer w(out);
  fields(w);
  EXPECT_FALSE(w.overrun());
  EXPECT_EQ(w.pos(), size);
  return out;
}

TEST(FrameLayout, HelloIsVersionReservedEncodingsFlags) {
  const Hello hello{kVersion, 0x0000'0005, true};
  EXPECT_EQ(split(encode(hello)).body, laid_out(12, [](le::Writer& w) {
              w.u16(2);
              w.u16(0);
              w.u32(5);
              w.u32(1);
            }));
}

TEST(FrameLayout, WelcomeIsItsFixedFieldsThenTheState) {
  const Welcome welcome = a_welcome();
  EXPECT_EQ(split(encode(welcome)).body, laid_out(48 + 3, [&](le::Writer& w) {
              w.u16(2);
              w.u16(0);
              w.u32(static_cast<uint32_t>(Encoding::kLz4));
              w.u32(1);
              w.u32(4096);
              w.u64(welcome.ram_start);
              w.u64(welcome.image_size);
              w.u64(welcome.image_id);
              w.u32(kMaxRange);
              w.u32(3);
              w.bytes(welcome.state);
            }));
}

TEST(FrameLayout, RequestIsIdGpaLengthReserved) {
  EXPECT_EQ(split(encode(Request{0x0102'0304'0506'0708, 0xabc000, 0x3000})).body,
            laid_out(24, [](le::Writer& w) {
              w.u64(0x0102'0304'0506'0708);
              w.u64(0xabc000);
              w.u32(0x3000);
              w.u32(0);
            }));
}

TEST(FrameLayout, DataPrefixIsIdGpaLengthEncodingReservedChecksum) {
  const auto prefix = encode_data_prefix({9, 0x5000, 0x1000, Encoding::kZstd, 0xfeed}, 77);
  auto header = decode_frame_header(std::span(prefix).first<kFrameHeaderSize>());
  ASSERT_TRUE(header);
  EXPECT_EQ(header->body_length, kDataPrefixSize + 77);
  const std::vector<std::byte> body(prefix.begin() + kFrameHeaderSize, prefix.end());
  EXPECT_EQ(body, laid_out(kDataPrefixSize, [](le::Writer& w) {
              w.u64(9);
              w.u64(0x5000);
              w.u32(0x1000);
              w.u8(static_cast<uint8_t>(Encoding::kZstd));
              w.u8(0);
              w.u16(0);
              w.u64(0xfeed);
            }));
}

TEST(FrameLayout, ErrorIsIdCodeReservedMessage) {
  EXPECT_EQ(split(encode(ErrorFrame{5, ErrorCode::kOutOfRange, "no"})).body,
            laid_out(18, [](le::Writer& w) {
              w.u64(5);
              w.u32(static_cast<uint32_t>(ErrorCode::kOutOfRange));
              w.u32(0);
              w.u8('n');
              w.u8('o');
            }));
}

TEST(FrameLayout, HaveIsFirstPageThenBitmap) {
  EXPECT_EQ(split(encode(Have{16, {std::byte{0xa5}}})).body, laid_out(9, [](le::Writer& w) {
              w.u64(16);
              w.u8(0xa5);
            }));
}

// --- range geometry -------------------------------------------------------

TEST(CheckRange, RangeInsideTheImageIsAccepted) {
  EXPECT_TRUE(check_range(0x10'0000, 0x2000, 4096, 0x10'0000, 0x10'0000, kMaxRange));
  EXPECT_TRUE(check_range(0x1f'f000, 0x1000, 4096, 0x10'0000, 0x10'0000, kMaxRange));
}

TEST(CheckRange, BadLengthOrAlignmentIsAProtocolError) {
  EXPECT_EQ(check_range(0x10'0000, 0, 4096, 0x10'0000, 1 << 20, kMaxRange).code(),
            ErrorCode::kProtocol);
  EXPECT_EQ(check_range(0x10'0000, 0x1800, 4096, 0x10'0000, 1 << 20, kMaxRange).code(),
            ErrorCode::kProtocol);
  EXPECT_EQ(check_range(0x10'0000, 0x4000, 4096, 0x10'0000, 1 << 20, 0x2000).code(),
            ErrorCode::kProtocol);
  EXPECT_EQ(check_range(0x10'0800, 0x1000, 4096, 0x10'0000, 1 << 20, kMaxRange).code(),
            ErrorCode::kProtocol);
}

TEST(CheckRange, RangeOutsideTheImageIsOutOfRange) {
  EXPECT_EQ(check_range(0x0f'f000, 0x1000, 4096, 0x10'0000, 1 << 20, kMaxRange).code(),
            ErrorCode::kOutOfRange);
  EXPECT_EQ(check_range(0x1f'f000, 0x2000, 4096, 0x10'0000, 1 << 20, kMaxRange).code(),
            ErrorCode::kOutOfRange);
  EXPECT_EQ(check_range(0x20'0000, 0x1000, 4096, 0x10'0000, 1 << 20, kMaxRange).code(),
            ErrorCode::kOutOfRange);
  // Far past the end, where gpa - ram_start + length would wrap.
  EXPECT_EQ(check_range(~uint64_t{0} - 0xfff, 0x1000, 4096, 0x10'0000, 1 << 20, kMaxRange).code(),
            ErrorCode::kOutOfRange);
}

}  // namespace
}  // namespace faultline::v2
