// The socket page source reading a peer's reply: a fake page server answers
// the source's request for one 4 KiB page with the fuzz input, byte for byte
// (and hangs up if that is shorter than a whole reply, so that the source does
// not wait for its io_timeout). The fetch succeeds exactly when the input
// echoes the request and carries the whole page, and then the page holds the
// input's bytes;
// otherwise it fails with a message and a code that says the peer is at fault.
// Whatever the reply was, it leaves nothing behind: the next fetch from the
// same source, answered correctly, gets the right page.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "faultline/page_source.h"
#include "fuzz_check.h"
#include "net/socket_address.h"
#include "net/socket_io.h"
#include "protocol/v1_wire.h"

using namespace faultline;

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kIpa = 0x200000;
constexpr auto kPatience = std::chrono::seconds(5);

// Serves one connection at a time, like a page server: every request gets the
// correct reply, except the first on a connection when a reply was scripted;
// after a scripted reply shorter than a whole one it hangs up.
class FakeServer {
 public:
  FakeServer() {
    char dir_template[] = "/tmp/faultline-fuzz-XXXXXX";
    FUZZ_CHECK(::mkdtemp(dir_template) != nullptr);
    dir_ = dir_template;
    auto address = net::parse_socket_address("unix:" + dir_ + "/pages.sock");
    FUZZ_CHECK(address.is_ok());
    auto listener = net::listen_socket(*address);
    FUZZ_CHECK(listener.is_ok());
    listener_ = std::move(listener).value();
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeServer() {
    stopping_ = true;
    thread_.join();
    std::filesystem::remove_all(dir_);
  }

  std::string address() const { return listener_.address.to_string(); }

  // The reply to the first request of the next connection.
  void script(std::vector<std::byte> reply) {
    std::lock_guard lock(mu_);
    scripted_ = std::move(reply);
  }

  static std::vector<std::byte> correct_reply(const v1::RequestBytes& request) {
    std::vector<std::byte> reply(request.begin(), request.end());
    for (uint64_t i = 0; i < kPage; ++i) reply.push_back(static_cast<std::byte>(i * 7 + 1));
    return reply;
  }

 private:
  void serve() {
    while (!stopping_) {
      pollfd pfd{listener_.fd.get(), POLLIN, 0};
      if (::poll(&pfd, 1, 100) != 1) continue;
      UniqueFd fd(::accept4(listener_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (fd) serve_connection(fd.get());
    }
  }

  // Until the source hangs up.
  void serve_connection(int fd) {
    std::optional<std::vector<std::byte>> scripted;
    {
      std::lock_guard lock(mu_);
      scripted.swap(scripted_);
    }
    for (;;) {
      v1::RequestBytes request;
      if (!net::read_full(fd, request, net::deadline_after(kPatience))) return;
      const std::vector<std::byte> reply = scripted ? *scripted : correct_reply(request);
      scripted.reset();
      if (!net::write_full(fd, reply, net::deadline_after(kPatience))) return;
      if (reply.size() < v1::kReplyHeaderSize + kPage) return;
    }
  }

  std::string dir_;
  net::Listener listener_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::optional<std::vector<std::byte>> scripted_;  // guarded by mu_
  std::thread thread_;
};

FakeServer& server() {
  static FakeServer s;
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  server();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> reply(reinterpret_cast<const std::byte*>(data),
                                         std::min<size_t>(size, 2 * kPage));
  FakeServer& s = server();
  SocketSourceOptions options;
  options.io_timeout = kPatience;
  options.connect_timeout = kPatience;
  auto source = connect_socket_page_source(s.address(), options);
  FUZZ_CHECK(source.is_ok());

  s.script({reply.begin(), reply.end()});
  std::vector<std::byte> page(kPage, std::byte{0xee});
  auto kind = (*source)->fetch(kIpa, page);

  const auto expected_header = v1::encode_reply_header({kIpa, kPage});
  const bool well_formed =
      reply.size() >= v1::kReplyHeaderSize + kPage &&
      std::equal(expected_header.begin(), expected_header.end(), reply.begin());
  FUZZ_CHECK(kind.is_ok() == well_formed);
  if (kind) {
    const auto payload = reply.subspan(v1::kReplyHeaderSize, kPage);
    const bool zero =
        std::all_of(payload.begin(), payload.end(), [](std::byte b) { return b == std::byte{0}; });
    FUZZ_CHECK(*kind == (zero ? PageKind::kZero : PageKind::kData));
    FUZZ_CHECK(zero || std::equal(payload.begin(), payload.end(), page.begin()));
  } else {
    const ErrorCode code = kind.status().code();
    FUZZ_CHECK(code == ErrorCode::kProtocol || code == ErrorCode::kUnavailable);
    FUZZ_CHECK(!kind.status().message().empty());
  }

  // The next fetch, answered correctly, is not disturbed by the last reply:
  // a connection that carried a bad reply, or more than the reply, is not reused.
  auto again = (*source)->fetch(kIpa, page);
  FUZZ_CHECK(again.is_ok());
  const auto correct = FakeServer::correct_reply(v1::encode_page_request({kIpa, kPage}));
  FUZZ_CHECK(std::equal(page.begin(), page.end(), correct.begin() + v1::kReplyHeaderSize));
  return 0;
}
