// PageServer with real clients over real sockets, and `faultline serve-pages`
// driven as a subprocess.
#include "faultline/page_server.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "faultline/page_source.h"
#include "net/socket_address.h"
#include "net/socket_io.h"
#include "os_linux/child_process.h"
#include "protocol/v1_wire.h"
#include "support/served_image.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using namespace std::chrono_literals;
using testing::ServedImage;
using testing::TempDir;
using testing::Transport;

constexpr uint64_t kPage = ServedImage::kPageSize;
// Bounds every wait on the server so that a broken server fails the test
// instead of hanging it; never reached when things work.
constexpr auto kPatience = 20s;

// One connection speaking the wire format by hand, so tests can send requests
// a real page source would refuse to send.
class RawClient {
 public:
  explicit RawClient(const std::string& address) {
    auto fd = net::connect_socket(*net::parse_socket_address(address), 2000ms);
    EXPECT_TRUE(fd) << fd.status().to_string();
    if (fd) fd_ = std::move(*fd);
  }

  Status send_request(Gpa gpa, uint64_t page_size) {
    return net::write_full(fd_.get(), v1::encode_page_request({gpa, page_size}),
                           net::deadline_after(kPatience));
  }

  // Fetches a page and checks it against the image, header and every byte.
  void expect_page(const ServedImage& served, uint64_t page) {
    const Gpa gpa = served.page_gpa(page);
    ASSERT_TRUE(send_request(gpa, kPage));
    v1::ReplyHeaderBytes header;
    std::vector<std::byte> payload(kPage);
    const auto deadline = net::deadline_after(kPatience);
    ASSERT_TRUE(net::read_full(fd_.get(), header, deadline));
    ASSERT_TRUE(v1::check_reply_header(header, {gpa, kPage}));
    ASSERT_TRUE(net::read_full(fd_.get(), payload, deadline));
    auto expected = served.expected(gpa);
    ASSERT_TRUE(std::equal(payload.begin(), payload.end(), expected.begin()))
        << "page " << page << " differs from the file";
  }

  // True once the server has closed this connection.
  bool sees_hang_up() {
    std::byte byte[1];
    Status status = net::read_full(fd_.get(), byte, net::deadline_after(kPatience));
    return status.code() == ErrorCode::kUnavailable;
  }

 private:
  UniqueFd fd_;
};

class PageServerTest : public ::testing::TestWithParam<Transport> {
 protected:
  ServedImage serve(uint64_t pages) {
    return testing::serve_image(dir_, testing::listen_address(GetParam(), dir_), pages);
  }
  TempDir dir_;
};

TEST_P(PageServerTest, SixteenClientsAtOnceAreAllServedExactBytes) {
  ServedImage served = serve(128);
  ASSERT_TRUE(served.server);
  std::vector<std::thread> clients;
  for (int c = 0; c < 16; ++c) {
    clients.emplace_back([&, c] {
      RawClient client(served.server->address());
      for (uint64_t i = 0; i < 64; ++i) client.expect_page(served, (c * 7 + i * 13) % 128);
    });
  }
  for (auto& client : clients) client.join();
  const PageServerStats stats = served.server->stats();
  EXPECT_EQ(stats.connections, 16u);
  EXPECT_EQ(stats.requests, 16u * 64u);
  EXPECT_EQ(stats.bytes, 16u * 64u * kPage);
  EXPECT_EQ(stats.bad_requests, 0u);
}

TEST_P(PageServerTest, BadRequestClosesOnlyThatConnection) {
  ServedImage served = serve(16);
  ASSERT_TRUE(served.server);
  RawClient good(served.server->address());
  good.expect_page(served, 0);

  const v1::PageRequest bad_requests[] = {
      {served.page_gpa(1) + 512, kPage},  // misaligned
      {served.page_gpa(1), 3000},         // page size the wire does not carry
      {served.page_gpa(16), kPage},       // past the end of the file
      {0, kPage},                         // below ram_start
  };
  for (const auto& request : bad_requests) {
    RawClient bad(served.server->address());
    ASSERT_TRUE(bad.send_request(request.gpa, request.page_size));
    EXPECT_TRUE(bad.sees_hang_up()) << "gpa " << request.gpa << " size " << request.page_size;
    good.expect_page(served, 3);
  }
  EXPECT_EQ(served.server->stats().bad_requests, std::size(bad_requests));
}

