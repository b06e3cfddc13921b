// The handler daemon: one listener for VMs, one for stats, a thread per session.
#include "faultline/uffd_handler.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "faultline/version.h"
#include "firecracker/handshake_receiver.h"
#include "firecracker/refusal.h"
#include "firecracker/session.h"
#include "firecracker/session_history.h"
#include "firecracker/session_source.h"
#include "net/connection_server.h"
#include "net/socket_address.h"
#include "net/socket_io.h"
#include "os_linux/wake_round_trip.h"

namespace faultline {

using firecracker::Session;

class UffdHandler::Impl {
 public:
  explicit Impl(UffdHandlerOptions options) : options_(std::move(options)) {}

  Status init() {
    if (options_.socket_path.empty()) return invalid_argument("no socket path given");
    if (options_.threads_per_session < 1 || options_.threads_per_session > 64) {
      return invalid_argument(fmt::format("threads per session must be in [1, 64], not {}",
                                          options_.threads_per_session));
    }
    if (options_.stats_socket.empty()) options_.stats_socket = options_.socket_path + ".stats";
    // Measured once per process: now, so that no VM's restore waits for it.
    (void)wake_round_trip_ns();
    config_.threads = options_.threads_per_session;
    config_.source_deadline = options_.source_deadline;
    config_.prefetch = options_.prefetch;
    config_.working_sets = options_.working_sets;
    if (Status s = firecracker::configure_session_source(options_, config_); !s.is_ok()) return s;
    // A listener that fails leaves the path as it was; one made here already
    // takes its socket file with it when this returns early.
    auto vm_listener = listen_on(options_.socket_path);
    if (!vm_listener.is_ok()) return vm_listener.status();
    auto stats_listener = listen_on(options_.stats_socket);
    if (!stats_listener.is_ok()) return stats_listener.status();
    net::ConnectionServerOptions vms;
    vms.name = "handler";
    vms.max_connections = options_.max_sessions;
    vms.serve = [this](const net::Connection& c) { run_session(c); };
    vms.refused = [this](int fd, const std::string&, uint64_t live) {
      log().error("handler: refusing a VM (pid {}): {} sessions are already running",
                  firecracker::peer_pid(fd), live);
      rejected_.fetch_add(1);
    };
    auto vm_server = net::ConnectionServer::start(std::move(vm_listener->fd), std::move(vms));
    if (!vm_server.is_ok()) return vm_server.status();
    vm_server_ = std::move(vm_server).value();
    net::ConnectionServerOptions stats;
    stats.name = "handler stats";
    stats.max_connections = kMaxStatsReaders;
    stats.serve = [this](const net::Connection& c) { answer_stats(c.fd); };
    auto stats_server =
        net::ConnectionServer::start(std::move(stats_listener->fd), std::move(stats));
    if (!stats_server.is_ok()) return stats_server.status();
    stats_server_ = std::move(stats_server).value();
    vm_socket_file_ = std::move(vm_listener->socket_file);
    stats_socket_file_ = std::move(stats_listener->socket_file);
    log().info("faultline {}: handling Firecracker page faults on {} (stats on {}), pages from {}",
               FAULTLINE_VERSION_STRING, options_.socket_path, options_.stats_socket,
               options_.mem_file.empty() ? options_.page_server : options_.mem_file);
    return Status::ok();
  }

  ~Impl() { stop(); }

  void stop() {
    if (stopped_.exchange(true)) return;
    if (vm_server_) vm_server_->stop();
    if (stats_server_) stats_server_->stop();
    // Only the files this handler bound, and only if nobody has replaced them.
    vm_socket_file_.remove();
    stats_socket_file_.remove();
  }

  std::string stats_json() const {
    nlohmann::ordered_json sessions = nlohmann::ordered_json::array();
    size_t live = 0;
    {
      std::lock_guard lock(mu_);
      for (const auto& entry : sessions_) {
        sessions.push_back(entry.second->stats());
        ++live;
      }
    }
    nlohmann::ordered_json j = {
        {"version", FAULTLINE_VERSION_STRING},
        {"socket", options_.socket_path},
        {"session_name", options_.session_name},
        {"source", options_.mem_file.empty() ? options_.page_server : options_.mem_file},
        {"live_sessions", live},
        {"sessions_started", started_.load()},
        {"sessions_ended", ended_.load()},
        {"handshakes_rejected", rejected_.load()},
        {"sessions", sessions},
        {"ended_sessions", history_.to_json()},
        {"ended_sessions_forgotten", history_.forgotten()},
    };
    return j.dump(2);
  }

  const UffdHandlerOptions& options() const { return options_; }

