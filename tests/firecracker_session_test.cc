// A Firecracker session as the handler runs it, against a client that acts as
// Firecracker: the client did UFFDIO_API on its userfaultfd itself, with its
// own features, so the handler can only learn from the descriptor whether it
// may poison pages.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "firecracker/session.h"
#include "os_linux/uffd.h"
#include "support/firecracker_client.h"
#include "support/sigbus.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using testing::FirecrackerClient;
using testing::FirecrackerOptions;

using testing::kPage;
constexpr uint64_t kRegion = 64 * kPage;

bool kernel_can_poison() {
  Result<uint64_t> features = linux_uffd::supported_features();
  return features.is_ok() && (*features & UFFD_FEATURE_POISON) != 0;
}

class FirecrackerSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kernel_can_poison()) GTEST_SKIP() << "this kernel cannot poison pages (UFFDIO_POISON)";
    FirecrackerOptions options;
    options.regions = {{kRegion, 0}};
    options.uffd_features = 0;  // what Firecracker asks for: no UFFD_FEATURE_POISON
    vm_ = std::make_unique<FirecrackerClient>(options);
    ASSERT_TRUE(vm_->setup().is_ok()) << vm_->setup().to_string();
  }

  // A session whose memory file holds only the first half of the region: a
  // fault in the second half is a source failure.
  Result<std::unique_ptr<firecracker::Session>> StartSession() {
    firecracker::SessionConfig config;
    config.open_source = [this]() -> Result<std::unique_ptr<PageSource>> {
      return make_memory_page_source(std::span(image_).first(kRegion / 2), 0);
    };
    config.source_deadline = std::chrono::milliseconds(20);
    config.prefetch.policy = PrefetchPolicy::kDemand;
    firecracker::ReceivedHandshake handshake{vm_->mappings_json(), UniqueFd(::dup(vm_->uffd()))};
    return firecracker::Session::start(1, ::getpid(), std::move(handshake), config);
  }

  std::vector<std::byte> image_ = testing::make_test_image(kRegion, kPage, 8);
  std::unique_ptr<FirecrackerClient> vm_;
};

TEST_F(FirecrackerSessionTest, TheSessionCanPoisonWhereTheKernelAllows) {
  auto session = StartSession();
  ASSERT_TRUE(session.is_ok()) << session.status().to_string();
  EXPECT_EQ((*session)->stats()["can_poison"], true) << (*session)->stats().dump();
}

TEST_F(FirecrackerSessionTest, ASourceFailureGivesTheVmSigbusAndTheSessionGoesOn) {
  auto session = StartSession();
  ASSERT_TRUE(session.is_ok()) << session.status().to_string();
  std::vector<std::byte> page(kPage);
  const uint64_t missing = kRegion / 2 + 3 * kPage;  // past the end of the memory file
  EXPECT_FALSE(testing::copy_catching_sigbus(page.data(), vm_->region(0) + missing, kPage));
  ASSERT_TRUE(testing::copy_catching_sigbus(page.data(), vm_->region(0) + kPage, kPage));
  EXPECT_EQ(std::memcmp(page.data(), image_.data() + kPage, kPage), 0);
  const auto stats = (*session)->stats();
  EXPECT_EQ(stats["poisoned"], 1) << stats.dump();
  EXPECT_EQ(stats["source_errors"], 1) << stats.dump();
}

// The fault server the session is built on, adopting the client's descriptor.
TEST_F(FirecrackerSessionTest, AnAdoptedUserfaultfdCanPoisonWhereTheKernelAllows) {
  PagerHandle pager = Pager::create(make_memory_page_source(image_, 0));
  ASSERT_TRUE(pager->register_region(0, kRegion).is_ok());
  auto server = FaultServer::adopt(pager, UniqueFd(::dup(vm_->uffd())));
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  EXPECT_TRUE((*server)->can_poison());
}

}  // namespace
}  // namespace faultline
