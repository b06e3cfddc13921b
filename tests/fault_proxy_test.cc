// FaultProxy between a client and an echo server, over Unix and TCP sockets:
// every fault does what it promises, and nothing more.
#include "support/fault_proxy.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "net/socket_address.h"
#include "net/socket_io.h"
#include "support/raw_server.h"
#include "support/served_image.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using namespace std::chrono_literals;
using testing::Direction;
using testing::FaultProxy;
using testing::RawServer;
using testing::TempDir;
using testing::Transport;

constexpr auto kPatience = 10s;
constexpr size_t kChunk = 64 * 1024;

std::vector<std::byte> test_bytes(size_t size) {
  return testing::make_test_image(size);
}

// One recv of what has arrived: the byte count, 0 at end-of-stream, -1 with
// errno set on an error, ETIMEDOUT once the deadline passes.
ssize_t receive_some(int fd, std::span<std::byte> buf, net::Deadline deadline) {
  for (;;) {
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n >= 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) return n;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - net::Clock::now());
    pollfd pfd{fd, POLLIN, 0};
    if (left <= 0ms || ::poll(&pfd, 1, static_cast<int>(left.count())) == 0) {
      errno = ETIMEDOUT;
      return -1;
    }
  }
}

struct Received {
  std::vector<std::byte> bytes;
  bool end_of_stream = false;  // false: the connection was reset
};

// Everything `fd` receives until the connection ends.
Received receive_all(int fd) {
  const net::Deadline deadline = net::deadline_after(kPatience);
  Received received;
  std::vector<std::byte> buf(kChunk);
  ssize_t n;
  while ((n = receive_some(fd, buf, deadline)) > 0) {
    received.bytes.insert(received.bytes.end(), buf.begin(), buf.begin() + n);
  }
  if (n < 0 && errno == ETIMEDOUT) ADD_FAILURE() << "the connection did not end";
  received.end_of_stream = n == 0;
  return received;
}

// Echoes each connection's bytes and records them, one connection at a time.
class EchoServer {
 public:
  explicit EchoServer(const std::string& listen) : server_(listen, [this](int fd) { serve(fd); }) {}

  std::string address() const { return server_.address(); }

  // What the next connection to end sent the server, once it has ended.
  std::vector<std::byte> next_ended_connection() {
    std::unique_lock lock(mu_);
    if (!ended_cv_.wait_for(lock, kPatience, [this] { return !ended_.empty(); })) {
      ADD_FAILURE() << "no connection to the server ended";
      return {};
    }
    std::vector<std::byte> received = std::move(ended_.front());
    ended_.pop_front();
    return received;
  }

 private:
  void serve(int fd) {
    std::vector<std::byte> received;
    std::vector<std::byte> buf(kChunk);
    bool echoing = true;  // until the other side stops reading; then only records
    ssize_t n;
    while ((n = receive_some(fd, buf, net::deadline_after(kPatience))) > 0) {
      received.insert(received.end(), buf.begin(), buf.begin() + n);
      if (echoing) {
        echoing =
            net::write_full(fd, std::span(buf).first(n), net::deadline_after(kPatience)).is_ok();
      }
    }
    std::lock_guard lock(mu_);
    ended_.push_back(std::move(received));
    ended_cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable ended_cv_;
  std::deque<std::vector<std::byte>> ended_;  // guarded by mu_
  RawServer server_;                          // last: stops before the rest goes
};

UniqueFd connect_to(const std::string& address) {
  auto fd = net::connect_socket(*net::parse_socket_address(address), 5s);
  EXPECT_TRUE(fd) << fd.status().to_string();
  return fd ? std::move(*fd) : UniqueFd();
}

// Sends `bytes` on a new connection, then ends the sending side, while
// receiving until the connection ends.
Received exchange(const std::string& address, std::span<const std::byte> bytes) {
  UniqueFd fd = connect_to(address);
  if (!fd) return {};
  std::thread sender([&] {
    if (net::write_full(fd.get(), bytes, net::deadline_after(kPatience))) {
      ::shutdown(fd.get(), SHUT_WR);
    }
  });
  Received received = receive_all(fd.get());
  sender.join();
  return received;
}

std::vector<std::byte> prefix(std::span<const std::byte> bytes, size_t size) {
  return {bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(size)};
}

// Offsets where the two differ, over the length of the shorter.
std::vector<size_t> differences(std::span<const std::byte> a, std::span<const std::byte> b) {
  std::vector<size_t> offsets;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (a[i] != b[i]) offsets.push_back(i);
  }
  return offsets;
}

