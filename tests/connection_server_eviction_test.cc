// When every slot of a ConnectionServer is taken, a connection that has not
// been marked established gives way to a new one; established ones never do.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "net/connection_server.h"
#include "net/socket_address.h"
#include "support/temp_dir.h"

namespace faultline::net {
namespace {

using namespace std::chrono_literals;

class ConnectionServerEvictionTest : public ::testing::Test {
 protected:
  // A handler that waits for one byte from its client; on getting it, marks
  // the connection established, answers 'y' and waits for the server to stop.
  void Start(size_t limit) {
    auto address = parse_socket_address("unix:" + dir_.file("server.sock"));
    ASSERT_TRUE(address);
    address_ = *address;
    auto listener = listen_socket(address_);
    ASSERT_TRUE(listener) << listener.status().to_string();
    ConnectionServerOptions options;
    options.name = "test server";
    options.max_connections = limit;
    options.serve = [](const Connection& c) {
      char byte;
      if (::read(c.fd, &byte, 1) != 1) return;
      c.mark_established();
      const char yes = 'y';
      if (::send(c.fd, &yes, 1, MSG_NOSIGNAL) != 1) return;
      pollfd p{c.stop_fd, POLLIN, 0};
      ::poll(&p, 1, -1);
    };
    options.refused = [this](int, const std::string&, uint64_t) { ++refused_; };
    socket_file_ = std::move(listener->socket_file);  // else the socket goes with `listener`
    auto server = ConnectionServer::start(std::move(listener->fd), std::move(options));
    ASSERT_TRUE(server) << server.status().to_string();
    server_ = std::move(*server);
  }

  UniqueFd Connect() {
    auto fd = connect_socket(address_, 5000ms);
    EXPECT_TRUE(fd) << fd.status().to_string();
    return fd ? std::move(*fd) : UniqueFd();
  }

  // Sends a byte and expects the handler's 'y'.
  static bool Establish(int fd) {
    const char byte = 'x';
    if (::send(fd, &byte, 1, MSG_NOSIGNAL) != 1) return false;
    pollfd p{fd, POLLIN, 0};
    char answer = 0;
    return ::poll(&p, 1, 10000) == 1 && ::read(fd, &answer, 1) == 1 && answer == 'y';
  }

  static bool ClosedByServer(int fd) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) return false;
    char byte;
    return ::read(fd, &byte, 1) <= 0;
  }

  bool EventuallyActive(uint64_t n) {
    for (int i = 0; i < 1000 && server_->active() != n; ++i) std::this_thread::sleep_for(10ms);
    return server_->active() == n;
  }

  testing::TempDir dir_;
  SocketAddress address_;
  SocketFile socket_file_;
  std::atomic<int> refused_{0};
  std::unique_ptr<ConnectionServer> server_;
};

TEST_F(ConnectionServerEvictionTest, WhenFullTheOldestUnprovenConnectionGivesWayToANewOne) {
  Start(2);
  UniqueFd first = Connect(), second = Connect();
  ASSERT_TRUE(EventuallyActive(2));
  UniqueFd newcomer = Connect();
  EXPECT_TRUE(Establish(newcomer.get()));
  EXPECT_TRUE(ClosedByServer(first.get()));
  EXPECT_TRUE(Establish(second.get())) << "only the oldest gave way";
  EXPECT_EQ(server_->evicted(), 1u);
  EXPECT_EQ(refused_.load(), 0);
}

TEST_F(ConnectionServerEvictionTest, EstablishedConnectionsKeepTheirSlotsAndANewcomerIsRefused) {
  Start(2);
  UniqueFd first = Connect(), second = Connect();
  ASSERT_TRUE(Establish(first.get()) && Establish(second.get()));
  UniqueFd newcomer = Connect();
  EXPECT_TRUE(ClosedByServer(newcomer.get()));
  EXPECT_EQ(refused_.load(), 1);
  EXPECT_EQ(server_->evicted(), 0u);
}

TEST_F(ConnectionServerEvictionTest, AStreamOfSilentConnectionsNeverLocksOutOneThatSpeaks) {
  Start(4);
  std::vector<UniqueFd> silent;
  for (int i = 0; i < 64; ++i) silent.push_back(Connect());
  UniqueFd speaker = Connect();
  EXPECT_TRUE(Establish(speaker.get()));
  EXPECT_GE(server_->evicted(), 60u);
  EXPECT_EQ(refused_.load(), 0);
}

}  // namespace
}  // namespace faultline::net
