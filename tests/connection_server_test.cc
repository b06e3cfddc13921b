// The thread-per-connection life cycle both servers share: a limit that
// refuses established connections, counters, and a stop that does not wait
// for clients to leave.
#include "net/connection_server.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "net/socket_address.h"
#include "support/temp_dir.h"

namespace faultline::net {
namespace {

using namespace std::chrono_literals;

class ConnectionServerTest : public ::testing::Test {
 protected:
  // Listens and serves with `serve`; connections beyond `limit` are counted in refused_.
  void Start(size_t limit, std::function<void(const Connection&)> serve) {
    auto address = parse_socket_address("unix:" + dir_.file("server.sock"));
    ASSERT_TRUE(address) << address.status().to_string();
    address_ = *address;
    auto listener = listen_socket(address_);
    ASSERT_TRUE(listener) << listener.status().to_string();
    ConnectionServerOptions options;
    options.name = "test server";
    options.max_connections = limit;
    options.serve = std::move(serve);
    options.refused = [this](int, const std::string&, uint64_t) { ++refused_; };
    auto server = ConnectionServer::start(std::move(listener->fd), std::move(options));
    ASSERT_TRUE(server) << server.status().to_string();
    server_ = std::move(*server);
    socket_file_ = std::move(listener->socket_file);  // else the socket goes with `listener`
  }

  UniqueFd Connect() {
    auto fd = connect_socket(address_, 5000ms);
    EXPECT_TRUE(fd) << fd.status().to_string();
    return fd ? std::move(*fd) : UniqueFd();
  }

  // True once the server has closed `fd` (end of stream).
  static bool ClosedByServer(int fd) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) return false;
    char byte;
    return ::read(fd, &byte, 1) == 0;
  }

  template <typename Predicate>
  static bool Eventually(Predicate done) {
    for (int i = 0; i < 500 && !done(); ++i) std::this_thread::sleep_for(10ms);
    return done();
  }

  testing::TempDir dir_;
  SocketAddress address_;
  SocketFile socket_file_;
  std::atomic<int> refused_{0};
  std::unique_ptr<ConnectionServer> server_;
};

TEST_F(ConnectionServerTest, EachConnectionIsServedWithItsOwnIdAndClosedAfter) {
  std::atomic<uint64_t> ids{0};
  Start(4, [&](const Connection& c) {
    ids += c.id;
    const char byte = 'x';
    ASSERT_EQ(::send(c.fd, &byte, 1, MSG_NOSIGNAL), 1);
  });
  for (int i = 0; i < 3; ++i) {
    UniqueFd client = Connect();
    pollfd p{client.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1);
    char byte = 0;
    ASSERT_EQ(::read(client.get(), &byte, 1), 1);
    EXPECT_EQ(byte, 'x');
    EXPECT_TRUE(ClosedByServer(client.get()));
  }
  EXPECT_TRUE(Eventually([&] { return server_->active() == 0; }));
  EXPECT_EQ(server_->accepted(), 3u);
  EXPECT_EQ(ids.load(), 1u + 2u + 3u);
}

TEST_F(ConnectionServerTest, ConnectionsBeyondTheLimitAreRefusedAndClosed) {
  // Established handlers that wait until the server stops (an unproven one
  // would give way instead: connection_server_eviction_test.cc).
  std::atomic<int> established{0};
  Start(2, [&](const Connection& c) {
    c.mark_established();
    ++established;
    pollfd p{c.stop_fd, POLLIN, 0};
    ::poll(&p, 1, -1);
  });
  UniqueFd first = Connect(), second = Connect();
  ASSERT_TRUE(Eventually([&] { return established.load() == 2; }));
  UniqueFd third = Connect();
  EXPECT_TRUE(ClosedByServer(third.get()));
  EXPECT_EQ(refused_.load(), 1);
  EXPECT_EQ(server_->accepted(), 2u);
  EXPECT_EQ(server_->active(), 2u);
}

TEST_F(ConnectionServerTest, StopEndsHandlersBlockedOnTheirClientAndIsIdempotent) {
  std::atomic<int> ended{0};
  Start(8, [&](const Connection& c) {
    char byte;
    // Blocks until the client writes (it never does) or the socket is shut down.
    [[maybe_unused]] ssize_t n = ::read(c.fd, &byte, 1);
    ++ended;
  });
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(Connect());
  ASSERT_TRUE(Eventually([&] { return server_->active() == 3; }));
  const auto asked = std::chrono::steady_clock::now();
  server_->stop();
  // The clients are still connected: only the server's shutdown ended the
  // handlers, long before any client would have given up.
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 5s);
  EXPECT_EQ(ended.load(), 3);
  EXPECT_EQ(server_->active(), 0u);
  server_->stop();
  for (UniqueFd& client : clients) EXPECT_TRUE(ClosedByServer(client.get()));
  // The listener is closed: nobody else gets in.
  EXPECT_FALSE(connect_socket(address_, 1000ms));
}

}  // namespace
}  // namespace faultline::net