class FaultProxyTest : public ::testing::TestWithParam<Transport> {
 protected:
  FaultProxyTest() : server_(address_for("server.sock")) {
    auto proxy = FaultProxy::start(address_for("proxy.sock"), server_.address());
    EXPECT_TRUE(proxy) << proxy.status().to_string();
    if (proxy) proxy_ = std::move(*proxy);
  }

  std::string address_for(const std::string& socket_name) const {
    return GetParam() == Transport::kUnix ? "unix:" + dir_.file(socket_name) : "tcp:127.0.0.1:0";
  }

  std::string address_nobody_listens_on() const {
    if (GetParam() == Transport::kUnix) return "unix:" + dir_.file("nobody.sock");
    auto listener = net::listen_socket(*net::parse_socket_address("tcp:127.0.0.1:0"));
    EXPECT_TRUE(listener) << listener.status().to_string();
    return listener ? listener->address.to_string() : "tcp:127.0.0.1:1";  // closed as it goes
  }

  TempDir dir_;
  EchoServer server_;
  std::unique_ptr<FaultProxy> proxy_;
};

TEST_P(FaultProxyTest, ForwardsEveryByteBothWaysWhenNoFaultIsSet) {
  ASSERT_TRUE(proxy_);
  const auto sent = test_bytes(8 << 20);
  const Received received = exchange(proxy_->address(), sent);
  EXPECT_TRUE(received.bytes == sent)
      << received.bytes.size() << " of " << sent.size() << " bytes came back";
  EXPECT_TRUE(received.end_of_stream);
  EXPECT_TRUE(server_.next_ended_connection() == sent);
  const FaultProxy::Counters counters = proxy_->counters();
  EXPECT_EQ(counters.connections, 1u);
  EXPECT_EQ(counters.bytes_to_server, sent.size());
  EXPECT_EQ(counters.bytes_to_client, sent.size());
  EXPECT_EQ(counters.cuts, 0u);
  EXPECT_EQ(counters.corrupted_bytes, 0u);
}

