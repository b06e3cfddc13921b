// The handler daemon: one listener for VMs, one for stats, a thread per session.
#include "faultline/uffd_handler.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <list>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/log.h"
#include "firecracker/handshake_receiver.h"
#include "firecracker/session.h"
#include "net/socket_address.h"
#include "net/socket_io.h"

namespace faultline {

using firecracker::Session;

class UffdHandler::Impl {
 public:
  explicit Impl(UffdHandlerOptions options) : options_(std::move(options)) {}

  Status init() {
    if (options_.socket_path.empty()) return invalid_argument("no socket path given");
    if (options_.mem_file.empty() == options_.page_server.empty()) {
      return invalid_argument("give exactly one of a memory file or a page server");
    }
    if (options_.threads_per_session < 1 || options_.threads_per_session > 64) {
      return invalid_argument(fmt::format("threads per session must be in [1, 64], not {}",
                                          options_.threads_per_session));
    }
    if (options_.stats_socket.empty()) options_.stats_socket = options_.socket_path + ".stats";
    config_.threads = options_.threads_per_session;
    config_.source_deadline = options_.source_deadline;
    config_.fault_around_max = options_.fault_around_max;
    config_.background_fill = options_.background_fill;
    if (!options_.mem_file.empty()) {
      // Check the file now: a missing file is the operator's error, not a VM's.
      auto probe = open_file_page_source(options_.mem_file, 0);
      if (!probe.is_ok()) return probe.status();
      struct stat st {};
      if (::stat(options_.mem_file.c_str(), &st) != 0) {
        return io_error(fmt::format("stat {}", options_.mem_file), errno);
      }
      config_.limits.mem_file_size = static_cast<uint64_t>(st.st_size);
      config_.open_source = [path = options_.mem_file] { return open_file_page_source(path, 0); };
    } else {
      auto probe = connect_socket_page_source(options_.page_server);
      if (!probe.is_ok()) return probe.status();
      config_.open_source = [address = options_.page_server] {
        return connect_socket_page_source(address);
      };
    }
    stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!stop_) return io_error("eventfd", errno);
    Status s = listen_on(options_.socket_path, vm_listener_);
    if (s.is_ok()) s = listen_on(options_.stats_socket, stats_listener_);
    if (!s.is_ok()) return s;
    accept_thread_ = std::thread([this] { accept_loop(); });
    log().info("handling Firecracker page faults on {} (stats on {}), pages from {}",
               options_.socket_path, options_.stats_socket,
               options_.mem_file.empty() ? options_.page_server : options_.mem_file);
    return Status::ok();
  }

  ~Impl() { stop(); }

