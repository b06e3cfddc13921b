// The handler daemon: one listener for VMs, one for stats, a thread per session.
#include "faultline/uffd_handler.h"

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
#include "firecracker/session.h"
#include "firecracker/session_source.h"
#include "net/connection_server.h"
#include "net/socket_address.h"
#include "net/socket_io.h"

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
    config_.threads = options_.threads_per_session;
    config_.source_deadline = options_.source_deadline;
    config_.fault_around_max = options_.fault_around_max;
    config_.background_fill = options_.background_fill;
    if (Status s = firecracker::configure_session_source(options_, config_); !s.is_ok()) return s;
    UniqueFd vm_listener;
    UniqueFd stats_listener;
    Status s = listen_on(options_.socket_path, vm_listener);
    if (s.is_ok()) s = listen_on(options_.stats_socket, stats_listener);
    if (!s.is_ok()) return s;
    net::ConnectionServerOptions vms;
    vms.name = "handler";
    vms.max_connections = options_.max_sessions;
    vms.serve = [this](const net::Connection& c) { run_session(c); };
    vms.refused = [this](int fd, const std::string&, uint64_t live) {
      log().error("handler: refusing a VM (pid {}): {} sessions are already running",
                  firecracker::peer_pid(fd), live);
      rejected_.fetch_add(1);
    };
    auto vm_server = net::ConnectionServer::start(std::move(vm_listener), std::move(vms));
    if (!vm_server.is_ok()) return vm_server.status();
    vm_server_ = std::move(vm_server).value();
    net::ConnectionServerOptions stats;
    stats.name = "handler stats";
    stats.max_connections = kMaxStatsReaders;
    stats.serve = [this](const net::Connection& c) { answer_stats(c.fd); };
    auto stats_server = net::ConnectionServer::start(std::move(stats_listener), std::move(stats));
    if (!stats_server.is_ok()) return stats_server.status();
    stats_server_ = std::move(stats_server).value();
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
    for (const std::string& path : {options_.socket_path, options_.stats_socket}) {
      ::unlink(path.c_str());
    }
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
  // Stats readers are served one thread each, like VMs; a few at once is plenty.
  static constexpr size_t kMaxStatsReaders = 16;

  Status listen_on(const std::string& path, UniqueFd& out) {
    auto address = net::parse_socket_address("unix:" + path);
    if (!address.is_ok()) return address.status();
    auto listener = net::listen_socket(*address);
    if (!listener.is_ok()) return listener.status();
    out = std::move(listener->fd);
    return Status::ok();
  }

  void answer_stats(int client) {
    const std::string text = stats_json() + "\n";
    (void)net::write_full(client, std::as_bytes(std::span(text)),
                          net::deadline_after(std::chrono::seconds(1)));
  }

  void run_session(const net::Connection& connection) {
    const uint64_t id = connection.id;
    const int pid = firecracker::peer_pid(connection.fd);
    auto handshake = firecracker::receive_handshake(connection.fd, options_.handshake_timeout);
    Result<std::unique_ptr<Session>> session =
        handshake.is_ok() ? Session::start(id, pid, std::move(handshake).value(), config_)
                          : Result<std::unique_ptr<Session>>(handshake.status());
    if (!session.is_ok()) {
      rejected_.fetch_add(1);
      log().error("session {} (pid {}): handshake rejected, connection closed: {}", id, pid,
                  session.status().to_string());
      return;
    }
    started_.fetch_add(1);
    Session* live = session->get();
    {
      std::lock_guard lock(mu_);
      sessions_.emplace(id, live);
    }
    log().info("session {} (pid {}): serving", id, pid);
    live->serve_until_done(connection.fd, connection.stop_fd);
    log().info("{}", live->summary());
    ended_.fetch_add(1);
    // Out of the stats before it is freed (at the end of this scope).
    std::lock_guard lock(mu_);
    sessions_.erase(id);
  }

  UffdHandlerOptions options_;
  firecracker::SessionConfig config_;
  std::unique_ptr<net::ConnectionServer> vm_server_;
  std::unique_ptr<net::ConnectionServer> stats_server_;
  std::atomic<bool> stopped_{false};

  mutable std::mutex mu_;
  // Live ones by id (the order stats list them in), guarded by mu_; each owned by its thread.
  std::map<uint64_t, const Session*> sessions_;
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
