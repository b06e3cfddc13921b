// `faultline serve-pages`: answers SocketPageSource requests from a snapshot
// memory file. One thread accepts; each connection has its own thread, so a
// slow or misbehaving client only ever stalls itself.
#include "faultline/page_server.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "core/log.h"
#include "faultline/page_source.h"
#include "faultline/unique_fd.h"
#include "net/socket_address.h"
#include "net/socket_io.h"
#include "sources/page_wire.h"

namespace faultline {
namespace {

// A client that stops reading its replies must not hold its thread forever.
constexpr std::chrono::seconds kReplyWriteTimeout{30};
// How long to back off when accept() fails for lack of resources.
constexpr int kAcceptBackoffMs = 100;

// Identifies the socket file this server created, so that stop() never removes
// a file someone else has put there since.
struct FileIdentity {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const FileIdentity&) const = default;
};

std::optional<FileIdentity> identify(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
  return FileIdentity{st.st_dev, st.st_ino};
}

}  // namespace

class PageServer::Impl {
 public:
  Impl(std::unique_ptr<PageSource> source, net::Listener listener, UniqueFd stop_event,
       int max_clients)
      : source_(std::move(source)),
        listener_(std::move(listener)),
        address_(listener_.address.to_string()),
        stop_event_(std::move(stop_event)),
        max_clients_(max_clients) {
    if (listener_.address.kind == net::SocketAddress::Kind::kUnix) {
      socket_file_ = identify(listener_.address.path);
    }
    accept_thread_ = std::thread([this] { accept_loop(); });
  }

  ~Impl() { stop(); }

  const std::string& address() const { return address_; }

  PageServerStats stats() const {
    return {connections_.load(), active_.load(), requests_.load(), bytes_.load(),
            bad_requests_.load()};
  }

