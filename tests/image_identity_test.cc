// An image's identity: equal for equal images, different for another size or
// other bytes where it samples.
#include <gtest/gtest.h>

#include "faultline/working_set.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

constexpr uint64_t kSize = 16 << 20;

ImageIdentity Identify(const std::vector<std::byte>& image, uint64_t size = kSize) {
  auto source = make_memory_page_source(image, 0x1000'0000);
  auto id = identify_image(*source, 0x1000'0000, size);
  EXPECT_TRUE(id.is_ok()) << id.status().to_string();
  return id.is_ok() ? *id : ImageIdentity{};
}

TEST(ImageIdentityTest, EqualImagesHaveEqualIdentities) {
  const auto image = testing::make_test_image(kSize, 4096, 3, 1);
  const ImageIdentity a = Identify(image);
  EXPECT_EQ(a, Identify(testing::make_test_image(kSize, 4096, 3, 1)));
  EXPECT_EQ(a.size, kSize);
}

TEST(ImageIdentityTest, AnotherImageOfTheSameSizeDiffers) {
  EXPECT_NE(Identify(testing::make_test_image(kSize, 4096, 3, 1)).fingerprint,
            Identify(testing::make_test_image(kSize, 4096, 3, 2)).fingerprint);
}

TEST(ImageIdentityTest, ChangingTheLastPageChangesIt) {
  auto image = testing::make_test_image(kSize, 4096, 0, 1);
  const ImageIdentity before = Identify(image);
  image[kSize - 1] ^= std::byte{1};
  EXPECT_NE(Identify(image), before);
}

TEST(ImageIdentityTest, ASmallerPartOfTheSameBytesDiffers) {
  const auto image = testing::make_test_image(kSize, 4096, 0, 1);
  EXPECT_NE(Identify(image, kSize / 2), Identify(image));
}

TEST(ImageIdentityTest, AnImageOfAFewPagesSamplesThemAll) {
  auto image = testing::make_test_image(3 * 4096, 4096, 0, 1);
  const ImageIdentity before = Identify(image, 3 * 4096);
  image[4096 + 17] ^= std::byte{1};  // the middle page
  EXPECT_NE(Identify(image, 3 * 4096), before);
}

TEST(ImageIdentityTest, ASizeThatIsNotWholePagesIsRefused) {
  const auto image = testing::make_test_image(8192);
  auto source = make_memory_page_source(image, 0);
  EXPECT_EQ(identify_image(*source, 0, 5000).status().code(), ErrorCode::kInvalidArgument);
}

TEST(ImageIdentityTest, ASourceThatFailsIsReportedNamingIt) {
  const auto image = testing::make_test_image(8192);
  auto source = make_memory_page_source(image, 0);
  auto id = identify_image(*source, 0, 1 << 20);  // beyond what it holds
  ASSERT_FALSE(id.is_ok());
  EXPECT_NE(id.status().message().find("identifying the image of"), std::string::npos)
      << id.status().message();
}

}  // namespace
}  // namespace faultline
