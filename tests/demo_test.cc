// `faultline demo`, as `make demo` runs it: it says what its image holds, it
// verifies every page, and its results table holds results, not log lines.
#include <gtest/gtest.h>

#include <string>

#include "support/cli_process.h"
#include "support/temp_dir.h"
#include "vm/probe.h"

namespace faultline {
namespace {

using testing::Cli;

TEST(Demo, TheProcessDemoSaysWhatItsImageHoldsAndVerifiesEveryPage) {
  testing::TempDir dir;
  const Cli run = testing::faultline(dir, {"demo", "--process", "--size", "8M"});
  ASSERT_EQ(run.exit_code, 0) << run.output();
  // 2048 pages: every 8th a hole, every 64th (offset 3) written as zeros.
  EXPECT_NE(run.out.find("2048 pages: 256 holes (1 in 8) and 32 written as zeros (1 in 64)"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("verified          2048 pages, 0 wrong  OK"), std::string::npos)
      << run.out;
}

TEST(Demo, TheVmDemoTableHoldsNoLogLines) {
  const Status kvm = vm::probe_kvm();
  if (!kvm.is_ok()) GTEST_SKIP() << "KVM cannot run the test guest here: " << kvm.to_string();
  testing::TempDir dir;
  const Cli run = testing::faultline(dir, {"demo", "--ram", "32M"});
  ASSERT_EQ(run.exit_code, 0) << run.output();
  EXPECT_NE(run.out.find("OK: every restored guest finished with the uninterrupted run's result"),
            std::string::npos)
      << run.out;
  // The page server runs inside the demo; its routine lines would land in the table.
  const std::string all = run.output();
  EXPECT_EQ(all.find("] page server"), std::string::npos) << all;
  EXPECT_EQ(all.find(" info "), std::string::npos) << all;
}

}  // namespace
}  // namespace faultline
