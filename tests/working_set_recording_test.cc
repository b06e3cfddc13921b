// A restore's recording: written once, when the restore ends or when its time
// is up, whichever is first; never by a restore that did not get going.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "core/working_set_session.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

constexpr ImageIdentity kImage{.size = 1 << 20, .fingerprint = 3};

class WorkingSetRecordingTest : public ::testing::Test {
 protected:
  std::shared_ptr<WorkingSetRecorder> recorder_ = std::make_shared<WorkingSetRecorder>(kImage);
  testing::TempDir dir_;
  std::string path_ = dir_.file("ws");
};

TEST_F(WorkingSetRecordingTest, FinishWritesWhatWasRecordedInOrder) {
  WorkingSetRecording recording(path_, {}, recorder_, "test");
  recorder_->start_clock();
  recorder_->note_first_touch(0x3000, 4096, false);
  recorder_->note_first_touch(0x1000, 4096, true);
  recorder_->note_first_touch(0x3000, 4096, false);  // again (after a removal): not twice
  recording.finish();
  auto set = WorkingSet::load(path_);
  ASSERT_TRUE(set.is_ok()) << set.status().to_string();
  EXPECT_EQ(set->image(), kImage);
  ASSERT_EQ(set->touches().size(), 2u);
  EXPECT_EQ(set->touches()[0].gpa, 0x3000u);
  EXPECT_EQ(set->touches()[1].gpa, 0x1000u);
  EXPECT_TRUE(set->touches()[1].write);
  EXPECT_LE(set->touches()[0].since_resume_us, set->touches()[1].since_resume_us);
}

TEST_F(WorkingSetRecordingTest, ARecordingDestroyedWithoutFinishingLeavesTheOldFile) {
  ASSERT_TRUE(WorkingSet(kImage, {{.gpa = 0}, {.gpa = 0x1000}}).save(path_).is_ok());
  { WorkingSetRecording recording(path_, std::chrono::seconds(60), recorder_, "test"); }
  EXPECT_EQ(WorkingSet::load(path_)->touches().size(), 2u);
}

TEST_F(WorkingSetRecordingTest, RecordForWritesOnceWhenItsTimeIsUpAndFinishDoesNotWriteAgain) {
  WorkingSetRecording recording(path_, std::chrono::milliseconds(50), recorder_, "test");
  recorder_->note_first_touch(0x2000, 4096, false);
  for (int i = 0; i < 10000 && !std::filesystem::exists(path_); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(std::filesystem::exists(path_)) << "not written when its time was up";
  recorder_->note_first_touch(0x5000, 4096, false);  // after the file was written
  recording.finish();
  EXPECT_EQ(WorkingSet::load(path_)->touches().size(), 1u);
}

TEST_F(WorkingSetRecordingTest, AFileThatCannotBeWrittenIsLoggedNotThrown) {
  WorkingSetRecording recording(dir_.file("gone/ws"), {}, recorder_, "test");
  recording.finish();
  EXPECT_FALSE(std::filesystem::exists(dir_.file("gone/ws")));
}

}  // namespace
}  // namespace faultline
