// What `faultline stats` tells about sessions: live ones by name, the last
// ended ones (refused handshakes too) with their counters, how long they ran
// and how they ended, bounded; and bytes_served counting only bytes that
// reached guest memory.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "os_linux/uffd.h"
#include "support/firecracker_client.h"
#include "support/handler_process.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using testing::FirecrackerClient;
using testing::kPage;
constexpr uint64_t kRegion = 64 * kPage;

class SessionHistoryTest : public ::testing::Test {
 protected:
  void SetUp() override { testing::write_file(mem_file_, image_); }

  std::unique_ptr<testing::HandlerProcess> StartHandler(std::vector<std::string> extra) {
    extra.insert(extra.begin(), {"--mem-file", mem_file_});
    auto handler = std::make_unique<testing::HandlerProcess>(FAULTLINE_CLI, socket_,
                                                             dir_.file("handler.log"), extra);
    EXPECT_TRUE(handler->started());
    return handler;
  }

  // Polls the stats until `ready` holds of them (at most 10 s); the last stats.
  static nlohmann::json StatsWhen(const testing::HandlerProcess& handler,
                                  const std::function<bool(const nlohmann::json&)>& ready) {
    nlohmann::json stats;
    for (int i = 0; i < 1000; ++i) {
      stats = handler.stats();
      if (!stats.is_discarded() && ready(stats)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return stats;
  }

  testing::TempDir dir_;
  const std::string mem_file_ = dir_.file("guest.mem");
  const std::string socket_ = dir_.file("fc.sock");
  const std::vector<std::byte> image_ = testing::make_test_image(kRegion, kPage, 0);
};

TEST_F(SessionHistoryTest, NamedSessionsShowTheirNamesAndStayInTheHistoryWhenTheyEnd) {
  auto handler = StartHandler({"--session-name", "web"});
  {
    FirecrackerClient vm({.regions = {{kRegion, 0}}});
    ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
    ASSERT_EQ(std::memcmp(vm.region(0), image_.data(), kPage), 0);
    // The session is listed once its thread has registered it, which may be
    // a moment after its server answered the first fault.
    const nlohmann::json live =
        StatsWhen(*handler, [](const nlohmann::json& s) { return s["sessions"].size() == 1; });
    ASSERT_EQ(live["sessions"].size(), 1u) << live.dump(2);
    EXPECT_EQ(live["sessions"][0]["name"], "web-1");
  }  // the VM exits
  const nlohmann::json stats =
      StatsWhen(*handler, [](const nlohmann::json& s) { return s["ended_sessions"].size() == 1; });
  ASSERT_EQ(stats["ended_sessions"].size(), 1u) << stats.dump(2);
  const nlohmann::json& ended = stats["ended_sessions"][0];
  EXPECT_EQ(ended["id"], 1);
  EXPECT_EQ(ended["name"], "web-1");
  EXPECT_GE(ended["faults"].get<uint64_t>(), 1u);
  EXPECT_GE(ended["bytes_served"].get<uint64_t>(), kPage);
  EXPECT_GE(ended["seconds"].get<double>(), 0.0);
  EXPECT_FALSE(ended["ended"].get<std::string>().empty());
  EXPECT_TRUE(stats["sessions"].empty());
  EXPECT_NE(handler->log_text().find("session 1 \"web-1\""), std::string::npos)
      << handler->log_text();
}

TEST_F(SessionHistoryTest, TheHistoryKeepsTheLast64EndedSessionsAndCountsTheRest) {
  auto handler = StartHandler({});
  for (int i = 0; i < 70; ++i) {
    ASSERT_TRUE(testing::send_and_expect_hang_up(socket_, "x", -1, /*close_after_sending=*/true));
  }
  const nlohmann::json stats = StatsWhen(
      *handler, [](const nlohmann::json& s) { return s["ended_sessions_forgotten"] == 6; });
  ASSERT_EQ(stats["ended_sessions"].size(), 64u) << stats.dump(2);
  EXPECT_EQ(stats["ended_sessions_forgotten"], 6);
  EXPECT_EQ(stats["ended_sessions"][0]["id"], 7);
  EXPECT_EQ(stats["ended_sessions"][63]["id"], 70);
  EXPECT_NE(stats["ended_sessions"][0]["ended"].get<std::string>().find("handshake rejected"),
            std::string::npos);
}

TEST_F(SessionHistoryTest, BackgroundFillCountsOnlyTheBytesItInstalled) {
  auto handler = StartHandler({"--background-fill"});
  FirecrackerClient vm({.regions = {{kRegion, 0}}});
  ASSERT_TRUE(vm.setup().is_ok()) << vm.setup().to_string();
  // The VM has installed every fourth page itself: the fill finds them there.
  uint64_t preinstalled = 0;
  for (uint64_t off = 0; off < kRegion; off += 4 * kPage) {
    const auto r = linux_uffd::copy(vm.uffd(), reinterpret_cast<uint64_t>(vm.region(0)) + off,
                                    image_.data() + off, kPage);
    ASSERT_EQ(r.error, 0) << std::strerror(r.error);
    preinstalled += kPage;
  }
  auto connection = testing::send_handshake(socket_, vm.mappings_json(), vm.uffd());
  ASSERT_TRUE(connection.is_ok()) << connection.status().to_string();
  const nlohmann::json stats = StatsWhen(*handler, [](const nlohmann::json& s) {
    return s["sessions"].size() == 1 && s["sessions"][0]["fully_resident_ms"].get<double>() > 0;
  });
  ASSERT_EQ(stats["sessions"].size(), 1u) << stats.dump(2);
  const nlohmann::json& session = stats["sessions"][0];
  ASSERT_GT(session["fully_resident_ms"].get<double>(), 0) << session.dump(2);
  EXPECT_EQ(session["faults"], 0) << session.dump(2);
  EXPECT_EQ(session["bytes_served"].get<uint64_t>(), kRegion - preinstalled) << session.dump(2);
  EXPECT_EQ(std::memcmp(vm.region(0), image_.data(), kRegion), 0);
}

}  // namespace
}  // namespace faultline
