// The page server's whole conversation with one peer: a real PageServer on a
// Unix socket, serving a small memory file, gets the fuzz input as the byte
// stream of one connection. It must answer exactly the leading requests that
// are valid and inside the file, with the file's bytes (holes and zero pages
// as zeros), then close the connection. The connection must leave nothing
// behind: no client still counted as active, and the counters advanced by
// exactly what was answered or rejected.
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/log.h"
#include "faultline/page_server.h"
#include "fuzz_check.h"
#include "net/socket_address.h"
#include "protocol/frames.h"
#include "protocol/v1_wire.h"

using namespace faultline;

namespace {

constexpr uint64_t kRamStart = 0x100000;
constexpr uint64_t kFileSize = 128 * 1024;
constexpr uint64_t kDataSize = 96 * 1024;  // the last 32 KiB are a hole
constexpr uint64_t kZeroPage = 2;          // written as explicit zeros
constexpr size_t kMaxRequests = 64;        // bounds the reply to 8 MiB
constexpr int kPatienceMs = 5000;

std::vector<std::byte> make_image() {
  std::vector<std::byte> image(kFileSize);
  for (uint64_t i = 0; i < kDataSize; ++i) {
    if (i / 4096 != kZeroPage) image[i] = static_cast<std::byte>((i * 131 + i / 4096 + 1) & 0xff);
  }
  return image;
}

// The server and its memory file, for the whole fuzzing run.
struct Fixture {
  Fixture() {
    char dir_template[] = "/tmp/faultline-fuzz-XXXXXX";
    FUZZ_CHECK(::mkdtemp(dir_template) != nullptr);
    dir = dir_template;
    const std::string mem = dir + "/mem";
    FILE* file = std::fopen(mem.c_str(), "wb");
    FUZZ_CHECK(file != nullptr);
    FUZZ_CHECK(std::fwrite(image.data(), 1, kDataSize, file) == kDataSize);
    FUZZ_CHECK(::ftruncate(::fileno(file), kFileSize) == 0);
    FUZZ_CHECK(std::fclose(file) == 0);
    auto started = PageServer::start({"unix:" + dir + "/pages.sock", mem, kRamStart});
    FUZZ_CHECK(started.is_ok());
    server = std::move(started).value();
    address = *net::parse_socket_address(server->address());
  }
  ~Fixture() {
    server.reset();
    std::filesystem::remove_all(dir);
  }

  const std::vector<std::byte> image = make_image();
  std::string dir;
  std::unique_ptr<PageServer> server;
  net::SocketAddress address;
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

// What the server must send back for `input`, and what it must count.
struct Expected {
  std::vector<std::byte> stream;
  uint64_t requests = 0;
  uint64_t bytes = 0;
  uint64_t bad_requests = 0;
};

Expected expect(std::span<const std::byte> input, const std::vector<std::byte>& image) {
  Expected e;
  for (size_t at = 0; input.size() - at >= v1::kRequestSize; at += v1::kRequestSize) {
    auto request = v1::decode_page_request(input.subspan(at).first<v1::kRequestSize>());
    if (!request || request->gpa < kRamStart || request->gpa - kRamStart > kFileSize ||
        request->page_size > kFileSize - (request->gpa - kRamStart)) {
      e.bad_requests = 1;
      break;
    }
    const auto header = v1::encode_reply_header(*request);
    e.stream.insert(e.stream.end(), header.begin(), header.end());
    const auto page = image.begin() + static_cast<std::ptrdiff_t>(request->gpa - kRamStart);
    e.stream.insert(e.stream.end(), page, page + static_cast<std::ptrdiff_t>(request->page_size));
    ++e.requests;
    e.bytes += request->page_size;
  }
  return e;  // a trailing partial request is a client that left: not a bad request
}

// Sends `input` (then half-closes) while reading everything the server says,
// until it closes the connection.
std::vector<std::byte> converse(int fd, std::span<const std::byte> input, size_t expected_size) {
  std::vector<std::byte> received;
  size_t sent = 0;
  bool sending = true;
  if (input.empty()) {
    ::shutdown(fd, SHUT_WR);
    sending = false;
  }
  for (;;) {
    pollfd pfd{fd, static_cast<short>(POLLIN | (sending ? POLLOUT : 0)), 0};
    const int ready = ::poll(&pfd, 1, kPatienceMs);
    FUZZ_CHECK(ready > 0 || (ready < 0 && errno == EINTR));  // else the server stalled
    if (sending && (pfd.revents & POLLOUT) != 0) {
      ssize_t n = ::send(fd, input.data() + sent, input.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<size_t>(n);
      if (n < 0 && errno != EAGAIN && errno != EINTR) sending = false;  // it hung up on us
      if (sent == input.size()) {
        ::shutdown(fd, SHUT_WR);
        sending = false;
      }
    }
    if ((pfd.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      std::byte chunk[64 * 1024];
      ssize_t n = ::recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno == ECONNRESET)) return received;
      if (n < 0) {
        FUZZ_CHECK(errno == EAGAIN || errno == EINTR);
        continue;
      }
      received.insert(received.end(), chunk, chunk + n);
      FUZZ_CHECK(received.size() <= expected_size);  // never more than was asked for
    }
  }
}

void wait_until_no_client_is_active(const PageServer& server) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kPatienceMs);
  while (server.stats().active != 0) {
    FUZZ_CHECK(std::chrono::steady_clock::now() < deadline);
    std::this_thread::yield();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  log().set_level(spdlog::level::off);  // a log line per bad request is noise here
  fixture();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A stream opening with the v2 magic is a v2 session: the v2_frames target
  // covers its parsers; this one checks the v1 conversation.
  if (size >= v2::kMagic.size() && std::memcmp(data, v2::kMagic.data(), v2::kMagic.size()) == 0) {
    return -1;
  }
  Fixture& f = fixture();
  std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data),
                                   std::min(size, kMaxRequests * v1::kRequestSize));
  const Expected expected = expect(input, f.image);

  wait_until_no_client_is_active(*f.server);
  const PageServerStats before = f.server->stats();
  auto fd = net::connect_socket(f.address, std::chrono::milliseconds(kPatienceMs));
  FUZZ_CHECK(fd.is_ok());
  const std::vector<std::byte> received = converse(fd->get(), input, expected.stream.size());
  FUZZ_CHECK(received == expected.stream);

  wait_until_no_client_is_active(*f.server);
  const PageServerStats after = f.server->stats();
  FUZZ_CHECK(after.connections - before.connections == 1);
  FUZZ_CHECK(after.requests - before.requests == expected.requests);
  FUZZ_CHECK(after.bytes - before.bytes == expected.bytes);
  FUZZ_CHECK(after.bad_requests - before.bad_requests == expected.bad_requests);
  return 0;
}
