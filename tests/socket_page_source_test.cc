// SocketPageSource against a real PageServer over Unix and TCP sockets, and
// against misbehaving servers written here with raw sockets.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <functional>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "faultline/page_source.h"
#include "net/socket_address.h"
#include "net/socket_io.h"
#include "protocol/v1_wire.h"
#include "support/raw_server.h"
#include "support/served_image.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using namespace std::chrono_literals;
using testing::RawServer;
using testing::ServedImage;
using testing::TempDir;
using testing::Transport;

constexpr uint64_t kPage = ServedImage::kPageSize;

std::unique_ptr<PageSource> connect_source(const std::string& address,
                                           SocketSourceOptions options = {}) {
  auto source = connect_socket_page_source(address, options);
  EXPECT_TRUE(source) << source.status().to_string();
  return source ? std::move(*source) : nullptr;
}

bool contains(const Status& status, std::string_view text) {
  return status.message().find(text) != std::string::npos;
}

// Fetches page `page` and checks every byte and the reported kind.
void expect_page_served(PageSource& source, const ServedImage& served, uint64_t page) {
  std::vector<std::byte> buf(kPage, std::byte{0xAA});
  auto kind = source.fetch(served.page_gpa(page), buf);
  ASSERT_TRUE(kind) << "page " << page << ": " << kind.status().to_string();
  ASSERT_TRUE(std::equal(buf.begin(), buf.end(), served.expected(served.page_gpa(page)).begin()))
      << "page " << page << " differs from the file";
  EXPECT_EQ(*kind, served.is_zero_page(page) ? PageKind::kZero : PageKind::kData)
      << "page " << page;
}

class SocketPageSourceTest : public ::testing::TestWithParam<Transport> {
 protected:
  std::string listen() const { return testing::listen_address(GetParam(), dir_); }
  TempDir dir_;
};

TEST_P(SocketPageSourceTest, EveryByteOfEveryPageMatchesTheFile) {
  ServedImage served = testing::serve_image(dir_, listen(), 256, /*zero_every=*/7);
  ASSERT_TRUE(served.server);
  auto source = connect_source(served.server->address());
  ASSERT_TRUE(source);
  for (uint64_t page = 0; page < served.pages(); ++page) {
    expect_page_served(*source, served, page);
  }
  EXPECT_EQ(served.server->stats().requests, served.pages());
  EXPECT_EQ(served.server->stats().bytes, served.image.size());
}

TEST_P(SocketPageSourceTest, LargerPagesAreServedWhole) {
  ServedImage served = testing::serve_image(dir_, listen(), 64);
  ASSERT_TRUE(served.server);
  auto source = connect_source(served.server->address());
  ASSERT_TRUE(source);
  std::vector<std::byte> buf(0x10000);
  const Gpa gpa = ServedImage::kRamStart + 0x10000;
  auto kind = source->fetch(gpa, buf);
  ASSERT_TRUE(kind) << kind.status().to_string();
  auto expected = served.expected(gpa, buf.size());
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), expected.begin()));
}

TEST_P(SocketPageSourceTest, RangesOfAnyWholeNumberOfPagesArriveAsPipelinedRequests) {
  ServedImage served_ = testing::serve_image(dir_, listen(), 1024);
  ASSERT_TRUE(served_.server);
  auto source = connect_source(served_.server->address());
  ASSERT_TRUE(source);
  // Three pages from an odd page, and 3 MiB (more than one request can carry).
  for (auto [first_page, pages] : {std::pair<uint64_t, uint64_t>{5, 3}, {0, 768}, {17, 700}}) {
    std::vector<std::byte> buf(pages * kPage);
    auto kind = source->fetch(served_.page_gpa(first_page), buf);
    ASSERT_TRUE(kind) << kind.status().to_string();
    auto expected = served_.expected(served_.page_gpa(first_page), pages * kPage);
    EXPECT_TRUE(std::equal(buf.begin(), buf.end(), expected.begin(), expected.end()))
        << first_page << "+" << pages;
  }
  std::vector<std::byte> partial(kPage + 100);
  EXPECT_EQ(source->fetch(served_.page_gpa(0), partial).status().code(),
            ErrorCode::kInvalidArgument);
}

TEST_P(SocketPageSourceTest, EightThreadsFetchingRandomPagesGetExactBytes) {
  ServedImage served = testing::serve_image(dir_, listen(), 512, /*zero_every=*/3);
  ASSERT_TRUE(served.server);
  auto source = connect_source(served.server->address());
  ASSERT_TRUE(source);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 random(t);
      std::uniform_int_distribution<uint64_t> pick(0, served.pages() - 1);
      for (int i = 0; i < 300; ++i) expect_page_served(*source, served, pick(random));
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(served.server->stats().requests, 8u * 300u);
  EXPECT_LE(served.server->stats().connections, 8u);
}