  void stop() {
    std::lock_guard stop_lock(stop_mu_);
    if (stopped_) return;
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_event_.get(), &one, sizeof(one));
    accept_thread_.join();
    {
      std::lock_guard lock(mu_);
      // Wakes every connection thread blocked in poll, read or write.
      for (Connection& c : clients_) {
        if (c.fd) ::shutdown(c.fd.get(), SHUT_RDWR);
      }
    }
    // Only connection threads remain and they never change the list itself.
    for (Connection& c : clients_) c.thread.join();
    clients_.clear();
    listener_.fd.reset();
    if (socket_file_ && identify(listener_.address.path) == socket_file_) {
      ::unlink(listener_.address.path.c_str());
    }
    stopped_ = true;
  }

 private:
  struct Connection {
    UniqueFd fd;  // closed by its thread, under mu_, when it ends
    std::string peer;
    std::thread thread;
    bool finished = false;  // guarded by mu_
  };

  void accept_loop() {
    pollfd fds[2] = {{listener_.fd.get(), POLLIN, 0}, {stop_event_.get(), POLLIN, 0}};
    for (;;) {
      if (::poll(fds, 2, -1) < 0 && errno != EINTR) {
        log().error("page server {}: poll on the listener: {}", address_, std::strerror(errno));
        return;
      }
      if (fds[1].revents != 0) return;
      if (fds[0].revents != 0) accept_one();
    }
  }

  void accept_one() {
    UniqueFd fd(::accept4(listener_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        log().warn("page server {}: cannot accept: {}", address_, std::strerror(errno));
        pollfd stop{stop_event_.get(), POLLIN, 0};
        ::poll(&stop, 1, kAcceptBackoffMs);
      }
      return;  // EAGAIN, ECONNABORTED, EINTR...: nothing to do
    }
    net::set_no_delay(fd.get());
    std::string peer = net::describe_peer(fd.get());

    std::lock_guard lock(mu_);
    reap_finished();
    if (active_.load() >= static_cast<uint64_t>(max_clients_)) {
      log().warn(
          "page server {}: refusing connection from {}: {} clients connected already "
          "(max_clients {})",
          address_, peer, active_.load(), max_clients_);
      return;
    }
    Connection& c = clients_.emplace_back();
    c.fd = std::move(fd);
    c.peer = std::move(peer);
    // Counted before the thread starts, so stats() never lags a reply.
    ++connections_;
    ++active_;
    try {
      c.thread = std::thread([this, &c] { serve_connection(c); });
    } catch (const std::system_error& e) {
      log().error("page server {}: no thread for {}: {}", address_, c.peer, e.what());
      --connections_;
      --active_;
      clients_.pop_back();
      return;
    }
    log().debug("page server {}: connection from {}", address_, c.peer);
  }

  // Called with mu_ held; the threads joined here have already let go of it.
  void reap_finished() {
    for (auto it = clients_.begin(); it != clients_.end();) {
      if (!it->finished) {
        ++it;
        continue;
      }
      it->thread.join();
      it = clients_.erase(it);
    }
  }

  void serve_connection(Connection& c) {
    std::vector<std::byte> reply;  // header + payload, grown to the largest page asked for
    for (;;) {
      wire::RequestBytes bytes;
      if (Status status = net::read_full(c.fd.get(), bytes, net::kNoDeadline); !status) {
        log().debug("page server {}: {} left: {}", address_, c.peer, status.to_string());
        break;
      }
      auto request = wire::decode_page_request(bytes);
      if (!request) {
        reject(c, request.status());
        break;
      }
      if (!serve_page(c, *request, reply)) break;
    }
    std::lock_guard lock(mu_);
    c.fd.reset();
    c.finished = true;
    --active_;
  }

  bool serve_page(Connection& c, const wire::PageRequest& request, std::vector<std::byte>& reply) {
    const size_t length = wire::kReplyHeaderSize + request.page_size;
    if (reply.size() < length) reply.resize(length);
    const wire::ReplyHeaderBytes header = wire::encode_reply_header(request);
    std::memcpy(reply.data(), header.data(), header.size());
    std::span<std::byte> payload(reply.data() + header.size(), request.page_size);

    auto kind = source_->fetch(request.ipa, payload);
    if (!kind) {
      if (kind.status().code() == ErrorCode::kOutOfRange) {
        reject(c, kind.status());
      } else {
        log().error("page server {}: cannot read page {:#x} for {}: {}; closing the connection",
                    address_, request.ipa, c.peer, kind.status().to_string());
      }
      return false;
    }
    // v1 always sends the payload; the source may not have written a zero page.
    if (*kind == PageKind::kZero) std::memset(payload.data(), 0, payload.size());

    // Counted before sending, so that a client holding its reply sees it in stats().
    ++requests_;
    bytes_ += request.page_size;
    Status sent = net::write_full(c.fd.get(), std::span(reply).first(length),
                                  net::deadline_after(kReplyWriteTimeout));
    if (!sent) {
      log().debug("page server {}: reply to {} failed: {}", address_, c.peer, sent.to_string());
      return false;
    }
    return true;
  }

  void reject(const Connection& c, const Status& why) {
    ++bad_requests_;
    log().warn("page server {}: bad request from {}: {}; closing the connection", address_, c.peer,
               why.message());
  }

  const std::unique_ptr<PageSource> source_;
  net::Listener listener_;
  const std::string address_;
  const UniqueFd stop_event_;
  const int max_clients_;
  std::optional<FileIdentity> socket_file_;
  std::thread accept_thread_;

  std::mutex mu_;
  std::list<Connection> clients_;  // structure guarded by mu_; stable addresses

  std::mutex stop_mu_;
  bool stopped_ = false;  // guarded by stop_mu_

  std::atomic<uint64_t> connections_{0};
  std::atomic<uint64_t> active_{0};
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> bad_requests_{0};
};

Result<std::unique_ptr<PageServer>> PageServer::start(const PageServerOptions& options) {
  if (options.max_clients <= 0) {
    return invalid_argument(
        fmt::format("page server: max_clients must be positive, not {}", options.max_clients));
  }
  auto address = net::parse_socket_address(options.listen);
  if (!address) return address.status();
  auto source = open_file_page_source(options.mem_file, options.ram_start);
  if (!source) return source.status();
  UniqueFd stop_event(::eventfd(0, EFD_CLOEXEC));
  if (!stop_event) return io_error("page server: eventfd", errno);
  auto listener = net::listen_socket(*address);
  if (!listener) return listener.status();
  auto impl = std::make_unique<Impl>(std::move(*source), std::move(*listener),
                                     std::move(stop_event), options.max_clients);
  return std::unique_ptr<PageServer>(new PageServer(std::move(impl)));
}

PageServer::PageServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PageServer::~PageServer() = default;

const std::string& PageServer::address() const {
  return impl_->address();
}
PageServerStats PageServer::stats() const {
  return impl_->stats();
}
void PageServer::stop() {
  impl_->stop();
}

}  // namespace faultline
