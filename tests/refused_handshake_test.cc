// A VM whose handshake `faultline handle` refuses, though its userfaultfd came
// with it: the VM must learn at once (SIGBUS on its first fault), not wait for
// ever; and the refusal says what was wrong without flooding the log.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <thread>

#include "os_linux/uffd.h"
#include "support/firecracker_client.h"
#include "support/handler_process.h"
#include "support/sigbus.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using testing::FirecrackerClient;
using testing::kPage;
constexpr uint64_t kRegion = 16 * kPage;

bool kernel_can_poison() {
  Result<uint64_t> features = linux_uffd::supported_features();
  return features.is_ok() && (*features & UFFD_FEATURE_POISON) != 0;
}

class RefusedHandshakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_file(mem_file_, testing::make_test_image(kRegion, kPage, 0));
    handler_ = std::make_unique<testing::HandlerProcess>(
        FAULTLINE_CLI, socket_, dir_.file("handler.log"),
        std::vector<std::string>{"--mem-file", mem_file_});
    ASSERT_TRUE(handler_->started());
  }

  // Reads the first page of the VM's region as a vCPU would. True if the read
  // got SIGBUS. The hang guard: a read still waiting after 10 s is released
  // with a zero page (so the test ends) and counts as no SIGBUS.
  static bool FirstTouchGetsSigbus(FirecrackerClient& vm) {
    std::promise<bool> got_sigbus;
    std::future<bool> outcome = got_sigbus.get_future();
    std::thread vcpu([&] {
      std::byte copy[kPage];
      got_sigbus.set_value(!testing::copy_catching_sigbus(copy, vm.region(0), kPage));
    });
    if (outcome.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      linux_uffd::zeropage(vm.uffd(), reinterpret_cast<uint64_t>(vm.region(0)), kPage);
    }
    vcpu.join();
    return outcome.get();
  }

  testing::TempDir dir_;
  const std::string mem_file_ = dir_.file("guest.mem");
  const std::string socket_ = dir_.file("fc.sock");
  std::unique_ptr<testing::HandlerProcess> handler_;
};

TEST_F(RefusedHandshakeTest, InvalidJsonWithAUserfaultfdGivesTheVmSigbusOnItsFirstFault) {
  if (!kernel_can_poison()) GTEST_SKIP() << "this kernel cannot poison pages (UFFDIO_POISON)";
  FirecrackerClient vm({.regions = {{kRegion, 0}}});
  ASSERT_TRUE(vm.setup().is_ok()) << vm.setup().to_string();
  auto connection = testing::send_handshake(socket_, "[{]", vm.uffd());
  ASSERT_TRUE(connection.is_ok()) << connection.status().to_string();
  ASSERT_TRUE(handler_->wait_for_log("not valid JSON")) << handler_->log_text();

  EXPECT_TRUE(FirstTouchGetsSigbus(vm)) << handler_->log_text();
  EXPECT_NE(handler_->log_text().find("with SIGBUS (UFFDIO_POISON)"), std::string::npos)
      << handler_->log_text();
}

TEST_F(RefusedHandshakeTest, BadRegionsWithAUserfaultfdGiveTheVmSigbusAndAreRecordedWhenItLeaves) {
  if (!kernel_can_poison()) GTEST_SKIP() << "this kernel cannot poison pages (UFFDIO_POISON)";
  FirecrackerClient vm({.regions = {{kRegion, 0}}});
  ASSERT_TRUE(vm.setup().is_ok()) << vm.setup().to_string();
  // Its region reaches past the end of the memory file.
  const std::string json =
      "[{\"base_host_virt_addr\":" + std::to_string(reinterpret_cast<uint64_t>(vm.region(0))) +
      ",\"size\":" + std::to_string(2 * kRegion) + ",\"offset\":0}]";
  auto connection = testing::send_handshake(socket_, json, vm.uffd());
  ASSERT_TRUE(connection.is_ok()) << connection.status().to_string();
  ASSERT_TRUE(handler_->wait_for_log("past the end of the memory file")) << handler_->log_text();

  EXPECT_TRUE(FirstTouchGetsSigbus(vm)) << handler_->log_text();
  connection->reset();  // the VM leaves
  ASSERT_TRUE(handler_->wait_for_log("refused VM gone after 1 faults got SIGBUS"))
      << handler_->log_text();
  const nlohmann::json ended = handler_->stats()["ended_sessions"];
  ASSERT_EQ(ended.size(), 1u) << ended.dump();
  EXPECT_EQ(ended[0]["refusal"], "faults answered with SIGBUS");
  EXPECT_EQ(ended[0]["poisoned"], 1);
  EXPECT_NE(ended[0]["ended"].get<std::string>().find("past the end"), std::string::npos);
}

TEST_F(RefusedHandshakeTest, AUserfaultfdWithoutUffdioApiIsRefusedForWhatItIs) {
  FirecrackerClient vm({.regions = {{kRegion, 0}}});
  ASSERT_TRUE(vm.setup().is_ok()) << vm.setup().to_string();
  const long raw = ::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (raw < 0) GTEST_SKIP() << "userfaultfd(2) is not available here";
  UniqueFd uninitialised(static_cast<int>(raw));  // no UFFDIO_API done on it

  EXPECT_TRUE(testing::send_and_expect_hang_up(socket_, vm.mappings_json(), uninitialised.get()));
  ASSERT_TRUE(handler_->wait_for_log("never initialised")) << handler_->log_text();
  EXPECT_EQ(handler_->log_text().find("has exited"), std::string::npos) << handler_->log_text();
  EXPECT_EQ(handler_->stats()["handshakes_rejected"], 1);
}

TEST_F(RefusedHandshakeTest, ARejectionQuotesOnlyABitOfAHugeHandshakeAndSaysHowMuchWasCut) {
  const std::string huge(60000, 'A');
  const std::string json =
      "[{\"base_host_virt_addr\":\"" + huge + "\",\"size\":4096,\"offset\":0}]";
  auto uffd = linux_uffd::open(0);  // nothing registered on it
  ASSERT_TRUE(uffd.is_ok()) << uffd.status().to_string();
  EXPECT_TRUE(testing::send_and_expect_hang_up(socket_, json, uffd->get(),
                                               /*close_after_sending=*/true));
  ASSERT_TRUE(handler_->wait_for_log("bytes cut")) << handler_->log_text().substr(0, 2000);
  const std::string log = handler_->log_text();
  EXPECT_EQ(log.find(std::string(1000, 'A')), std::string::npos) << "the log echoes the handshake";
  EXPECT_LT(log.size(), 4096u);
}

}  // namespace
}  // namespace faultline
