#include "net/connection_server.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <mutex>
#include <system_error>
#include <thread>

#include "core/log.h"
#include "core/log_rate_limit.h"
#include "net/socket_address.h"

namespace faultline::net {
namespace {

// How long to back off when accept() fails for lack of resources.
constexpr int kAcceptBackoffMs = 100;

void signal(int event_fd) {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(event_fd, &one, sizeof(one));
}

void drain(int event_fd) {
  uint64_t count = 0;
  [[maybe_unused]] ssize_t n = ::read(event_fd, &count, sizeof(count));
}

}  // namespace

class ConnectionServer::Impl {
 public:
  Impl(UniqueFd listener, ConnectionServerOptions options, UniqueFd stop_event,
       UniqueFd finished_event)
      : options_(std::move(options)),
        listener_(std::move(listener)),
        stop_event_(std::move(stop_event)),
        finished_event_(std::move(finished_event)) {
    accept_thread_ = std::thread([this] { accept_loop(); });
  }

  ~Impl() { stop(); }

  void stop() {
    std::lock_guard stop_lock(stop_mu_);
    if (stopped_) return;
    signal(stop_event_.get());
    accept_thread_.join();
    listener_.reset();
    {
      std::lock_guard lock(mu_);
      // Wakes every connection thread blocked in poll, read or write.
      for (Slot& slot : slots_) {
        if (slot.fd) ::shutdown(slot.fd.get(), SHUT_RDWR);
      }
    }
    // Only connection threads remain and they never change the list itself.
    for (Slot& slot : slots_) slot.thread.join();
    slots_.clear();
    stopped_ = true;
  }

  uint64_t accepted() const { return accepted_.load(); }
  uint64_t active() const { return active_.load(); }
  uint64_t evicted() const { return evicted_.load(); }

 private:
  struct Slot {
    UniqueFd fd;  // closed by its thread, under mu_, when it ends
    std::thread thread;
    std::atomic<bool> established{false};
    bool evicted = false;   // guarded by mu_: shut down to make room, its handler ending
    bool finished = false;  // guarded by mu_
  };

  // Slots that count against max_connections. Called with mu_ held.
  size_t occupied() const {
    size_t n = 0;
    for (const Slot& slot : slots_) n += slot.finished || slot.evicted ? 0 : 1;
    return n;
  }

  // Shuts the oldest unproven connection down, its slot going to `newcomer`;
  // false if every connection is established. Called with mu_ held.
  bool evict_oldest_unproven(const std::string& newcomer) {
    for (Slot& slot : slots_) {  // oldest first
      if (slot.finished || slot.evicted || slot.established.load()) continue;
      slot.evicted = true;
      ::shutdown(slot.fd.get(), SHUT_RDWR);
      ++evicted_;
      log_limited(spdlog::level::info, options_.name + ": eviction",
                  "{}: all {} connections taken; closing the oldest that has not finished its "
                  "handshake or sent a request, to serve {}",
                  options_.name, options_.max_connections, newcomer);
      return true;
    }
    return false;
  }

  void accept_loop() {
    pollfd fds[3] = {{listener_.get(), POLLIN, 0},
                     {stop_event_.get(), POLLIN, 0},
                     {finished_event_.get(), POLLIN, 0}};
    for (;;) {
      if (::poll(fds, 3, -1) < 0) {
        if (errno == EINTR) continue;
        log().error("{}: poll on the listener: {}", options_.name, std::strerror(errno));
        return;
      }
      if (fds[1].revents != 0) return;
      if (fds[2].revents != 0) {
        drain(finished_event_.get());
        std::lock_guard lock(mu_);
        reap_finished();
      }
      if (fds[0].revents != 0) accept_one();
    }
  }

  void accept_one() {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        log().warn("{}: cannot accept: {}", options_.name, std::strerror(errno));
        pollfd stop{stop_event_.get(), POLLIN, 0};
        ::poll(&stop, 1, kAcceptBackoffMs);
      }
      return;  // EAGAIN, ECONNABORTED, EINTR...: nothing to do
    }
    set_no_delay(fd.get());
    std::string peer = describe_peer(fd.get());

    std::lock_guard lock(mu_);
    reap_finished();
    if (occupied() >= options_.max_connections && !evict_oldest_unproven(peer)) {
      if (options_.refused) options_.refused(fd.get(), peer, active_.load());
      return;
    }
    Slot& slot = slots_.emplace_back();
    slot.fd = std::move(fd);
    // Counted before the thread starts, so counters never lag a reply.
    ++accepted_;
    ++active_;
    Connection connection{accepted_.load(), slot.fd.get(), std::move(peer), stop_event_.get(),
                          // Under mu_, so that an eviction decided on the accept
                          // thread never lands on a connection that has just proved itself.
                          [this, &slot] {
                            std::lock_guard lock(mu_);
                            slot.established.store(true);
                          }};
    try {
      slot.thread = std::thread([this, &slot, connection] { run(slot, connection); });
    } catch (const std::system_error& e) {
      log().error("{}: no thread for {}: {}", options_.name, connection.peer, e.what());
      --accepted_;
      --active_;
      slots_.pop_back();
      return;
    }
    log().debug("{}: connection from {}", options_.name, connection.peer);
  }

  void run(Slot& slot, const Connection& connection) {
    options_.serve(connection);
    std::lock_guard lock(mu_);
    slot.fd.reset();
    slot.finished = true;
    --active_;
    signal(finished_event_.get());
  }

  // Called with mu_ held; the threads joined here have already let go of it.
  void reap_finished() {
    for (auto it = slots_.begin(); it != slots_.end();) {
      if (!it->finished) {
        ++it;
        continue;
      }
      it->thread.join();
      it = slots_.erase(it);
    }
  }

  const ConnectionServerOptions options_;
  UniqueFd listener_;
  const UniqueFd stop_event_;
  const UniqueFd finished_event_;  // a connection thread has ended: reap it
  std::thread accept_thread_;

  std::mutex mu_;
  std::list<Slot> slots_;  // structure guarded by mu_; stable addresses

  std::mutex stop_mu_;
  bool stopped_ = false;  // guarded by stop_mu_

  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> active_{0};
  std::atomic<uint64_t> evicted_{0};
};

Result<std::unique_ptr<ConnectionServer>> ConnectionServer::start(UniqueFd listener,
                                                                  ConnectionServerOptions options) {
  if (!listener) return invalid_argument(fmt::format("{}: no listening socket", options.name));
  if (options.max_connections == 0 || !options.serve) {
    return invalid_argument(
        fmt::format("{}: a server needs a handler and a positive connection limit", options.name));
  }
  UniqueFd stop_event(::eventfd(0, EFD_CLOEXEC));
  if (!stop_event) return io_error(fmt::format("{}: eventfd", options.name), errno);
  UniqueFd finished_event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!finished_event) return io_error(fmt::format("{}: eventfd", options.name), errno);
  auto impl = std::make_unique<Impl>(std::move(listener), std::move(options), std::move(stop_event),
                                     std::move(finished_event));
  return std::unique_ptr<ConnectionServer>(new ConnectionServer(std::move(impl)));
}

ConnectionServer::ConnectionServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ConnectionServer::~ConnectionServer() = default;

void ConnectionServer::stop() {
  impl_->stop();
}
uint64_t ConnectionServer::accepted() const {
  return impl_->accepted();
}
uint64_t ConnectionServer::active() const {
  return impl_->active();
}
uint64_t ConnectionServer::evicted() const {
  return impl_->evicted();
}

}  // namespace faultline::net
