// The little-endian codec every wire format and the VM state file share.
#include "core/little_endian.h"

#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace faultline::le {
namespace {

template <size_t N>
std::array<std::byte, N> bytes_of(const uint8_t (&values)[N]) {
  std::array<std::byte, N> out{};
  for (size_t i = 0; i < N; ++i) out[i] = std::byte{values[i]};
  return out;
}

TEST(LittleEndian, PutWritesTheLeastSignificantByteFirst) {
  std::array<std::byte, 8> out{};
  put_u64(out, 0x0102030405060708);
  EXPECT_EQ(out, bytes_of({0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01}));

  std::array<std::byte, 4> out32{};
  put_u32(out32, 0xa1b2c3d4);
  EXPECT_EQ(out32, bytes_of({0xd4, 0xc3, 0xb2, 0xa1}));

  std::array<std::byte, 2> out16{};
  put_u16(out16, 0xbeef);
  EXPECT_EQ(out16, bytes_of({0xef, 0xbe}));
}

TEST(LittleEndian, GetReadsTheLeastSignificantByteFirst) {
  EXPECT_EQ(get_u64(bytes_of({0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01})),
            0x0102030405060708u);
  EXPECT_EQ(get_u32(bytes_of({0xd4, 0xc3, 0xb2, 0xa1})), 0xa1b2c3d4u);
  EXPECT_EQ(get_u16(bytes_of({0xef, 0xbe})), 0xbeefu);
}

TEST(LittleEndian, PutThenGetRoundTripsExtremeValues) {
  for (uint64_t v : {uint64_t{0}, uint64_t{1}, uint64_t{0x8000'0000'0000'0000}, ~uint64_t{0},
                     uint64_t{0x00ff'00ff'00ff'00ff}}) {
    std::array<std::byte, 8> out{};
    put_u64(out, v);
    EXPECT_EQ(get_u64(out), v);
    put_u32(out, static_cast<uint32_t>(v));
    EXPECT_EQ(get_u32(out), static_cast<uint32_t>(v));
    put_u16(out, static_cast<uint16_t>(v));
    EXPECT_EQ(get_u16(out), static_cast<uint16_t>(v));
  }
}

TEST(LittleEndian, GetReadsOnlyTheFirstBytesOfALongerSpan) {
  const auto in = bytes_of({0x01, 0x02, 0xff, 0xff});
  EXPECT_EQ(get_u16(in), 0x0201u);
}

TEST(LittleEndianWriter, WritesFieldsInOrderAndCountsThem) {
  std::array<std::byte, 15> out{};
  Writer w(out);
  w.u8(0x11);
  w.u16(0x2233);
  w.u32(0x44556677);
  const std::array<std::byte, 8> tail = bytes_of({1, 2, 3, 4, 5, 6, 7, 8});
  w.bytes(tail);
  EXPECT_FALSE(w.overrun());
  EXPECT_EQ(w.pos(), out.size());
  EXPECT_EQ(out, bytes_of({0x11, 0x33, 0x22, 0x77, 0x66, 0x55, 0x44, 1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST(LittleEndianWriter, WritingPastTheEndWritesNothingAndMarksOverrun) {
  std::array<std::byte, 6> out{};
  Writer w(out);
  w.u32(0xffffffff);
  w.u32(0xffffffff);  // 4 bytes into 2 left
  EXPECT_TRUE(w.overrun());
  EXPECT_EQ(w.pos(), 4u);
  EXPECT_EQ(out[4], std::byte{0});
  EXPECT_EQ(out[5], std::byte{0});
  const std::array<std::byte, 3> three{};
  w.bytes(three);
  EXPECT_EQ(w.pos(), 4u);
}

TEST(LittleEndianReader, ReadsFieldsInOrder) {
  const auto in = bytes_of({0x11, 0x33, 0x22, 0x77, 0x66, 0x55, 0x44, 8, 7, 6, 5, 4, 3, 2, 1, 9});
  Reader r(in);
  EXPECT_EQ(r.u8(), 0x11u);
  EXPECT_EQ(r.u16(), 0x2233u);
  EXPECT_EQ(r.u32(), 0x44556677u);
  EXPECT_EQ(r.u64(), 0x0102030405060708u);
  EXPECT_EQ(r.left(), 1u);
  ASSERT_EQ(r.rest().size(), 1u);
  EXPECT_EQ(r.rest()[0], std::byte{9});
  EXPECT_EQ(r.left(), 1u);  // rest() does not consume
  EXPECT_EQ(r.bytes(1).size(), 1u);
  EXPECT_EQ(r.left(), 0u);
  EXPECT_FALSE(r.overrun());
}

TEST(LittleEndianReader, ReadingPastTheEndYieldsZeroAndMarksOverrun) {
  const auto in = bytes_of({0xff, 0xff, 0xff});
  Reader r(in);
  EXPECT_EQ(r.u16(), 0xffffu);
  EXPECT_EQ(r.u32(), 0u);
  EXPECT_TRUE(r.overrun());
  EXPECT_EQ(r.left(), 1u);  // the failed read consumed nothing
  EXPECT_TRUE(r.bytes(2).empty());
  EXPECT_EQ(r.u8(), 0xffu);
}

TEST(LittleEndianAppend, AppendsAtTheEndOfTheBuffer) {
  std::vector<std::byte> out{std::byte{0xaa}};
  append_u32(out, 0x01020304);
  append_u64(out, 0x0506070809101112);
  ASSERT_EQ(out.size(), 13u);
  EXPECT_EQ(out[0], std::byte{0xaa});
  EXPECT_EQ(get_u32(std::span(out).subspan(1)), 0x01020304u);
  EXPECT_EQ(get_u64(std::span(out).subspan(5)), 0x0506070809101112u);
}

static_assert(
    [] {
      std::array<std::byte, 8> b{};
      put_u64(b, 42);
      return get_u64(b) == 42;
    }(),
    "the codec works at compile time");

}  // namespace
}  // namespace faultline::le