TEST_P(SocketPageSourceTest, PageOutsideTheFileFailsClearlyWhileOthersAreServed) {
  ServedImage served = testing::serve_image(dir_, listen(), 16);
  ASSERT_TRUE(served.server);
  auto source = connect_source(served.server->address());
  ASSERT_TRUE(source);
  expect_page_served(*source, served, 1);  // leaves an idle connection in the pool

  std::vector<std::byte> buf(kPage);
  for (Gpa gpa : {served.page_gpa(served.pages()), ServedImage::kRamStart - kPage}) {
    auto kind = source->fetch(gpa, buf);
    ASSERT_FALSE(kind) << "address " << gpa << " outside the file was served";
    EXPECT_TRUE(contains(kind.status(), served.server->address())) << kind.status().to_string();
    EXPECT_TRUE(contains(kind.status(), "cannot serve")) << kind.status().to_string();
  }
  EXPECT_EQ(served.server->stats().bad_requests, 2u);
  expect_page_served(*source, served, 2);
}

TEST_P(SocketPageSourceTest, ReconnectsAfterTheServerRestartsOnTheSameAddress) {
  ServedImage first = testing::serve_image(dir_, listen(), 8, 0, /*seed=*/1);
  ASSERT_TRUE(first.server);
  const std::string address = first.server->address();
  auto source = connect_source(address);
  ASSERT_TRUE(source);
  expect_page_served(*source, first, 3);
  first.server.reset();

  TempDir second_dir;
  ServedImage second = testing::serve_image(second_dir, address, 8, 0, /*seed=*/2);
  ASSERT_TRUE(second.server);
  // The pooled connection died with the old server. The source may report that
  // once (retryably, the Pager retries); it must then reach the new server.
  std::vector<std::byte> buf(kPage);
  auto kind = source->fetch(second.page_gpa(3), buf);
  if (!kind) {
    EXPECT_TRUE(kind.status().is_retryable()) << kind.status().to_string();
  }
  expect_page_served(*source, second, 3);
}

TEST_P(SocketPageSourceTest, NoServerIsUnavailable) {
  std::string address = "unix:" + dir_.file("nobody.sock");
  net::Listener unlistened;  // holds a TCP port nobody accepts on
  if (GetParam() == Transport::kTcp) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(sa);
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
    ASSERT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &length), 0);
    address = "tcp:127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
    unlistened.fd = std::move(fd);
  }
  auto source = connect_source(address);
  ASSERT_TRUE(source);
  std::vector<std::byte> buf(kPage);
  auto kind = source->fetch(0, buf);
  ASSERT_FALSE(kind);
  EXPECT_EQ(kind.status().code(), ErrorCode::kUnavailable) << kind.status().to_string();
  EXPECT_TRUE(contains(kind.status(), address)) << kind.status().to_string();
}

INSTANTIATE_TEST_SUITE_P(Transports, SocketPageSourceTest,
                         ::testing::Values(Transport::kUnix, Transport::kTcp),
                         [](const auto& info) { return testing::transport_name(info.param); });

TEST(SocketPageSourceApiTest, DescribesItselfByTheServerAddress) {
  auto source = connect_source("unix:/run/faultline/pages.sock");
  ASSERT_TRUE(source);
  EXPECT_EQ(source->describe(), "page server unix:/run/faultline/pages.sock");
}

TEST(SocketPageSourceApiTest, MalformedAddressIsAnInvalidArgument) {
  auto source = connect_socket_page_source("pages.sock");
  ASSERT_FALSE(source);
  EXPECT_EQ(source.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(source.status(), "missing scheme")) << source.status().message();
}

TEST(SocketPageSourceApiTest, PageSizeTheWireCannotCarryIsRejectedBeforeSending) {
  auto source = connect_source("unix:/nonexistent/pages.sock");
  ASSERT_TRUE(source);
  std::vector<std::byte> buf(3000);
  auto kind = source->fetch(0, buf);
  ASSERT_FALSE(kind);
  EXPECT_EQ(kind.status().code(), ErrorCode::kInvalidArgument) << kind.status().to_string();
}

v1::PageRequest read_request(int fd) {
  v1::RequestBytes bytes;
  EXPECT_TRUE(net::read_full(fd, bytes, net::deadline_after(10s)));
  auto request = v1::decode_page_request(bytes);
  EXPECT_TRUE(request) << request.status().to_string();
  return request ? *request : v1::PageRequest{};
}

