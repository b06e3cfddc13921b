#include "protocol/v1_wire.h"

#include <gtest/gtest.h>

namespace faultline::v1 {
namespace {

constexpr uint64_t k4K = 4096;
constexpr uint64_t k2M = uint64_t{2} << 20;

Result<PageRequest> round_trip(const PageRequest& request) {
  return decode_page_request(encode_page_request(request));
}

TEST(V1WireTest, RequestIsTwoLittleEndianWords) {
  const RequestBytes bytes = encode_page_request({0x0102030405060000, 0x10000});
  const RequestBytes expected = {
      std::byte{0x00}, std::byte{0x00}, std::byte{0x06}, std::byte{0x05},
      std::byte{0x04}, std::byte{0x03}, std::byte{0x02}, std::byte{0x01},
      std::byte{0x00}, std::byte{0x00}, std::byte{0x01}, std::byte{0x00},
      std::byte{0x00}, std::byte{0x00}, std::byte{0x00}, std::byte{0x00}};
  EXPECT_EQ(bytes, expected);
}

TEST(V1WireTest, ValidRequestsRoundTrip) {
  for (const PageRequest request :
       {PageRequest{0, k4K}, PageRequest{0x8000'1000, k4K}, PageRequest{0x4000'0000, k2M},
        PageRequest{0x10000, 0x10000}, PageRequest{~uint64_t{0} - 2 * k4K + 1, k4K}}) {
    auto decoded = round_trip(request);
    ASSERT_TRUE(decoded) << decoded.status().to_string();
    EXPECT_EQ(decoded->gpa, request.gpa);
    EXPECT_EQ(decoded->page_size, request.page_size);
  }
}

TEST(V1WireTest, ReplyHeaderEchoingTheRequestIsAccepted) {
  const PageRequest request{0x7000, k4K};
  EXPECT_TRUE(check_reply_header(encode_reply_header(request), request));
}

class InvalidPageSizeTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(InvalidPageSizeTest, IsRejectedNamingTheSize) {
  const PageRequest request{0, GetParam()};
  auto decoded = round_trip(request);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(decoded.status().message().find("page size"), std::string::npos)
      << decoded.status().message();
  EXPECT_EQ(validate_page_request(request).code(), ErrorCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(V1WireTest, InvalidPageSizeTest,
                         ::testing::Values(0, 3000, 4097, 2048, uint64_t{1} << 63, 2 * k2M,
                                           k2M + k4K));

TEST(V1WireTest, MisalignedAddressIsRejected) {
  auto decoded = round_trip({0x1800, k4K});
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(decoded.status().message().find("not aligned"), std::string::npos)
      << decoded.status().message();

  EXPECT_FALSE(round_trip({0x1000, 0x10000}));  // 4 KiB-aligned is not 64 KiB-aligned
}

TEST(V1WireTest, PageThatWrapsPast2To64IsRejected) {
  auto decoded = round_trip({~uint64_t{0} - k4K + 1, k4K});
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(decoded.status().message().find("wraps"), std::string::npos)
      << decoded.status().message();
}

TEST(V1WireTest, ReplyEchoingAnotherAddressIsAProtocolErrorNamingBoth) {
  const Status status = check_reply_header(encode_reply_header({0x2000, k4K}), {0x1000, k4K});
  EXPECT_EQ(status.code(), ErrorCode::kProtocol);
  EXPECT_NE(status.message().find("0x2000"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("0x1000"), std::string::npos) << status.message();
}

TEST(V1WireTest, ReplyEchoingAnotherPageSizeIsAProtocolError) {
  const Status status = check_reply_header(encode_reply_header({0x10000, 0x10000}), {0x10000, k4K});
  EXPECT_EQ(status.code(), ErrorCode::kProtocol);
  EXPECT_NE(status.message().find("page size 0x10000"), std::string::npos) << status.message();
}

TEST(V1WireTest, LargestRequestIsThePowerOfTwoTheAddressIsAlignedTo) {
  EXPECT_EQ(largest_request_at(0, 4 * k2M), k2M);             // capped at the largest page
  EXPECT_EQ(largest_request_at(0x10000, 4 * k2M), 0x10000u);  // limited by gpa's alignment
  EXPECT_EQ(largest_request_at(0, 3 * k4K), 2 * k4K);         // at most the length
  EXPECT_EQ(largest_request_at(0x3000, k2M), k4K);
  EXPECT_EQ(largest_request_at(0x200000, k2M + k4K), k2M);
}

TEST(V1WireTest, LargestRequestIsValidForEveryAlignedRange) {
  for (uint64_t gpa : {uint64_t{0}, k4K, 0x5000ul, 0x10000ul, k2M, 3 * k2M + 0x7000}) {
    for (uint64_t length : {k4K, 2 * k4K, 5 * k4K, k2M, 3 * k2M}) {
      const uint64_t size = largest_request_at(gpa, length);
      EXPECT_LE(size, length);
      EXPECT_TRUE(validate_page_request({gpa, size})) << gpa << " " << length;
    }
  }
}

TEST(V1WireTest, NoRequestFitsAnUnalignedOrTooShortRange) {
  EXPECT_EQ(largest_request_at(0x800, k4K), 0u);
  EXPECT_EQ(largest_request_at(0, k4K + 1), 0u);
  EXPECT_EQ(largest_request_at(0, k4K - 1), 0u);
  EXPECT_EQ(largest_request_at(0, 0), 0u);
}

}  // namespace
}  // namespace faultline::v1