TEST_P(FaultProxyTest, CutAfterToClientDeliversExactlyThatManyBytesThenEndOfStream) {
  ASSERT_TRUE(proxy_);
  proxy_->cut_after(Direction::kToClient, 100'000);
  const auto sent = test_bytes(1 << 20);
  const Received received = exchange(proxy_->address(), sent);
  EXPECT_EQ(received.bytes.size(), 100'000u);
  EXPECT_TRUE(received.bytes == prefix(sent, received.bytes.size()));
  EXPECT_TRUE(received.end_of_stream);
  EXPECT_EQ(proxy_->counters().cuts, 1u);
  EXPECT_EQ(proxy_->counters().bytes_to_client, 100'000u);
}

TEST_P(FaultProxyTest, CutAfterToServerDeliversExactlyThatManyBytesThenEndOfStream) {
  ASSERT_TRUE(proxy_);
  proxy_->cut_after(Direction::kToServer, 12'345);
  const auto sent = test_bytes(1 << 20);
  const Received echoed = exchange(proxy_->address(), sent);
  const auto received = server_.next_ended_connection();
  EXPECT_EQ(received.size(), 12'345u);
  EXPECT_TRUE(received == prefix(sent, received.size()));
  EXPECT_LE(echoed.bytes.size(), 12'345u);
  EXPECT_EQ(proxy_->counters().cuts, 1u);
  EXPECT_EQ(proxy_->counters().bytes_to_server, 12'345u);
}

TEST_P(FaultProxyTest, CutAfterForOneConnectionLetsTheNextThrough) {
  ASSERT_TRUE(proxy_);
  proxy_->cut_after(Direction::kToClient, 1000, /*connections=*/1);
  const auto sent = test_bytes(256 << 10);
  const Received first = exchange(proxy_->address(), sent);
  const Received second = exchange(proxy_->address(), sent);
  EXPECT_EQ(first.bytes.size(), 1000u);
  EXPECT_TRUE(second.bytes == sent)
      << second.bytes.size() << " of " << sent.size() << " bytes came back";
  EXPECT_EQ(proxy_->counters().connections, 2u);
  EXPECT_EQ(proxy_->counters().cuts, 1u);
}

TEST_P(FaultProxyTest, CorruptAtFlipsExactlyTheBytesAtThoseOffsets) {
  ASSERT_TRUE(proxy_);
  proxy_->corrupt_at(Direction::kToClient, 5000, std::byte{0x5a});
  proxy_->corrupt_at(Direction::kToClient, 200'000, std::byte{0x01});
  const auto sent = test_bytes(256 << 10);
  const Received received = exchange(proxy_->address(), sent);
  ASSERT_EQ(received.bytes.size(), sent.size());
  EXPECT_EQ(differences(received.bytes, sent), (std::vector<size_t>{5000, 200'000}));
  EXPECT_EQ(received.bytes[5000], sent[5000] ^ std::byte{0x5a});
  EXPECT_EQ(received.bytes[200'000], sent[200'000] ^ std::byte{0x01});
  EXPECT_TRUE(server_.next_ended_connection() == sent) << "the other direction is intact";
  EXPECT_EQ(proxy_->counters().corrupted_bytes, 2u);
}

TEST_P(FaultProxyTest, CorruptAtForOneConnectionLeavesTheNextIntact) {
  ASSERT_TRUE(proxy_);
  proxy_->corrupt_at(Direction::kToServer, 10, std::byte{0xff}, /*connections=*/1);
  const auto sent = test_bytes(4096);
  const Received first = exchange(proxy_->address(), sent);
  const Received second = exchange(proxy_->address(), sent);
  EXPECT_EQ(differences(first.bytes, sent), std::vector<size_t>{10});
  EXPECT_TRUE(second.bytes == sent);
}

TEST_P(FaultProxyTest, CorruptRandomlyAtProbabilityOneFlipsOneByteInEveryKib) {
  ASSERT_TRUE(proxy_);
  proxy_->corrupt_randomly(Direction::kToClient, 1.0, /*seed=*/7);
  const auto sent = test_bytes(256 << 10);
  const Received received = exchange(proxy_->address(), sent);
  ASSERT_EQ(received.bytes.size(), sent.size());
  const std::vector<size_t> flipped = differences(received.bytes, sent);
  ASSERT_EQ(flipped.size(), 256u);
  for (size_t kib = 0; kib < flipped.size(); ++kib) EXPECT_EQ(flipped[kib] / 1024, kib);
  EXPECT_EQ(proxy_->counters().corrupted_bytes, 256u);
}

TEST_P(FaultProxyTest, CorruptRandomlyFlipsTheSameBytesForTheSameSeed) {
  ASSERT_TRUE(proxy_);
  auto other = FaultProxy::start(address_for("other-proxy.sock"), server_.address());
  ASSERT_TRUE(other) << other.status().to_string();
  proxy_->corrupt_randomly(Direction::kToServer, 0.1, /*seed=*/42);
  (*other)->corrupt_randomly(Direction::kToServer, 0.1, /*seed=*/42);
  const auto sent = test_bytes(512 << 10);
  const Received received = exchange(proxy_->address(), sent);
  const Received received_again = exchange((*other)->address(), sent);
  ASSERT_EQ(received.bytes.size(), sent.size());
  const std::vector<size_t> flipped = differences(received.bytes, sent);
  EXPECT_FALSE(flipped.empty());
  EXPECT_EQ(flipped.size(), proxy_->counters().corrupted_bytes);
  EXPECT_TRUE(received.bytes == received_again.bytes);
}

TEST_P(FaultProxyTest, DelayHoldsEachChunkAtLeastThatLong) {
  ASSERT_TRUE(proxy_);
  proxy_->set_delay(Direction::kToServer, 150ms);
  proxy_->set_delay(Direction::kToClient, 100ms);
  const auto sent = test_bytes(16);
  const auto start = std::chrono::steady_clock::now();
  const Received received = exchange(proxy_->address(), sent);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(received.bytes == sent);
  EXPECT_GE(elapsed, 250ms);
}

TEST_P(FaultProxyTest, RefusedConnectionsEndAtOnceAndNeverReachTheServer) {
  ASSERT_TRUE(proxy_);
  proxy_->refuse_connections(true);
  EXPECT_TRUE(exchange(proxy_->address(), test_bytes(16)).bytes.empty());
  EXPECT_EQ(proxy_->counters().refused, 1u);
  EXPECT_EQ(proxy_->counters().connections, 0u);
}

TEST_P(FaultProxyTest, ConnectionsPassAgainOnceNoLongerRefused) {
  ASSERT_TRUE(proxy_);
  proxy_->refuse_connections(true);
  EXPECT_TRUE(exchange(proxy_->address(), test_bytes(16)).bytes.empty());
  proxy_->refuse_connections(false);
  const auto sent = test_bytes(4096);
  EXPECT_TRUE(exchange(proxy_->address(), sent).bytes == sent);
  EXPECT_EQ(proxy_->counters().connections, 1u);
}

TEST_P(FaultProxyTest, CutAllEndsTheConnectionForClientAndServer) {
  ASSERT_TRUE(proxy_);
  UniqueFd client = connect_to(proxy_->address());
  ASSERT_TRUE(client);
  const auto hello = test_bytes(5);
  ASSERT_TRUE(net::write_full(client.get(), hello, net::deadline_after(kPatience)));
  std::vector<std::byte> echoed(hello.size());
  ASSERT_TRUE(net::read_full(client.get(), echoed, net::deadline_after(kPatience)));

  proxy_->cut_all();

  const Received after_cut = receive_all(client.get());
  EXPECT_TRUE(after_cut.bytes.empty());
  EXPECT_TRUE(after_cut.end_of_stream) << "the client reads end-of-stream";
  EXPECT_TRUE(server_.next_ended_connection() == hello) << "the server's connection ends";
  EXPECT_EQ(proxy_->counters().cuts, 1u);
}

TEST_P(FaultProxyTest, ClearFaultsLetsEveryByteThrough) {
  ASSERT_TRUE(proxy_);
  proxy_->cut_after(Direction::kToClient, 100);
  proxy_->corrupt_at(Direction::kToServer, 10);
  proxy_->corrupt_randomly(Direction::kToClient, 1.0, /*seed=*/1);
  proxy_->set_delay(Direction::kToServer, 10s);
  proxy_->clear_faults();
  const auto sent = test_bytes(256 << 10);
  EXPECT_TRUE(exchange(proxy_->address(), sent).bytes == sent);
  EXPECT_EQ(proxy_->counters().corrupted_bytes, 0u);
}

TEST_P(FaultProxyTest, ATargetThatIsDownEndsTheClientsConnection) {
  auto proxy = FaultProxy::start(address_for("lonely-proxy.sock"), address_nobody_listens_on());
  ASSERT_TRUE(proxy) << proxy.status().to_string();
  EXPECT_TRUE(exchange((*proxy)->address(), test_bytes(16)).bytes.empty());
  EXPECT_EQ((*proxy)->counters().refused, 1u);
}

TEST(FaultProxyStartTest, RejectsAMalformedTarget) {
  auto proxy = FaultProxy::start("tcp:127.0.0.1:0", "nowhere");
  ASSERT_FALSE(proxy);
  EXPECT_EQ(proxy.status().code(), ErrorCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Transports, FaultProxyTest,
                         ::testing::Values(Transport::kUnix, Transport::kTcp),
                         [](const auto& info) { return testing::transport_name(info.param); });

}  // namespace
}  // namespace faultline