  void stop() {
    if (stopped_.exchange(true)) return;
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_.get(), &one, sizeof one);
    if (accept_thread_.joinable()) accept_thread_.join();
    std::list<SessionSlot> slots;
    {
      std::lock_guard lock(mu_);
      slots.swap(slots_);
    }
    for (SessionSlot& slot : slots) slot.thread.join();
    for (const std::string& path : {options_.socket_path, options_.stats_socket}) {
      ::unlink(path.c_str());
    }
  }

  std::string stats_json() const {
    nlohmann::ordered_json sessions = nlohmann::ordered_json::array();
    size_t live = 0;
    {
      std::lock_guard lock(mu_);
      for (const SessionSlot& slot : slots_) {
        if (slot.session != nullptr && !slot.done) {
          sessions.push_back(slot.session->stats());
          ++live;
        }
      }
    }
    nlohmann::ordered_json j = {
        {"socket", options_.socket_path},
        {"source", options_.mem_file.empty() ? options_.page_server : options_.mem_file},
        {"live_sessions", live},
        {"sessions_started", started_.load()},
        {"sessions_ended", ended_.load()},
        {"handshakes_rejected", rejected_.load()},
        {"sessions", sessions},
    };
    return j.dump(2);
  }

  const UffdHandlerOptions& options() const { return options_; }

 private:
  struct SessionSlot {
    std::thread thread;
    std::unique_ptr<Session> session;  // set once started; guarded by mu_
    bool done = false;                 // guarded by mu_
  };

  Status listen_on(const std::string& path, UniqueFd& out) {
    auto address = net::parse_socket_address("unix:" + path);
    if (!address.is_ok()) return address.status();
    auto listener = net::listen_socket(*address);
    if (!listener.is_ok()) return listener.status();
    out = std::move(listener->fd);
    return Status::ok();
  }

  void accept_loop() {
    pollfd fds[3] = {{vm_listener_.get(), POLLIN, 0},
                     {stats_listener_.get(), POLLIN, 0},
                     {stop_.get(), POLLIN, 0}};
    while (true) {
      int ready = ::poll(fds, 3, 1000);
      if (ready < 0 && errno != EINTR) {
        log().error("handler: poll: {}", std::strerror(errno));
        return;
      }
      if (fds[2].revents != 0) return;
      reap_finished();
      if (ready <= 0) continue;
      if ((fds[1].revents & POLLIN) != 0) answer_stats();
      if ((fds[0].revents & POLLIN) != 0) accept_vm();
    }
  }

  void answer_stats() {
    UniqueFd client(::accept4(stats_listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client) return;
    const std::string text = stats_json() + "\n";
    (void)net::write_full(client.get(), std::as_bytes(std::span(text)),
                          net::deadline_after(std::chrono::seconds(1)));
  }

  void accept_vm() {
    UniqueFd connection(::accept4(vm_listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!connection) return;
    std::lock_guard lock(mu_);
    size_t live = 0;
    for (const SessionSlot& slot : slots_) live += slot.done ? 0 : 1;
    if (live >= options_.max_sessions) {
      log().error("handler: refusing a VM (pid {}): {} sessions are already running",
                  firecracker::peer_pid(connection.get()), live);
      rejected_.fetch_add(1);
      return;
    }
    const uint64_t id = next_id_++;
    SessionSlot& slot = slots_.emplace_back();
    slot.thread = std::thread(
        [this, id, &slot, fd = connection.release()] { run_session(id, UniqueFd(fd), slot); });
  }

  void run_session(uint64_t id, UniqueFd connection, SessionSlot& slot) {
    const int pid = firecracker::peer_pid(connection.get());
    auto handshake = firecracker::receive_handshake(connection.get(), options_.handshake_timeout);
    Result<std::unique_ptr<Session>> session =
        handshake.is_ok() ? Session::start(id, pid, std::move(handshake).value(), config_)
                          : Result<std::unique_ptr<Session>>(handshake.status());
    if (!session.is_ok()) {
      rejected_.fetch_add(1);
      log().error("session {} (pid {}): handshake rejected, connection closed: {}", id, pid,
                  session.status().to_string());
      finish(slot);
      return;
    }
    started_.fetch_add(1);
    Session* live = session->get();
    {
      std::lock_guard lock(mu_);
      slot.session = std::move(session).value();
    }
    log().info("session {} (pid {}): serving", id, pid);
    live->serve_until_done(connection.get(), stop_.get());
    log().info("{}", live->summary());
    ended_.fetch_add(1);
    finish(slot);
  }

  void finish(SessionSlot& slot) {
    std::lock_guard lock(mu_);
    slot.done = true;
  }

  // Joins the threads of sessions that have ended and frees their state.
  void reap_finished() {
    std::list<SessionSlot> finished;
    {
      std::lock_guard lock(mu_);
      for (auto it = slots_.begin(); it != slots_.end();) {
        auto next = std::next(it);
        if (it->done) finished.splice(finished.end(), slots_, it);
        it = next;
      }
    }
    for (SessionSlot& slot : finished) slot.thread.join();
  }

  UffdHandlerOptions options_;
  firecracker::SessionConfig config_;
  UniqueFd vm_listener_;
  UniqueFd stats_listener_;
  UniqueFd stop_;
  std::thread accept_thread_;
  std::atomic<bool> stopped_{false};

  mutable std::mutex mu_;
  std::list<SessionSlot> slots_;  // stable addresses: each session thread holds its slot
  uint64_t next_id_ = 1;
  std::atomic<uint64_t> started_{0};
  std::atomic<uint64_t> ended_{0};
  std::atomic<uint64_t> rejected_{0};
};

UffdHandler::UffdHandler(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
UffdHandler::~UffdHandler() = default;

Result<std::unique_ptr<UffdHandler>> UffdHandler::start(const UffdHandlerOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  Status s = impl->init();
  if (!s.is_ok()) return s;
  return std::unique_ptr<UffdHandler>(new UffdHandler(std::move(impl)));
}

void UffdHandler::stop() {
  impl_->stop();
}
std::string UffdHandler::stats_json() const {
  return impl_->stats_json();
}
const std::string& UffdHandler::socket_path() const {
  return impl_->options().socket_path;
}
const std::string& UffdHandler::stats_socket_path() const {
  return impl_->options().stats_socket;
}

}  // namespace faultline
