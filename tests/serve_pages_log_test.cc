// `faultline serve-pages` as a subprocess under clients that send nothing but
// requests outside the image: each is disconnected after a burst, and the
// server's log stays a few lines long.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <string>
#include <thread>

#include "net/socket_address.h"
#include "net/socket_io.h"
#include "os_linux/child_process.h"
#include "support/page_size.h"
#include "support/raw_v2_client.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using namespace std::chrono_literals;

using testing::kPage;
constexpr uint64_t kPages = 64;

size_t CountLines(const std::string& path) {
  std::ifstream in(path);
  size_t lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  return lines;
}

TEST(ServePagesLogTest, ClientsSendingOnlyBadRequestsAreCutOffAndTheLogStaysShort) {
  testing::TempDir dir;
  testing::write_file(dir.file("mem"), testing::make_test_image(kPages * kPage));
  const std::string socket = dir.file("pages.sock");
  const std::string log = dir.file("serve.log");
  auto child =
      ChildProcess::spawn({FAULTLINE_CLI, "serve-pages", "--listen", "unix:" + socket, "--mem-file",
                           dir.file("mem"), "--ram-start", "0", "--max-bad-requests", "16"},
                          {.stderr_file = log});
  ASSERT_TRUE(child) << child.status().to_string();
  auto address = net::parse_socket_address("unix:" + socket);
  ASSERT_TRUE(address);
  bool listening = false;
  for (int i = 0; i < 1000 && !listening; ++i) {
    listening = static_cast<bool>(net::connect_socket(*address, 1s));
    if (!listening) std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(listening);

  constexpr int kClients = 20;
  constexpr int kRequestsEach = 500;
  for (int c = 0; c < kClients; ++c) {
    testing::RawV2Client client("unix:" + socket);
    ASSERT_TRUE(client.connected());
    for (uint64_t id = 1; id <= kRequestsEach; ++id) {
      if (!client.send_request(id, (kPages + id) * kPage, kPage)) break;
    }
    // ERRORs, the last one for the connection, then the hang-up.
    int frames = 0;
    while (client.read_frame()) ++frames;
    EXPECT_EQ(frames, 16) << "client " << c << " was not cut off after 16 bad requests";
  }
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait().code(), 0);
  // Unlimited, that would be a line per request: 10000.
  EXPECT_LT(CountLines(log), 150u) << "server log of " << CountLines(log) << " lines";
}

}  // namespace
}  // namespace faultline
