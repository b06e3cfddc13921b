// DATA payloads (protocol/page_codec.h): what the encoder produces decodes to
// the bytes it was given, and a payload that does not is refused with
// kProtocol, never installed.
#include "protocol/page_codec.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

namespace faultline::v2 {
namespace {

constexpr uint32_t kRange = 64 << 10;
constexpr Gpa kGpa = 0x4000'0000;

// Compresses well: a few distinct words, repeated.
std::vector<std::byte> compressible(size_t size) {
  std::vector<std::byte> bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::byte>((i / 64) % 7 + 'a');
  return bytes;
}

// Does not compress: what a page of key material or compressed data looks like.
std::vector<std::byte> random_bytes(size_t size) {
  std::mt19937_64 rng(42);
  std::vector<std::byte> bytes(size);
  for (auto& b : bytes) b = static_cast<std::byte>(rng());
  return bytes;
}

// Encodes `input` as `compression`, decodes it into a fresh buffer, and
// returns what was decoded (and the encoding chosen).
struct Trip {
  Encoding encoding = Encoding::kRaw;
  size_t payload_size = 0;
  std::vector<std::byte> decoded;
};

Trip round_trip(Encoding compression, const std::vector<std::byte>& input) {
  PayloadEncoder encoder(compression);
  const PayloadEncoder::Encoded e = encoder.encode(7, kGpa, input, false);
  Trip trip{e.header.encoding, e.payload.size(), std::vector<std::byte>(input.size())};
  const Status status = decode_payload(e.header, e.payload, trip.decoded, true);
  EXPECT_TRUE(status) << status.to_string();
  return trip;
}

TEST(PageCodec, UncompressedRangeIsSentRawAndDecodesToItsBytes) {
  const auto input = compressible(kRange);
  PayloadEncoder encoder(Encoding::kRaw);
  const auto e = encoder.encode(7, kGpa, input, false);
  EXPECT_EQ(e.header.id, 7u);
  EXPECT_EQ(e.header.gpa, kGpa);
  EXPECT_EQ(e.header.length, kRange);
  EXPECT_EQ(e.header.encoding, Encoding::kRaw);
  EXPECT_EQ(e.payload.data(), input.data());  // sent from where it lies, not copied
  EXPECT_EQ(round_trip(Encoding::kRaw, input).decoded, input);
}

TEST(PageCodec, Lz4CompressesACompressibleRangeAndDecodesToItsBytes) {
  const auto input = compressible(kRange);
  const Trip trip = round_trip(Encoding::kLz4, input);
  EXPECT_EQ(trip.encoding, Encoding::kLz4);
  EXPECT_LT(trip.payload_size, input.size());
  EXPECT_EQ(trip.decoded, input);
}

TEST(PageCodec, ZstdCompressesACompressibleRangeAndDecodesToItsBytes) {
  const auto input = compressible(kRange);
  const Trip trip = round_trip(Encoding::kZstd, input);
  EXPECT_EQ(trip.encoding, Encoding::kZstd);
  EXPECT_LT(trip.payload_size, input.size());
  EXPECT_EQ(trip.decoded, input);
}

TEST(PageCodec, IncompressibleRangeFallsBackToRaw) {
  const auto input = random_bytes(kRange);
  for (Encoding compression : {Encoding::kLz4, Encoding::kZstd}) {
    const Trip trip = round_trip(compression, input);
    EXPECT_EQ(trip.encoding, Encoding::kRaw) << static_cast<int>(compression);
    EXPECT_EQ(trip.payload_size, input.size());
    EXPECT_EQ(trip.decoded, input);
  }
}

TEST(PageCodec, ZeroRangeCarriesNoPayloadAndDecodesToZeros) {
  const std::vector<std::byte> input(kRange);
  for (Encoding compression : {Encoding::kRaw, Encoding::kLz4, Encoding::kZstd}) {
    PayloadEncoder encoder(compression);
    const auto e = encoder.encode(1, kGpa, input, true);
    EXPECT_EQ(e.header.encoding, Encoding::kZero);
    EXPECT_TRUE(e.payload.empty());
    std::vector<std::byte> dest(kRange, std::byte{0xee});
    ASSERT_TRUE(decode_payload(e.header, e.payload, dest, true));
    EXPECT_EQ(dest, input);
  }
}

TEST(PageCodec, ZeroRangeLeavesTheDestinationAloneUnlessAskedToFill) {
  PayloadEncoder encoder(Encoding::kRaw);
  const auto e = encoder.encode(1, kGpa, std::vector<std::byte>(4096), true);
  std::vector<std::byte> dest(4096, std::byte{0xee});
  ASSERT_TRUE(decode_payload(e.header, e.payload, dest, false));
  EXPECT_EQ(dest, std::vector<std::byte>(4096, std::byte{0xee}));
}

TEST(PageCodec, EncoderIsReusableAcrossRanges) {
  PayloadEncoder encoder(Encoding::kZstd);
  for (size_t size : {size_t{4096}, size_t{kRange}, size_t{8192}}) {
    const auto input = compressible(size);
    const auto e = encoder.encode(2, kGpa, input, false);
    std::vector<std::byte> dest(size);
    ASSERT_TRUE(decode_payload(e.header, e.payload, dest, true));
    EXPECT_EQ(dest, input);
  }
}

TEST(PageCodec, ChecksumMismatchIsAProtocolError) {
  const auto input = compressible(kRange);
  for (Encoding compression : {Encoding::kRaw, Encoding::kLz4, Encoding::kZstd}) {
    PayloadEncoder encoder(compression);
    auto e = encoder.encode(3, kGpa, input, false);
    e.header.checksum ^= 1;
    std::vector<std::byte> dest(kRange);
    EXPECT_EQ(decode_payload(e.header, e.payload, dest, true).code(), ErrorCode::kProtocol)
        << static_cast<int>(compression);
  }
  PayloadEncoder encoder(Encoding::kRaw);
  auto zero = encoder.encode(3, kGpa, input, true);
  zero.header.checksum ^= 1;
  std::vector<std::byte> dest(kRange);
  EXPECT_EQ(decode_payload(zero.header, zero.payload, dest, true).code(), ErrorCode::kProtocol);
}

TEST(PageCodec, CorruptedRawByteIsAProtocolError) {
  const auto input = random_bytes(4096);
  PayloadEncoder encoder(Encoding::kRaw);
  const auto e = encoder.encode(3, kGpa, input, false);
  std::vector<std::byte> corrupted(e.payload.begin(), e.payload.end());
  corrupted[1000] ^= std::byte{0x10};
  std::vector<std::byte> dest(4096);
  EXPECT_EQ(decode_payload(e.header, corrupted, dest, true).code(), ErrorCode::kProtocol);
  EXPECT_EQ(verify_raw_payload(e.header, corrupted).code(), ErrorCode::kProtocol);
}

TEST(PageCodec, CorruptedCompressedPayloadIsAProtocolError) {
  const auto input = compressible(kRange);
  for (Encoding compression : {Encoding::kLz4, Encoding::kZstd}) {
    PayloadEncoder encoder(compression);
    const auto e = encoder.encode(3, kGpa, input, false);
    ASSERT_EQ(e.header.encoding, compression);
    std::vector<std::byte> corrupted(e.payload.begin(), e.payload.end());
    corrupted[corrupted.size() / 2] ^= std::byte{0xff};
    std::vector<std::byte> dest(kRange);
    EXPECT_EQ(decode_payload(e.header, corrupted, dest, true).code(), ErrorCode::kProtocol)
        << static_cast<int>(compression);
    // Cut short: does not decode to the announced length.
    const auto cut = std::span(e.payload).first(e.payload.size() / 2);
    EXPECT_EQ(decode_payload(e.header, cut, dest, true).code(), ErrorCode::kProtocol)
        << static_cast<int>(compression);
  }
}

TEST(PageCodec, BytesArrivingForAnotherAddressFailTheChecksum) {
  const auto input = compressible(4096);
  PayloadEncoder encoder(Encoding::kRaw);
  auto e = encoder.encode(3, kGpa, input, false);
  e.header.gpa += 4096;
  std::vector<std::byte> dest(4096);
  EXPECT_EQ(decode_payload(e.header, e.payload, dest, true).code(), ErrorCode::kProtocol);
  EXPECT_EQ(verify_raw_payload(e.header, e.payload).code(), ErrorCode::kProtocol);
}

TEST(PageCodec, DestinationOfAnotherLengthIsAProtocolError) {
  const auto input = compressible(8192);
  PayloadEncoder encoder(Encoding::kRaw);
  const auto e = encoder.encode(3, kGpa, input, false);
  std::vector<std::byte> dest(4096);
  EXPECT_EQ(decode_payload(e.header, e.payload, dest, true).code(), ErrorCode::kProtocol);
}

TEST(PageCodec, RawPayloadIsVerifiedWhereItLies) {
  const auto input = random_bytes(8192);
  PayloadEncoder encoder(Encoding::kRaw);
  const auto e = encoder.encode(3, kGpa, input, false);
  EXPECT_TRUE(verify_raw_payload(e.header, e.payload));
  EXPECT_EQ(verify_raw_payload(e.header, e.payload.first(4096)).code(), ErrorCode::kProtocol);
  DataHeader not_raw = e.header;
  not_raw.encoding = Encoding::kLz4;
  EXPECT_EQ(verify_raw_payload(not_raw, e.payload).code(), ErrorCode::kProtocol);
}

TEST(PageCodec, ChecksumDependsOnAddressLengthEncodingAndBytes) {
  const auto bytes = compressible(4096);
  const uint64_t sum = range_checksum(kGpa, 4096, Encoding::kRaw, bytes);
  EXPECT_EQ(sum, range_checksum(kGpa, 4096, Encoding::kRaw, bytes));
  EXPECT_NE(sum, range_checksum(kGpa + 4096, 4096, Encoding::kRaw, bytes));
  EXPECT_NE(sum, range_checksum(kGpa, 8192, Encoding::kRaw, bytes));
  EXPECT_NE(range_checksum(kGpa, 4096, Encoding::kZero, {}),
            range_checksum(kGpa, 4096, Encoding::kRaw, {}));
  auto other = bytes;
  other[4095] ^= std::byte{1};
  EXPECT_NE(sum, range_checksum(kGpa, 4096, Encoding::kRaw, other));
}

TEST(PageCodec, EncodedRangeSurvivesTheDataFrame) {
  const auto input = compressible(kRange);
  PayloadEncoder encoder(Encoding::kLz4);
  const auto e = encoder.encode(9, kGpa, input, false);
  const auto prefix = encode_data_prefix(e.header, static_cast<uint32_t>(e.payload.size()));
  std::vector<std::byte> body(prefix.begin() + kFrameHeaderSize, prefix.end());
  body.insert(body.end(), e.payload.begin(), e.payload.end());
  auto header = decode_data_prefix(body);
  ASSERT_TRUE(header) << header.status().to_string();
  std::vector<std::byte> dest(kRange);
  ASSERT_TRUE(decode_payload(*header, std::span(body).subspan(kDataPrefixSize), dest, true));
  EXPECT_EQ(dest, input);
}

}  // namespace
}  // namespace faultline::v2