 private:
  // Stats readers are served one thread each, like VMs; a few at once is plenty.
  static constexpr size_t kMaxStatsReaders = 16;

  static Result<net::Listener> listen_on(const std::string& path) {
    auto address = net::parse_socket_address("unix:" + path);
    if (!address.is_ok()) return address.status();
    return net::listen_socket(*address);
  }

  void answer_stats(int client) {
    const std::string text = stats_json() + "\n";
    (void)net::write_full(client, std::as_bytes(std::span(text)),
                          net::deadline_after(std::chrono::seconds(1)));
  }

  // "NAME-ID" for the operator's --session-name, numbered by connection.
  std::string session_name(uint64_t id) const {
    return options_.session_name.empty() ? "" : fmt::format("{}-{}", options_.session_name, id);
  }

  void run_session(const net::Connection& connection) {
    const uint64_t id = connection.id;
    const int pid = firecracker::peer_pid(connection.fd);
    const std::string name = session_name(id);
    firecracker::ReceivedHandshake handshake;
    Status received = firecracker::receive_handshake(connection.fd, connection.stop_fd,
                                                     options_.handshake_timeout, handshake);
    // A VM that has sent its handshake keeps its slot from a newcomer; so does
    // one refused with its userfaultfd, whose faults are being answered.
    if (received.is_ok() || handshake.uffd) connection.mark_established();
    if (received.code() == ErrorCode::kShutdown) {
      log().info("{}: {}", firecracker::session_label(id, name, pid), received.message());
      return;
    }
    // Our own copy of the VM's userfaultfd, in case the session refuses it.
    UniqueFd uffd(handshake.uffd ? ::fcntl(handshake.uffd.get(), F_DUPFD_CLOEXEC, 0) : -1);
    Result<std::unique_ptr<Session>> session =
        received.is_ok() ? Session::start(id, pid, std::move(handshake), config_, name)
                         : Result<std::unique_ptr<Session>>(received);
    if (!session.is_ok()) {
      refuse(connection, name, pid, session.status(), std::move(uffd));
      return;
    }
    uffd.reset();
    started_.fetch_add(1);
    Session* live = session->get();
    {
      std::lock_guard lock(mu_);
      sessions_.emplace(id, live);
    }
    log().info("{}: serving", live->label());
    const std::string how = live->serve_until_done(connection.fd, connection.stop_fd);
    log().info("{}", live->summary(how));
    history_.add(live->stats(), how);
    ended_.fetch_add(1);
    // Out of the stats before it is freed (at the end of this scope).
    std::lock_guard lock(mu_);
    sessions_.erase(id);
  }

  void refuse(const net::Connection& connection, const std::string& name, int pid,
              const Status& why, UniqueFd uffd) {
    rejected_.fetch_add(1);
    const std::string label = firecracker::session_label(connection.id, name, pid);
    log().error("{}: handshake rejected: {}", label, why.to_string());
    const auto began = std::chrono::steady_clock::now();
    const firecracker::RefusalReport report =
        firecracker::refuse_vm(std::move(uffd), connection.fd, connection.stop_fd, label);
    nlohmann::ordered_json summary = {
        {"id", connection.id},
        {"name", name},
        {"pid", pid},
        {"seconds",
         std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count()},
        {"refusal", refusal_name(report.outcome)},
        {"poisoned", report.poisoned_faults},
    };
    history_.add(std::move(summary), "handshake rejected: " + why.message());
  }

  static const char* refusal_name(firecracker::RefusalOutcome outcome) {
    switch (outcome) {
      case firecracker::RefusalOutcome::kNothingToAnswer:
        return "closed";
      case firecracker::RefusalOutcome::kFaultsPoisoned:
        return "faults answered with SIGBUS";
      case firecracker::RefusalOutcome::kPeerKilled:
        return "peer killed";
      case firecracker::RefusalOutcome::kPeerNotKilled:
        return "peer could not be killed";
    }
    return "closed";
  }

  UffdHandlerOptions options_;
  firecracker::SessionConfig config_;
  std::unique_ptr<net::ConnectionServer> vm_server_;
  std::unique_ptr<net::ConnectionServer> stats_server_;
  net::SocketFile vm_socket_file_;
  net::SocketFile stats_socket_file_;
  std::atomic<bool> stopped_{false};

  mutable std::mutex mu_;
  // Live ones by id (the order stats list them in), guarded by mu_; each owned by its thread.
  std::map<uint64_t, const Session*> sessions_;
  std::atomic<uint64_t> started_{0};
  std::atomic<uint64_t> ended_{0};
  std::atomic<uint64_t> rejected_{0};
  firecracker::SessionHistory history_;
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