void send_bytes(int fd, std::span<const std::byte> bytes) {
  Status status = net::write_full(fd, bytes, net::deadline_after(10s));
  EXPECT_TRUE(status) << status.to_string();
}

// Blocks until the client hangs up.
void wait_for_hang_up(int fd) {
  std::byte extra[1];
  (void)net::read_full(fd, extra, net::kNoDeadline);
}

// For replies a client rightly hangs up on part way through reading them.
void send_unless_client_left(int fd, std::span<const std::byte> bytes) {
  (void)net::write_full(fd, bytes, net::deadline_after(10s));
  wait_for_hang_up(fd);
}

class MisbehavingServerTest : public ::testing::TestWithParam<Transport> {
 protected:
  // Fetches one page from a RawServer behaving as `behave`.
  Status fetch_from(RawServer::Behaviour behave, SocketSourceOptions options = {}) {
    RawServer server(testing::listen_address(GetParam(), dir_), std::move(behave));
    address_ = server.address();
    auto source = connect_source(address_, options);
    if (!source) return Status(ErrorCode::kInvalidArgument, "no source");
    std::vector<std::byte> buf(kPage);
    auto kind = source->fetch(0x5000, buf);
    EXPECT_FALSE(kind) << "a misbehaving server's reply was accepted";
    return kind.status();
  }

  TempDir dir_;
  std::string address_;
};

TEST_P(MisbehavingServerTest, WrongEchoIsAProtocolError) {
  Status status = fetch_from([](int fd) {
    v1::PageRequest request = read_request(fd);
    std::vector<std::byte> reply(v1::kReplyHeaderSize + kPage, std::byte{1});
    const auto header = v1::encode_reply_header({request.gpa + kPage, request.page_size});
    std::copy(header.begin(), header.end(), reply.begin());
    send_unless_client_left(fd, reply);
  });
  EXPECT_EQ(status.code(), ErrorCode::kProtocol) << status.to_string();
  EXPECT_TRUE(contains(status, address_)) << status.to_string();
  EXPECT_TRUE(contains(status, "echoes address 0x6000")) << status.to_string();
}

TEST_P(MisbehavingServerTest, ShortReplyThenHangUpIsUnavailable) {
  Status status = fetch_from([](int fd) {
    v1::PageRequest request = read_request(fd);
    send_bytes(fd, v1::encode_reply_header(request));
    send_bytes(fd, std::vector<std::byte>(kPage / 2, std::byte{1}));
  });
  EXPECT_EQ(status.code(), ErrorCode::kUnavailable) << status.to_string();
  EXPECT_TRUE(contains(status, address_)) << status.to_string();
  EXPECT_TRUE(contains(status, "2048 of 4096 bytes")) << status.to_string();
}

TEST_P(MisbehavingServerTest, NoReplyWithinIoTimeoutIsATimeout) {
  SocketSourceOptions options;
  options.io_timeout = 200ms;
  Status status = fetch_from(
      [](int fd) {
        read_request(fd);
        wait_for_hang_up(fd);  // the client gives up and closes the connection
      },
      options);
  EXPECT_EQ(status.code(), ErrorCode::kTimeout) << status.to_string();
  EXPECT_TRUE(contains(status, address_)) << status.to_string();
  EXPECT_TRUE(contains(status, "200 ms")) << status.to_string();
}

TEST_P(MisbehavingServerTest, GarbageReplyIsAProtocolError) {
  Status status = fetch_from([](int fd) {
    read_request(fd);
    std::vector<std::byte> garbage(v1::kReplyHeaderSize + kPage);
    std::mt19937 random(7);
    for (auto& b : garbage) b = static_cast<std::byte>(random());
    send_unless_client_left(fd, garbage);
  });
  EXPECT_EQ(status.code(), ErrorCode::kProtocol) << status.to_string();
  EXPECT_TRUE(contains(status, address_)) << status.to_string();
}

TEST_P(MisbehavingServerTest, HangUpWithoutReplyIsUnavailable) {
  Status status = fetch_from([](int fd) { read_request(fd); });
  EXPECT_EQ(status.code(), ErrorCode::kUnavailable) << status.to_string();
  EXPECT_TRUE(contains(status, "0 of 16 bytes")) << status.to_string();
}

INSTANTIATE_TEST_SUITE_P(Transports, MisbehavingServerTest,
                         ::testing::Values(Transport::kUnix, Transport::kTcp),
                         [](const auto& info) { return testing::transport_name(info.param); });

}  // namespace
}  // namespace faultline
