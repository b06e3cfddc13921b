#include "delay_proxy.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <deque>
#include <vector>

namespace faultline::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kChunk = 64 * 1024;

void make_blocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
}

bool send_all(int fd, const std::vector<std::byte>& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// One direction of a connection: a reader that stamps each chunk with when it
// may go on, and a writer that sends it then. An empty chunk is end-of-stream.
class DelayedPipe {
 public:
  DelayedPipe(int from, int to, std::chrono::nanoseconds delay)
      : from_(from), to_(to), delay_(delay) {
    reader_ = std::thread([this] { read_loop(); });
    writer_ = std::thread([this] { write_loop(); });
  }
  ~DelayedPipe() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    ready_.notify_all();
    reader_.join();
    writer_.join();
  }

 private:
  struct Chunk {
    Clock::time_point due;
    std::vector<std::byte> bytes;
  };

  void push(std::vector<std::byte> bytes) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back({Clock::now() + delay_, std::move(bytes)});
    }
    ready_.notify_all();
  }

  void read_loop() {
    for (;;) {
      std::vector<std::byte> bytes(kChunk);
      const ssize_t n = ::recv(from_, bytes.data(), bytes.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        push({});
        return;
      }
      bytes.resize(static_cast<size_t>(n));
      push(std::move(bytes));
    }
  }

  void write_loop() {
    ::prctl(PR_SET_TIMERSLACK, 1);  // sub-millisecond delays must be kept
    std::unique_lock lock(mu_);
    for (;;) {
      ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      const Clock::time_point due = queue_.front().due;
      if (ready_.wait_until(lock, due, [this] { return stopping_; })) return;
      Chunk chunk = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      const bool end = chunk.bytes.empty();
      if (end || !send_all(to_, chunk.bytes)) {
        ::shutdown(to_, SHUT_WR);
        return;
      }
      lock.lock();
    }
  }

  int from_;
  int to_;
  std::chrono::nanoseconds delay_;
  std::mutex mu_;
  std::condition_variable ready_;
  std::deque<Chunk> queue_;  // guarded by mu_
  bool stopping_ = false;    // guarded by mu_
  std::thread reader_;
  std::thread writer_;
};

}  // namespace

struct DelayProxy::Link {
  UniqueFd client;
  UniqueFd server;
  std::unique_ptr<DelayedPipe> to_server;
  std::unique_ptr<DelayedPipe> to_client;

  ~Link() {
    // Wakes both readers; the pipes' destructors then join their threads.
    ::shutdown(client.get(), SHUT_RDWR);
    ::shutdown(server.get(), SHUT_RDWR);
    to_server.reset();
    to_client.reset();
  }
};

Result<std::unique_ptr<DelayProxy>> DelayProxy::start(const std::string& target,
                                                      std::chrono::nanoseconds round_trip) {
  auto target_address = net::parse_socket_address(target);
  if (!target_address.is_ok()) return target_address.status();
  auto listen_address = net::parse_socket_address("tcp:127.0.0.1:0");
  if (!listen_address.is_ok()) return listen_address.status();
  auto listener = net::listen_socket(*listen_address);
  if (!listener.is_ok()) return listener.status();
  std::unique_ptr<DelayProxy> proxy(
      new DelayProxy(std::move(listener).value(), *target_address, round_trip / 2));
  if (!proxy->stop_) return io_error("eventfd", errno);
  proxy->accept_thread_ = std::thread([p = proxy.get()] { p->accept_loop(); });
  return proxy;
}

DelayProxy::DelayProxy(net::Listener listener, net::SocketAddress target,
                       std::chrono::nanoseconds one_way)
    : listener_(std::move(listener)),
      target_(std::move(target)),
      one_way_(one_way),
      stop_(::eventfd(0, EFD_CLOEXEC)) {}

DelayProxy::~DelayProxy() {
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(stop_.get(), &one, sizeof one);
  if (accept_thread_.joinable()) accept_thread_.join();
  std::lock_guard lock(mu_);
  links_.clear();
}

void DelayProxy::accept_loop() {
  pollfd fds[2] = {{listener_.fd.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
  for (;;) {
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[1].revents != 0) return;
    if (fds[0].revents == 0) continue;
    UniqueFd client(::accept4(listener_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client) continue;
    auto server = net::connect_socket(target_, std::chrono::seconds(2));
    if (!server.is_ok()) continue;  // the client sees its connection closed
    auto link = std::make_unique<Link>();
    link->client = std::move(client);
    link->server = std::move(server).value();
    for (int fd : {link->client.get(), link->server.get()}) {
      make_blocking(fd);
      net::set_no_delay(fd);
    }
    link->to_server =
        std::make_unique<DelayedPipe>(link->client.get(), link->server.get(), one_way_);
    link->to_client =
        std::make_unique<DelayedPipe>(link->server.get(), link->client.get(), one_way_);
    std::lock_guard lock(mu_);
    links_.push_back(std::move(link));
  }
}

}  // namespace faultline::bench
