// Merging recordings: pages seen in most recordings first, ties by their mean
// first-touch time; sets of different images are refused.
#include <gtest/gtest.h>

#include "faultline/working_set.h"

namespace faultline {
namespace {

constexpr ImageIdentity kImage{.size = 1 << 20, .fingerprint = 42};
constexpr uint64_t kPage = 4096;

// A recording touching `pages` (page numbers) at the given times.
WorkingSet Recording(std::vector<std::pair<uint64_t, uint64_t>> pages,
                     ImageIdentity image = kImage) {
  std::vector<WorkingSetTouch> touches;
  for (auto [page, us] : pages) touches.push_back({.gpa = page * kPage, .since_resume_us = us});
  return WorkingSet(image, std::move(touches));
}

std::vector<uint64_t> PageOrder(const WorkingSet& set) {
  std::vector<uint64_t> order;
  for (const WorkingSetTouch& t : set.touches()) order.push_back(t.gpa / kPage);
  return order;
}

TEST(WorkingSetMergeTest, PagesSeenInMostRecordingsComeFirstThenByMeanFirstTouch) {
  const WorkingSet sets[] = {
      Recording({{1, 10}, {2, 20}, {3, 30}}),
      Recording({{3, 5}, {2, 40}, {4, 1}}),
      Recording({{3, 7}, {5, 2}}),
  };
  auto merged = WorkingSet::merge(sets);
  ASSERT_TRUE(merged.is_ok()) << merged.status().to_string();
  EXPECT_EQ(merged->recordings(), 3u);
  EXPECT_EQ(merged->image(), kImage);
  // 3 in all three; 2 in two; then 4 (1 us), 5 (2 us), 1 (10 us).
  EXPECT_EQ(PageOrder(*merged), (std::vector<uint64_t>{3, 2, 4, 5, 1}));
  EXPECT_EQ(merged->touches()[0].recordings_seen, 3u);
  EXPECT_EQ(merged->touches()[0].since_resume_us, 14u);  // (30 + 5 + 7) / 3
  EXPECT_EQ(merged->touches()[1].recordings_seen, 2u);
  EXPECT_EQ(merged->touches()[1].since_resume_us, 30u);  // (20 + 40) / 2
  EXPECT_EQ(merged->touches()[2].recordings_seen, 1u);
}

TEST(WorkingSetMergeTest, EqualCountsAndTimesKeepTheOrderTheyWereRecordedIn) {
  const WorkingSet sets[] = {Recording({{9, 0}, {4, 0}, {7, 0}})};
  auto merged = WorkingSet::merge(sets);
  ASSERT_TRUE(merged.is_ok());
  EXPECT_EQ(PageOrder(*merged), (std::vector<uint64_t>{9, 4, 7}));
}

TEST(WorkingSetMergeTest, MergingAMergedSetCountsEachRecordingOnce) {
  const WorkingSet a = Recording({{1, 10}, {2, 20}, {3, 30}});
  const WorkingSet b = Recording({{3, 5}, {2, 40}, {4, 1}});
  const WorkingSet c = Recording({{3, 7}, {5, 2}});
  const WorkingSet all[] = {a, b, c};
  const WorkingSet first_two[] = {a, b};
  auto ab = WorkingSet::merge(first_two);
  ASSERT_TRUE(ab.is_ok());
  const WorkingSet then_c[] = {*ab, c};
  auto stepwise = WorkingSet::merge(then_c);
  auto at_once = WorkingSet::merge(all);
  ASSERT_TRUE(stepwise.is_ok() && at_once.is_ok());
  EXPECT_EQ(stepwise->recordings(), 3u);
  EXPECT_EQ(PageOrder(*stepwise), PageOrder(*at_once));
  for (size_t i = 0; i < at_once->touches().size(); ++i) {
    EXPECT_EQ(stepwise->touches()[i].recordings_seen, at_once->touches()[i].recordings_seen);
    // Means of means, each rounded to the microsecond.
    EXPECT_NEAR(static_cast<double>(stepwise->touches()[i].since_resume_us),
                static_cast<double>(at_once->touches()[i].since_resume_us), 1.0);
  }
}

TEST(WorkingSetMergeTest, AWriteInAnyRecordingMarksThePageWritten) {
  WorkingSet read(kImage, {{.gpa = 0, .write = false}});
  WorkingSet wrote(kImage, {{.gpa = 0, .write = true}});
  const WorkingSet sets[] = {read, wrote};
  EXPECT_TRUE(WorkingSet::merge(sets)->touches()[0].write);
}

TEST(WorkingSetMergeTest, SetsOfDifferentImagesAreRefused) {
  const WorkingSet sets[] = {Recording({{1, 0}}),
                             Recording({{1, 0}}, {.size = 1 << 20, .fingerprint = 43})};
  auto merged = WorkingSet::merge(sets);
  ASSERT_FALSE(merged.is_ok());
  EXPECT_EQ(merged.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(merged.status().message().find("working set 2 of 2 was recorded on another image"),
            std::string::npos)
      << merged.status().message();
}

TEST(WorkingSetMergeTest, SetsDisagreeingOnAPagesSizeAreRefused) {
  const WorkingSet sets[] = {WorkingSet(kImage, {{.gpa = 0}}),
                             WorkingSet({.size = 4 << 20, .fingerprint = 42}, {})};
  EXPECT_FALSE(WorkingSet::merge(sets).is_ok());  // (another image: its size)
  const ImageIdentity big{.size = 4 << 20, .fingerprint = 1};
  const WorkingSet sizes[] = {WorkingSet(big, {{.gpa = 0}}),
                              WorkingSet(big, {{.gpa = 0, .page_size = 2 << 20}})};
  auto merged = WorkingSet::merge(sizes);
  ASSERT_FALSE(merged.is_ok());
  EXPECT_NE(merged.status().message().find("disagree on the size of the page at 0x0"),
            std::string::npos)
      << merged.status().message();
}

TEST(WorkingSetMergeTest, NothingToMergeIsRefused) {
  EXPECT_EQ(WorkingSet::merge({}).status().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace faultline