TEST_P(PageServerTest, StopReturnsWithIdleClientsConnectedAndHangsUpOnThem) {
  ServedImage served = serve(8);
  ASSERT_TRUE(served.server);
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int c = 0; c < 4; ++c) {
    clients.push_back(std::make_unique<RawClient>(served.server->address()));
    clients.back()->expect_page(served, c);  // accepted and now idle
  }
  EXPECT_EQ(served.server->stats().active, 4u);

  served.server->stop();

  EXPECT_EQ(served.server->stats().active, 0u);
  for (auto& client : clients) EXPECT_TRUE(client->sees_hang_up());
  served.server->stop();  // a second stop is harmless
}

TEST_P(PageServerTest, ConnectionsBeyondMaxClientsAreRefused) {
  const std::string mem_file = dir_.file("mem");
  const auto image = testing::make_test_image(8 * kPage);
  testing::write_file(mem_file, image);
  PageServerOptions options;
  options.listen = testing::listen_address(GetParam(), dir_);
  options.mem_file = mem_file;
  options.ram_start = ServedImage::kRamStart;
  options.max_clients = 2;
  options.allow_plain_tcp = true;
  auto server = PageServer::start(options);
  ASSERT_TRUE(server) << server.status().to_string();
  ServedImage served{image, mem_file, std::move(*server)};

  RawClient first(served.server->address());
  RawClient second(served.server->address());
  first.expect_page(served, 1);
  second.expect_page(served, 2);
  RawClient third(served.server->address());
  EXPECT_TRUE(third.sees_hang_up());
  first.expect_page(served, 3);
  EXPECT_EQ(served.server->stats().connections, 2u);
}

INSTANTIATE_TEST_SUITE_P(Transports, PageServerTest,
                         ::testing::Values(Transport::kUnix, Transport::kTcp),
                         [](const auto& info) { return testing::transport_name(info.param); });

