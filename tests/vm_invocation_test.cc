// The invocation workload (guest/invocation.S): a guest that fills its memory,
// reports ready (the snapshot point), then touches a scattered, seeded 15% of
// its pages, as a function invocation after a resume would. Every restore of
// the ready snapshot must finish with the uninterrupted run's result, which
// must be what a model of the guest computes. Skips where /dev/kvm cannot run
// our guest.
#include <gtest/gtest.h>

#include <bit>
#include <set>
#include <string>
#include <vector>

#include "support/temp_dir.h"
#include "support/vm_cli.h"
#include "vm/invocation.h"
#include "vm/workload.h"

namespace faultline::vm {
namespace {

constexpr uint64_t kInvocationRam = 64ull << 20;
constexpr uint64_t kInvocationPages = (kInvocationRam - (1 << 20)) / 4096;
constexpr uint64_t kTouchPermille = 150;
// 8 MiB between reports: 7 in the fill (63 MiB of workload pages), then ready.
// clang-format off
const std::vector<std::string> kInvocation = {
    "--workload", "invocation", "--ram", "64M", "--seed", "7", "--progress-every", "8M",
    "--words-per-page", "2", "--touch-permille", "150"};
// clang-format on
constexpr uint64_t kReadyReport = 8;

struct ModelResult {
  uint64_t checksum = 0;
  uint64_t pages = 0;
};

// What guest/invocation.S computes after pass 1, computed here instead.
ModelResult model_invocation() {
  ModelResult r;
  for (uint64_t page : invocation_touches(kInvocationPages, kSeed, kTouchPermille)) {
    const uint64_t first_word = model_page_words(page, kSeed, 1)[0];
    r.checksum = (std::rotl(r.checksum, 5) ^ first_word) * kModelMul;
    ++r.pages;
  }
  return r;
}

void expect_model_result(const Cli& run) {
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto j = run.json();
  ASSERT_FALSE(j.is_discarded()) << run.out;
  const ModelResult model = model_invocation();
  EXPECT_EQ(j["finished"], true);
  EXPECT_EQ(j["checksum"], hex(model.checksum));
  EXPECT_EQ(j["mismatches"], 0);
  EXPECT_EQ(j["pages"], model.pages);
}

// Runs the invocation workload to its ready report and snapshots it there.
void snapshot_at_ready(const TempDir& dir) {
  Cli run = faultline(
      dir, with({"vm", "run", "--json", "--snapshot-after-progress", std::to_string(kReadyReport),
                 "--state", dir.file("vm.state"), "--mem", dir.file("vm.mem")},
                kInvocation));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto j = run.json();
  ASSERT_FALSE(j.is_discarded()) << run.out;
  ASSERT_EQ(j["finished"], false);
  ASSERT_EQ(j["progress_total"], kReadyReport);
  ASSERT_EQ(j["snapshot"]["after_progress"], kReadyReport);
}

Cli restore(const TempDir& dir, const std::vector<std::string>& flags) {
  return faultline(dir, with({"vm", "restore", "--json", "--state", dir.file("vm.state"), "--mem",
                              dir.file("vm.mem")},
                             flags));
}

TEST(VmInvocation, TouchesFifteenPercentOfThePagesEachOnceAllOverGuestMemory) {
  const std::vector<uint64_t> touches = invocation_touches(kInvocationPages, kSeed, kTouchPermille);
  EXPECT_EQ(touches.size(), kInvocationPages * kTouchPermille / 1000);
  const std::set<uint64_t> distinct(touches.begin(), touches.end());
  EXPECT_EQ(distinct.size(), touches.size());
  // Scattered: every eighth of guest memory holds 10-20% of the touches, and
  // no more than a few of them follow the page before.
  std::vector<uint64_t> per_eighth(8);
  uint64_t adjacent = 0;
  for (size_t i = 0; i < touches.size(); ++i) {
    ASSERT_LT(touches[i], kInvocationPages);
    ++per_eighth[touches[i] * 8 / kInvocationPages];
    if (i > 0 && touches[i] == touches[i - 1] + 1) ++adjacent;
  }
  for (uint64_t n : per_eighth) {
    EXPECT_GT(n, touches.size() / 10);
    EXPECT_LT(n, touches.size() / 5);
  }
  EXPECT_LT(adjacent, touches.size() / 100);
}

TEST(VmInvocation, AnotherSeedTouchesOtherPages) {
  const std::vector<uint64_t> a = invocation_touches(kInvocationPages, 1, kTouchPermille);
  const std::vector<uint64_t> b = invocation_touches(kInvocationPages, 2, kTouchPermille);
  EXPECT_NE(a, b);
}

TEST(VmInvocation, UninterruptedRunComputesWhatTheModelComputes) {
  SKIP_WITHOUT_KVM();
  TempDir dir;
  Cli run = faultline(dir, with({"vm", "run", "--json"}, kInvocation));
  ASSERT_NO_FATAL_FAILURE(expect_model_result(run));
  EXPECT_EQ(run.json()["progress"], kReadyReport);
}

TEST(VmInvocation, LazyRestoreOfTheReadySnapshotGivesTheUninterruptedResult) {
  SKIP_WITHOUT_KVM();
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(snapshot_at_ready(dir));
  Cli restored = restore(dir, {"--lazy"});
  ASSERT_NO_FATAL_FAILURE(expect_model_result(restored));
}

TEST(VmInvocation, DemandOnlyRestoreFaultsInTheTouchedPagesAndGivesTheUninterruptedResult) {
  SKIP_WITHOUT_KVM();
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(snapshot_at_ready(dir));
  Cli restored = restore(dir, {"--prefetch", "demand"});
  ASSERT_NO_FATAL_FAILURE(expect_model_result(restored));
  // One page per fault and no fill: every touched page came by a fault.
  EXPECT_GE(restored.json()["faults"].get<uint64_t>(), model_invocation().pages);
  EXPECT_EQ(restored.json()["background_pages"], 0);
}

TEST(VmInvocation, EagerRestoreOfTheReadySnapshotGivesTheUninterruptedResult) {
  SKIP_WITHOUT_KVM();
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(snapshot_at_ready(dir));
  Cli restored = restore(dir, {"--eager"});
  ASSERT_NO_FATAL_FAILURE(expect_model_result(restored));
  EXPECT_EQ(restored.json()["faults"], 0);
}

TEST(VmInvocation, TouchingNoPagesOrMoreThanAllIsRefusedWithTheRange) {
  SKIP_WITHOUT_KVM();
  TempDir dir;
  for (const char* permille : {"0", "1001"}) {
    Cli run = faultline(dir, {"vm", "run", "--workload", "invocation", "--ram", "4M",
                              "--touch-permille", permille});
    EXPECT_EQ(run.exit_code, 1) << permille;
    EXPECT_NE(
        run.err.find(std::string(permille) + " pages touched per 1000: it must be from 1 to 1000"),
        std::string::npos)
        << run.err;
  }
}

TEST(VmInvocation, AnUnknownWorkloadIsRefusedWithTheKnownOnes) {
  TempDir dir;
  Cli run = faultline(dir, {"vm", "run", "--workload", "lambda"});
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.err.find("--workload: lambda not in {walk,invocation}"), std::string::npos)
      << run.err;
}

}  // namespace
}  // namespace faultline::vm
