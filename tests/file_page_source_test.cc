#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "faultline/page_source.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using testing::kPage;
constexpr uint64_t kRamStart = 0x8000'0000;

class FilePageSourceTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
  std::string path_ = dir_.file("mem");
  std::vector<std::byte> image_ = testing::make_test_image(32 * kPage, kPage, 4);

  std::unique_ptr<PageSource> open_source() {
    auto source = open_file_page_source(path_, kRamStart);
    EXPECT_TRUE(source.is_ok()) << source.status().to_string();
    return source.is_ok() ? std::move(source).value() : nullptr;
  }
};

TEST_F(FilePageSourceTest, ReadsThePageAtIpaMinusRamStart) {
  testing::write_file(path_, image_);
  auto source = open_source();
  std::vector<std::byte> page(kPage);
  for (uint64_t index : {0, 1, 2, 9, 30}) {
    auto kind = source->fetch(kRamStart + index * kPage, page);
    ASSERT_TRUE(kind.is_ok()) << kind.status().to_string();
    EXPECT_EQ(*kind, PageKind::kData);
    EXPECT_TRUE(std::equal(page.begin(), page.end(), image_.begin() + index * kPage)) << index;
  }
}

TEST_F(FilePageSourceTest, ReportsAllZeroPagesAsZero) {
  testing::write_file(path_, image_);  // every 4th page is zero, written as data
  auto source = open_source();
  std::vector<std::byte> page(kPage);
  auto kind = source->fetch(kRamStart + 3 * kPage, page);
  ASSERT_TRUE(kind.is_ok());
  EXPECT_EQ(*kind, PageKind::kZero);
}

TEST_F(FilePageSourceTest, ReportsHolesOfSparseFilesAsZero) {
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 1 << 20), 0);  // 1 MiB, all hole
  ASSERT_EQ(::pwrite(fd, image_.data(), kPage, 8 * kPage), static_cast<ssize_t>(kPage));
  ::close(fd);
  auto source = open_source();
  std::vector<std::byte> page(kPage, std::byte{0x55});
  auto hole = source->fetch(kRamStart + 100 * kPage, page);
  ASSERT_TRUE(hole.is_ok());
  EXPECT_EQ(*hole, PageKind::kZero);
  auto data = source->fetch(kRamStart + 8 * kPage, page);
  ASSERT_TRUE(data.is_ok());
  EXPECT_EQ(*data, PageKind::kData);
  EXPECT_TRUE(std::equal(page.begin(), page.end(), image_.begin()));
}

TEST_F(FilePageSourceTest, AddressBelowRamStartIsOutOfRangeAndSaysSo) {
  testing::write_file(path_, image_);
  auto source = open_source();
  std::vector<std::byte> page(kPage);
  auto r = source->fetch(kRamStart - kPage, page);
  EXPECT_EQ(r.status().code(), ErrorCode::kOutOfRange);
  EXPECT_NE(r.status().message().find("below ram_start"), std::string::npos);
}

TEST_F(FilePageSourceTest, RangePastTheEndOfTheFileIsAnErrorNotPadding) {
  std::vector<std::byte> short_image(image_.begin(), image_.begin() + 10 * kPage + 100);
  testing::write_file(path_, short_image);
  auto source = open_source();
  std::vector<std::byte> page(kPage);
  auto r = source->fetch(kRamStart + 10 * kPage, page);  // only 100 bytes exist
  EXPECT_EQ(r.status().code(), ErrorCode::kOutOfRange);
  EXPECT_NE(r.status().message().find("past the end of the file"), std::string::npos)
      << r.status().to_string();
  EXPECT_EQ(source->fetch(kRamStart + 1000 * kPage, page).status().code(), ErrorCode::kOutOfRange);
}

TEST_F(FilePageSourceTest, FileTruncatedAfterOpenGivesAShortReadError) {
  testing::write_file(path_, image_);
  auto source = open_source();
  ASSERT_EQ(::truncate(path_.c_str(), 4 * kPage), 0);
  std::vector<std::byte> page(kPage);
  auto r = source->fetch(kRamStart + 20 * kPage, page);
  EXPECT_EQ(r.status().code(), ErrorCode::kIo);
  EXPECT_NE(r.status().message().find("short read"), std::string::npos) << r.status().to_string();
}

TEST_F(FilePageSourceTest, MissingFileIsAClearError) {
  auto source = open_file_page_source(dir_.file("no-such-file"), 0);
  ASSERT_FALSE(source.is_ok());
  EXPECT_EQ(source.status().code(), ErrorCode::kIo);
  EXPECT_NE(source.status().message().find("no-such-file"), std::string::npos);
  EXPECT_NE(source.status().message().find("No such file"), std::string::npos);
}

TEST_F(FilePageSourceTest, DirectoryIsNotAMemoryFile) {
  auto source = open_file_page_source(dir_.path(), 0);
  ASSERT_FALSE(source.is_ok());
  EXPECT_EQ(source.status().code(), ErrorCode::kInvalidArgument);
}

TEST_F(FilePageSourceTest, DescribeNamesTheFile) {
  testing::write_file(path_, image_);
  EXPECT_NE(open_source()->describe().find(path_), std::string::npos);
}

}  // namespace
}  // namespace faultline