TEST(PageServerUnixTest, SocketIsPrivateAndRemovedAtStop) {
  TempDir dir;
  ServedImage served = testing::serve_image(dir, "unix:" + dir.file("pages.sock"), 4);
  ASSERT_TRUE(served.server);
  struct stat st {};
  ASSERT_EQ(::stat(dir.file("pages.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600);

  served.server->stop();
  EXPECT_NE(::stat(dir.file("pages.sock").c_str(), &st), 0) << "socket file left behind";
}

TEST(PageServerTcpTest, PortZeroReportsTheRealPort) {
  TempDir dir;
  ServedImage served = testing::serve_image(dir, "tcp:127.0.0.1:0", 4);
  ASSERT_TRUE(served.server);
  auto address = net::parse_socket_address(served.server->address());
  ASSERT_TRUE(address) << address.status().to_string();
  EXPECT_NE(address->port, 0);
  RawClient(served.server->address()).expect_page(served, 1);
}

TEST(PageServerStartTest, FailsClearlyOnAMissingFileOrABadAddress) {
  TempDir dir;
  auto missing = PageServer::start({"unix:" + dir.file("s.sock"), dir.file("nope"), 0});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.status().message().find(dir.file("nope")), std::string::npos)
      << missing.status().message();

  testing::write_file(dir.file("mem"), testing::make_test_image(kPage));
  auto bad_address = PageServer::start({"pages.sock", dir.file("mem"), 0});
  ASSERT_FALSE(bad_address);
  EXPECT_EQ(bad_address.status().code(), ErrorCode::kInvalidArgument);
}

// `faultline serve-pages` as a child process with its stderr on a pipe.
class ServePagesProcess {
 public:
  explicit ServePagesProcess(std::vector<std::string> args) {
    args.insert(args.begin(), {FAULTLINE_CLI, "serve-pages"});
    auto child = ChildProcess::spawn(args, {.stderr_pipe = true});
    EXPECT_TRUE(child.is_ok()) << child.status().to_string();
    if (child.is_ok()) child_ = std::move(child).value();
  }

  ~ServePagesProcess() {
    if (child_.running()) {
      child_.signal(SIGKILL);
      wait();
    }
  }

  // Reads stderr until it contains `text` or ends; true if it was seen.
  bool wait_for_output(std::string_view text) {
    const auto deadline = net::deadline_after(kPatience);
    while (output_.find(text) == std::string::npos) {
      pollfd pfd{child_.stderr_fd(), POLLIN, 0};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) return false;
      char chunk[4096];
      ssize_t n = ::read(child_.stderr_fd(), chunk, sizeof(chunk));
      if (n <= 0) return false;
      output_.append(chunk, static_cast<size_t>(n));
    }
    return true;
  }

  // The exit status once the process has ended, all of its stderr read.
  int wait() {
    wait_for_output(std::string_view("\0", 1));  // reads to the end
    EXPECT_TRUE(child_.running());
    const ExitStatus status = child_.wait();
    // In a sanitizer build, a report from the child fails the test even where
    // the test expects a non-zero exit.
    EXPECT_EQ(output_.find("Sanitizer"), std::string::npos) << output_;
    EXPECT_EQ(output_.find("runtime error:"), std::string::npos) << output_;
    return status.code();
  }

  void signal(int signo) { child_.signal(signo); }
  const std::string& output() const { return output_; }

 private:
  ChildProcess child_;
  std::string output_;
};

TEST(ServePagesCliTest, ServesPagesOverAUnixSocketAndExitsZeroOnSigterm) {
  TempDir dir;
  const auto image = testing::make_test_image(16 * kPage, kPage, 4);
  testing::write_file(dir.file("mem"), image);
  const std::string address = "unix:" + dir.file("pages.sock");
  ServePagesProcess process(
      {"--listen", address, "--mem-file", dir.file("mem"), "--ram-start", "0x100000"});
  ASSERT_TRUE(process.wait_for_output("serving pages")) << process.output();
  EXPECT_NE(process.output().find(address), std::string::npos) << process.output();

  auto source = connect_socket_page_source(address);
  ASSERT_TRUE(source) << source.status().to_string();
  std::vector<std::byte> page(kPage);
  for (uint64_t p : {0, 3, 5}) {
    auto kind = (*source)->fetch(0x100000 + p * kPage, page);
    ASSERT_TRUE(kind) << kind.status().to_string();
    EXPECT_TRUE(std::equal(page.begin(), page.end(), image.begin() + p * kPage)) << "page " << p;
    EXPECT_EQ(*kind, p == 3 ? PageKind::kZero : PageKind::kData) << "page " << p;
  }

  process.signal(SIGTERM);
  EXPECT_EQ(process.wait(), 0) << process.output();
  EXPECT_NE(process.output().find("served 3 pages"), std::string::npos) << process.output();
}

TEST(ServePagesCliTest, WarnsThatANonLoopbackTcpAddressIsPlaintext) {
  TempDir dir;
  testing::write_file(dir.file("mem"), testing::make_test_image(kPage));
  ServePagesProcess process({"--listen", "tcp:0.0.0.0:0", "--mem-file", dir.file("mem"),
                             "--ram-start", "0", "--plain-tcp"});
  ASSERT_TRUE(process.wait_for_output("plaintext")) << process.output();
  EXPECT_EQ(process.output().find("tcp:0.0.0.0:0 "), std::string::npos)
      << "the real port is not logged: " << process.output();
  process.signal(SIGINT);
  EXPECT_EQ(process.wait(), 0) << process.output();
}

TEST(ServePagesCliTest, BadArgumentsExitNonZeroNamingTheProblem) {
  TempDir dir;
  testing::write_file(dir.file("mem"), testing::make_test_image(kPage));
  const std::string sock = "unix:" + dir.file("s.sock");
  const std::string mem = dir.file("mem");
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"--listen", "pages.sock", "--mem-file", mem, "--ram-start", "0"}, "missing scheme"},
      {{"--listen", "tcp:localhost:70000", "--mem-file", mem, "--ram-start", "0"}, "65535"},
      {{"--listen", "tcp:127.0.0.1:0", "--mem-file", mem, "--ram-start", "0"},
       "refusing plain TCP"},
      // The library names its option fields; the user reads the flags.
      {{"--listen", "tcp:127.0.0.1:0", "--mem-file", mem, "--ram-start", "0"},
       "(--tls-cert and --tls-key) or allow plain TCP explicitly (--plain-tcp)"},
      {{"--listen", sock, "--mem-file", dir.file("nope"), "--ram-start", "0"}, dir.file("nope")},
      {{"--listen", sock, "--mem-file", mem, "--ram-start", "0xfoo"}, "--ram-start"},
      {{"--listen", sock, "--ram-start", "0"}, "--mem-file"},
      {{"--listen", sock, "--mem-file", mem, "--ram-start", "0", "--compression", "gzip"},
       "--compression"},
  };
  for (const auto& [args, problem] : cases) {
    ServePagesProcess process(args);
    EXPECT_NE(process.wait(), 0) << process.output();
    EXPECT_NE(process.output().find(problem), std::string::npos)
        << "expected \"" << problem << "\" in: " << process.output();
  }
}

}  // namespace
}  // namespace faultline
