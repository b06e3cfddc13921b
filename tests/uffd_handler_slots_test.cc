// The handler's session slots: connections that never send a handshake give
// way to a VM that does, so silence cannot keep VMs from being served.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "faultline/uffd_handler.h"
#include "net/socket_address.h"
#include "os_linux/uffd.h"
#include "support/firecracker_client.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kMiB = 1 << 20;

TEST(UffdHandlerSlotsTest, AVmIsServedWhileEverySlotIsHeldBySilentConnections) {
  testing::TempDir dir;
  const auto image = testing::make_test_image(8 * kMiB, 4096, 8);
  const std::string mem_file = dir.file("snapshot.mem");
  testing::write_file(mem_file, image);
  UffdHandlerOptions options;
  options.socket_path = dir.file("uffd.sock");
  options.mem_file = mem_file;
  options.max_sessions = 4;
  options.handshake_timeout = 60s;  // longer than the test: only eviction frees a slot
  auto handler = UffdHandler::start(options);
  ASSERT_TRUE(handler) << handler.status().to_string();

  auto address = net::parse_socket_address("unix:" + options.socket_path);
  ASSERT_TRUE(address);
  std::vector<UniqueFd> silent;
  for (size_t i = 0; i < options.max_sessions; ++i) {
    auto fd = net::connect_socket(*address, 5s);
    ASSERT_TRUE(fd) << fd.status().to_string();
    silent.push_back(std::move(*fd));
  }

  testing::FirecrackerOptions vm_options;
  vm_options.regions = {{4 * kMiB, 0}, {2 * kMiB, 5 * kMiB}};
  vm_options.uffd_features = UFFD_FEATURE_EVENT_REMOVE;
  testing::FirecrackerClient vm(vm_options);
  ASSERT_TRUE(vm.setup().is_ok()) << vm.setup().to_string();
  ASSERT_TRUE(vm.connect_and_send(options.socket_path).is_ok());
  // A refused VM would wait for ever on its first fault: see it served first.
  bool serving = false;
  for (int i = 0; i < 1000 && !serving; ++i) {
    serving = nlohmann::json::parse((*handler)->stats_json())["live_sessions"] == 1;
    if (!serving) std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(serving) << (*handler)->stats_json();
  for (size_t r = 0; r < 2; ++r) {
    EXPECT_EQ(std::memcmp(vm.region(r), image.data() + vm.region_offset(r), vm.region_size(r)), 0)
        << "region " << r;
  }
}

}  // namespace
}  // namespace faultline
