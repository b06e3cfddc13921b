// Firecracker's handshake JSON: every era's field names, and every bad input
// rejected with a message that names the problem.
#include "firecracker/handshake.h"

#include <gtest/gtest.h>

namespace faultline::firecracker {
namespace {

HandshakeLimits file_of(uint64_t size) {
  HandshakeLimits limits;
  limits.mem_file_size = size;
  return limits;
}

constexpr uint64_t k1M = 1 << 20;

void expect_rejected(std::string_view json, std::string_view needle,
                     const HandshakeLimits& limits = file_of(64 * k1M)) {
  auto parsed = parse_region_mappings(json, limits);
  ASSERT_FALSE(parsed.is_ok()) << "accepted: " << json;
  EXPECT_NE(parsed.status().message().find(needle), std::string::npos)
      << "message for " << json << " was: " << parsed.status().to_string();
}

TEST(HandshakeTest, CurrentFormWithPageSizeInBytes) {
  auto parsed = parse_region_mappings(
      R"([{"base_host_virt_addr":1048576,"size":2097152,"offset":0,"page_size":4096,"page_size_kib":4096},
          {"base_host_virt_addr":8388608,"size":1048576,"offset":2097152,"page_size":4096}])",
      file_of(64 * k1M));
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[0].base_host_virt_addr, k1M);
  EXPECT_EQ((*parsed)[0].size, 2 * k1M);
  EXPECT_EQ((*parsed)[1].offset, 2 * k1M);
  EXPECT_EQ((*parsed)[1].page_size, 4096u);
}

TEST(HandshakeTest, OlderFormsPageSizeKibHoldsBytes) {
  auto parsed = parse_region_mappings(
      R"([{"base_host_virt_addr":2097152,"size":4194304,"offset":0,"page_size_kib":2097152}])",
      file_of(64 * k1M));
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  EXPECT_EQ((*parsed)[0].page_size, 2 * k1M);
}

TEST(HandshakeTest, EarliestFormWithoutPageSizeUsesTheSystemPageSize) {
  auto parsed = parse_region_mappings(R"([{"base_host_virt_addr":4096,"size":8192,"offset":4096}])",
                                      file_of(64 * k1M));
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  EXPECT_EQ((*parsed)[0].page_size, kDefaultPageSize);
}

TEST(HandshakeTest, UnknownFieldsAreIgnored) {
  EXPECT_TRUE(
      parse_region_mappings(
          R"([{"base_host_virt_addr":4096,"size":4096,"offset":0,"future":true}])", file_of(k1M))
          .is_ok());
}

TEST(HandshakeTest, MalformedOrTruncatedJsonIsAProtocolError) {
  auto truncated = parse_region_mappings(R"([{"base_host_virt_addr":4096,"si)", file_of(k1M));
  EXPECT_EQ(truncated.status().code(), ErrorCode::kProtocol);
  EXPECT_NE(truncated.status().message().find("cut short"), std::string::npos);
  EXPECT_EQ(parse_region_mappings("[{]", file_of(k1M)).status().code(), ErrorCode::kProtocol);
  EXPECT_EQ(parse_region_mappings("", file_of(k1M)).status().code(), ErrorCode::kProtocol);
}

TEST(HandshakeTest, IncompleteJsonIsToldApartFromBrokenJson) {
  EXPECT_TRUE(is_incomplete_json(R"([{"base_host_virt_addr":4096,)"));
  EXPECT_TRUE(is_incomplete_json("["));
  EXPECT_FALSE(is_incomplete_json("[}"));
  EXPECT_FALSE(is_incomplete_json("[]"));
  EXPECT_FALSE(is_incomplete_json("[] x"));
}

TEST(HandshakeTest, WrongShapesAreRejected) {
  expect_rejected(R"({"base_host_virt_addr":4096})", "not an array");
  expect_rejected("[]", "no regions");
  expect_rejected("[42]", "not an object");
  expect_rejected(R"([{"size":4096,"offset":0}])", "\"base_host_virt_addr\" is missing");
  expect_rejected(R"([{"base_host_virt_addr":-4096,"size":4096,"offset":0}])",
                  "not an unsigned integer");
  expect_rejected(R"([{"base_host_virt_addr":"4096","size":4096,"offset":0}])",
                  "not an unsigned integer");
  expect_rejected(R"([{"base_host_virt_addr":4096.5,"size":4096,"offset":0}])",
                  "not an unsigned integer");
}

TEST(HandshakeTest, PageSizesThatAreZeroOrNotPowersOfTwoAreRejected) {
  expect_rejected(R"([{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":0}])",
                  "page size 0");
  expect_rejected(R"([{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":3000}])",
                  "page size 3000");
  expect_rejected(R"([{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size_kib":4}])",
                  "page size 4 (from page_size_kib)");
  expect_rejected(
      R"([{"base_host_virt_addr":0,"size":1073741824,"offset":0,"page_size":1073741824}])",
      "page size 1073741824");
}

TEST(HandshakeTest, EmptyUnalignedWrappingAndOversizedRegionsAreRejected) {
  expect_rejected(R"([{"base_host_virt_addr":4096,"size":0,"offset":0}])", "region 0 is empty");
  expect_rejected(R"([{"base_host_virt_addr":4097,"size":4096,"offset":0}])", "multiples");
  expect_rejected(R"([{"base_host_virt_addr":4096,"size":4096,"offset":100}])", "multiples");
  expect_rejected(R"([{"base_host_virt_addr":18446744073709547520,"size":8192,"offset":0}])",
                  "wraps");
  expect_rejected(R"([{"base_host_virt_addr":4096,"size":8192,"offset":1044480}])",
                  "past the end of the memory file", file_of(k1M));
}

TEST(HandshakeTest, OverlappingRegionsAreRejected) {
  expect_rejected(R"([{"base_host_virt_addr":4096,"size":8192,"offset":0},
                      {"base_host_virt_addr":8192,"size":4096,"offset":65536}])",
                  "regions 0 and 1 overlap in host memory");
  expect_rejected(R"([{"base_host_virt_addr":4096,"size":8192,"offset":0},
                      {"base_host_virt_addr":65536,"size":4096,"offset":4096}])",
                  "regions 0 and 1 overlap in the memory file");
}

TEST(HandshakeTest, TooManyRegionsAreRejected) {
  std::string json = "[";
  for (int i = 0; i < 65; ++i) {
    json += (i ? "," : "") + std::string(R"({"base_host_virt_addr":)") +
            std::to_string((i + 1) * 8192) + R"(,"size":4096,"offset":)" +
            std::to_string(i * 4096) + "}";
  }
  json += "]";
  expect_rejected(json, "65 regions");
}

TEST(HandshakeTest, WithoutAKnownFileSizeOnlyTheFileBoundIsSkipped) {
  HandshakeLimits unknown;
  EXPECT_TRUE(parse_region_mappings(
                  R"([{"base_host_virt_addr":4096,"size":4096,"offset":1099511627776}])", unknown)
                  .is_ok());
}

}  // namespace
}  // namespace faultline::firecracker
