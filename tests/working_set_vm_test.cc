// Working sets through `faultline vm restore`: a real KVM guest restored
// twice from one snapshot, recording on the first restore and replaying on
// the second. Both finish with the uninterrupted run's result. Skips where
// /dev/kvm cannot run our guest.
#include <gtest/gtest.h>

#include "faultline/working_set.h"
#include "support/vm_cli.h"

namespace faultline::vm {
namespace {

// The workload to report kMidWay, snapshotted into DIR/vm.state, DIR/vm.mem.
void snapshot_mid_way(const TempDir& dir) {
  Cli run = faultline(
      dir, with({"vm", "run", "--json", "--snapshot-after-progress", std::to_string(kMidWay),
                 "--state", dir.file("vm.state"), "--mem", dir.file("vm.mem")},
                kWorkload));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  ASSERT_EQ(run.json()["finished"], false);
}

std::vector<std::string> Restore(const TempDir& dir, std::vector<std::string> extra) {
  return with(
      {"vm", "restore", "--json", "--state", dir.file("vm.state"), "--mem", dir.file("vm.mem")},
      extra);
}

TEST(WorkingSetVm, ARestoreRecordsItsTouchesAndTheNextReplaysThemWithTheSameResult) {
  SKIP_WITHOUT_KVM();
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(snapshot_mid_way(dir));
  const std::string ws = dir.file("vm.ws");
  Cli recording = faultline(dir, Restore(dir, {"--record-working-set", ws}));
  ASSERT_NO_FATAL_FAILURE(expect_uninterrupted_result(recording));
  const auto r = recording.json();
  EXPECT_EQ(r["fault_around_pages"], 0);  // demand only while recording
  EXPECT_EQ(r["background_pages"], 0);
  const uint64_t recorded = r["working_set"]["recorded_pages"].get<uint64_t>();
  EXPECT_EQ(recorded, r["faults"].get<uint64_t>());
  EXPECT_GT(recorded, kPages / 2);  // the rest of the walk touches every workload page
  auto set = WorkingSet::load(ws);
  ASSERT_TRUE(set.is_ok()) << set.status().to_string();
  EXPECT_EQ(set->touches().size(), recorded);
  EXPECT_NE(recording.err.find("recorded a working set of " + std::to_string(recorded) + " pages"),
            std::string::npos)
      << recording.err;

  Cli replaying = faultline(dir, Restore(dir, {"--working-set", ws, "--prefetch", "working-set"}));
  ASSERT_NO_FATAL_FAILURE(expect_uninterrupted_result(replaying));
  const auto p = replaying.json();
  EXPECT_EQ(p["working_set"]["replay_pages"], recorded);
  EXPECT_GT(p["working_set"]["replayed_pages"].get<uint64_t>(), 0u);
  EXPECT_LT(p["faults"].get<uint64_t>(), recorded);
}

TEST(WorkingSetVm, AWorkingSetOfAnotherSnapshotIsRefusedAndTheRestoreStillFinishesRight) {
  SKIP_WITHOUT_KVM();
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(snapshot_mid_way(dir));
  const std::string ws = dir.file("other.ws");
  ASSERT_TRUE(WorkingSet({.size = kRam, .fingerprint = 1}, {{.gpa = 0x200000}}).save(ws).is_ok());
  Cli restored = faultline(dir, Restore(dir, {"--working-set", ws}));
  ASSERT_NO_FATAL_FAILURE(expect_uninterrupted_result(restored));
  EXPECT_NE(restored.err.find("restoring without a working set: working set " + ws +
                              " was recorded on another image: its fingerprint"),
            std::string::npos)
      << restored.err;
  EXPECT_EQ(restored.json()["working_set"]["replayed_pages"], 0);
}

TEST(WorkingSetVm, WorkingSetsWithAnEagerRestoreAreAnError) {
  TempDir dir;
  Cli run = faultline(dir, {"vm", "restore", "--eager", "--state", dir.file("vm.state"),
                            "--record-working-set", dir.file("vm.ws")});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("need a lazy restore, not --eager"), std::string::npos) << run.err;
}

}  // namespace
}  // namespace faultline::vm
