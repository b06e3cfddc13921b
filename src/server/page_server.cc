// `faultline serve-pages`: answers SocketPageSource requests from a snapshot
// memory file. One thread accepts; each connection has its own thread, so a
// slow or misbehaving client only ever stalls itself.
#include "faultline/page_server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

#include "core/log.h"
#include "core/log_rate_limit.h"
#include "faultline/page_source.h"
#include "faultline/unique_fd.h"
#include "net/connection_server.h"
#include "net/socket_address.h"
#include "net/socket_io.h"
#include "net/stream.h"
#include "net/stream_connect.h"
#include "net/tls.h"
#include "protocol/page_codec.h"
#include "protocol/v1_wire.h"
#include "server/reply_budget.h"
#include "server/v2_session.h"

namespace faultline {
namespace {

// A client that stops reading its replies must not hold its thread forever.
constexpr std::chrono::seconds kReplyWriteTimeout{30};
// A v1 reply is read and sent in pieces of at most this, whatever its page size.
constexpr uint64_t kV1Chunk = 64u << 10;

}  // namespace

class PageServer::Impl {
 public:
  Impl(ServedMemory memory, const PageServerOptions& options, v2::Encoding compression,
       std::shared_ptr<net::TlsContext> tls, net::Listener listener)
      : source_(std::move(memory.source)),
        tls_(std::move(tls)),
        listener_(std::move(listener)),
        address_(listener_.address.to_string()),
        max_clients_(options.max_clients),
        handshake_timeout_(options.handshake_timeout),
        idle_timeout_(options.idle_timeout),
        on_complete_(options.on_complete),
        replies_({options.connection_reply_limit, options.server_reply_limit}) {
    image_.source = source_.get();
    image_.ram_start = memory.ram_start;
    image_.image_size = memory.size;
    image_.page_size = static_cast<uint32_t>(kMinPageSize);
    image_.image_id = memory.image_id;
    image_.state = std::move(memory.state);
    image_.compression = compression;
    image_.push = options.push;
    image_.push_chunk = options.push_chunk;
    image_.handshake_timeout = options.handshake_timeout;
    image_.idle_timeout = options.idle_timeout;
    image_.max_bad_requests = options.max_bad_requests;
  }

  Status listen() {
    net::ConnectionServerOptions options;
    options.name = "page server " + address_;
    options.max_connections = static_cast<size_t>(max_clients_);
    options.serve = [this](const net::Connection& c) { serve_connection(c); };
    options.refused = [this](int, const std::string& peer, uint64_t active) {
      log_limited(spdlog::level::warn, "page server: refusing a connection",
                  "page server {}: refusing connection from {}: {} clients are being served "
                  "(max_clients {})",
                  address_, peer, active, max_clients_);
    };
    auto server = net::ConnectionServer::start(std::move(listener_.fd), std::move(options));
    if (!server) return server.status();
    server_ = std::move(*server);
    return Status::ok();
  }

  ~Impl() { stop(); }

  const std::string& address() const { return address_; }

  PageServerStats stats() const {
    PageServerStats s{server_->accepted(), server_->active(), requests_.load(), bytes_.load(),
                      bad_requests_.load() + v2_.bad_requests.load()};
    s.v2_sessions = v2_.sessions.load();
    s.pushed_bytes = v2_.pushed_bytes.load();
    s.demand_bytes = v2_.demand_bytes.load();
    s.wire_bytes = v2_.wire_bytes.load();
    s.zero_bytes = v2_.zero_bytes.load();
    s.push_remaining = v2_.push_remaining.load();
    s.completes = v2_.completes.load();
    s.queued_bytes = replies_.held();
    s.evicted = server_->evicted();
    return s;
  }

  void stop() {
    std::lock_guard stop_lock(stop_mu_);
    if (stopped_) return;
    if (server_) server_->stop();
    listener_.socket_file.remove();  // only the file this server bound, if still there
    stopped_ = true;
  }

 private:
  void serve_connection(const net::Connection& c) {
    if (tls_) {
      serve_tls(c);
    } else {
      serve_plain(c);
    }
  }

  // A stream's own copy of the socket: stop() shutting c.fd down ends it too.
  UniqueFd own_copy(const net::Connection& c) {
    UniqueFd own(::fcntl(c.fd, F_DUPFD_CLOEXEC, 0));
    if (!own) {
      log().error("page server {}: cannot serve {}: dup: {}", address_, c.peer,
                  std::strerror(errno));
    }
    return own;
  }

  // TLS carries v2 only: the handshake, then the magic, then the session.
  void serve_tls(const net::Connection& c) {
    UniqueFd own = own_copy(c);
    if (!own) return;
    auto stream = tls_->accept(std::move(own), net::deadline_after(handshake_timeout_));
    if (!stream) {
      ++bad_requests_;
      log_limited(spdlog::level::warn, "page server: failed TLS handshake",
                  "page server {}: {}: {}", address_, c.peer, stream.status().message());
      return;
    }
    std::array<std::byte, v2::kMagic.size()> magic;
    if (Status s = (*stream)->read_full(magic, net::deadline_after(handshake_timeout_)); !s) {
      log().debug("page server {}: {} left: {}", address_, c.peer, s.to_string());
      return;
    }
    if (magic != v2::kMagic) {
      ++bad_requests_;
      log_limited(spdlog::level::warn, "page server: not v2 over TLS",
                  "page server {}: {} does not speak protocol v2 (TLS carries only v2); closing",
                  address_, c.peer);
      return;
    }
    run_v2(c, **stream);
  }

  void serve_plain(const net::Connection& c) {
    std::vector<std::byte> chunk;  // grown to the largest piece of a reply needed so far
    v1::RequestBytes bytes;
    // A v2 client opens with the magic; a v1 request never starts so.
    auto head = std::span(bytes).first(v2::kMagic.size());
    const net::Deadline first_by = net::deadline_after(handshake_timeout_);
    if (!read_request_bytes(c, head, first_by)) return;
    if (std::equal(head.begin(), head.end(), v2::kMagic.begin())) return serve_v2(c);
    if (!read_request_bytes(c, std::span(bytes).subspan(head.size()), first_by)) return;
    for (;;) {
      auto request = v1::decode_page_request(bytes);
      if (!request) {
        reject(c, request.status());
        return;
      }
      if (!serve_page(c, *request, chunk)) return;
      if (!read_request_bytes(c, bytes, net::deadline_after(idle_timeout_))) return;
    }
  }

  // False (with a log line) when the client has gone or said nothing in time.
  bool read_request_bytes(const net::Connection& c, std::span<std::byte> bytes,
                          net::Deadline deadline) {
    if (Status status = net::read_full(c.fd, bytes, deadline); !status) {
      log().debug("page server {}: {} left: {}", address_, c.peer, status.to_string());
      return false;
    }
    return true;
  }

  void serve_v2(const net::Connection& c) {
    UniqueFd own = own_copy(c);
    if (!own) return;
    std::unique_ptr<net::Stream> stream = net::make_plain_stream(std::move(own));
    run_v2(c, *stream);
  }

  void run_v2(const net::Connection& c, net::Stream& stream) {
    Status ended = serve_v2_connection(stream, image_, v2_, replies_, c, on_complete_);
    if (ended.is_ok()) {
      log().debug("page server {}: v2 session with {} ended", address_, c.peer);
    } else if (ended.code() == ErrorCode::kTimeout) {
      log_limited(spdlog::level::info, "page server: idle v2 client",
                  "page server {}: v2 client {}: {}; closing the connection", address_, c.peer,
                  ended.message());
    } else if (ended.code() == ErrorCode::kProtocol || ended.code() == ErrorCode::kOutOfRange) {
      log_limited(spdlog::level::warn, "page server: bad v2 client",
                  "page server {}: bad v2 client {}: {}; closing the connection", address_, c.peer,
                  ended.message());
    } else {
      log().debug("page server {}: v2 session with {} ended: {}", address_, c.peer,
                  ended.to_string());
    }
  }

  // Sends the header, then the page in pieces of at most kV1Chunk, so that a
  // connection never holds more than one piece whatever page size it asks for.
  bool serve_page(const net::Connection& c, const v1::PageRequest& request,
                  std::vector<std::byte>& chunk) {
    const uint64_t piece = std::min(request.page_size, kV1Chunk);
    // The last piece first: a page that runs past the image is refused before
    // anything is sent.
    if (!fetch_piece(c, request.gpa + request.page_size - piece, piece, chunk)) return false;
    // A good request makes the connection established (before its reply, which
    // a client may take as the sign that it holds its slot).
    c.mark_established();
    // Counted before sending, so that a client holding its reply sees it in stats().
    ++requests_;
    bytes_ += request.page_size;
    const auto deadline = net::deadline_after(kReplyWriteTimeout);
    Status sent = net::write_full(c.fd, v1::encode_reply_header(request), deadline);
    for (uint64_t done = 0; sent && done < request.page_size; done += piece) {
      if (request.page_size > piece && !fetch_piece(c, request.gpa + done, piece, chunk)) {
        return false;
      }
      sent = net::write_full(c.fd, std::span(chunk).first(piece), deadline);
    }
    if (!sent) {
      log().debug("page server {}: reply to {} failed: {}", address_, c.peer, sent.to_string());
      return false;
    }
    return true;
  }

  // Reads [gpa, gpa + size) into the start of `chunk`; false (logged) if it cannot.
  bool fetch_piece(const net::Connection& c, Gpa gpa, uint64_t size,
                   std::vector<std::byte>& chunk) {
    if (chunk.size() < size) chunk.resize(size);
    auto piece = std::span(chunk).first(size);
    auto kind = source_->fetch(gpa, piece);
    if (!kind) {
      if (kind.status().code() == ErrorCode::kOutOfRange) {
        reject(c, kind.status());
      } else {
        log().error("page server {}: cannot read page {:#x} for {}: {}; closing the connection",
                    address_, gpa, c.peer, kind.status().to_string());
      }
      return false;
    }
    // v1 always sends the payload; the source may not have written a zero page.
    if (*kind == PageKind::kZero) std::memset(piece.data(), 0, piece.size());
    return true;
  }

  void reject(const net::Connection& c, const Status& why) {
    ++bad_requests_;
    log_limited(spdlog::level::warn, "page server: bad v1 request",
                "page server {}: bad request from {}: {}; closing the connection", address_, c.peer,
                why.message());
  }

  const std::unique_ptr<PageSource> source_;
  const std::shared_ptr<net::TlsContext> tls_;  // null: plain
  net::Listener listener_;  // its fd moves to server_; its socket file stays here
  const std::string address_;
  const int max_clients_;
  const std::chrono::milliseconds handshake_timeout_;
  const std::chrono::milliseconds idle_timeout_;
  const std::function<void()> on_complete_;
  ReplyBudget replies_;
  ServedImage image_;
  V2Counters v2_;
  std::unique_ptr<net::ConnectionServer> server_;

  std::mutex stop_mu_;
  bool stopped_ = false;  // guarded by stop_mu_

  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> bad_requests_{0};
};

Result<std::unique_ptr<PageServer>> PageServer::start(const PageServerOptions& options) {
  auto source = open_file_page_source(options.mem_file, options.ram_start);
  if (!source) return source.status();
  struct stat st {};
  if (::stat(options.mem_file.c_str(), &st) != 0) {
    return io_error(fmt::format("page server: stat {}", options.mem_file), errno);
  }
  ServedMemory memory;
  memory.source = std::move(*source);
  memory.ram_start = options.ram_start;
  // v2 serves whole pages; a partial last page stays reachable through v1.
  memory.size = static_cast<uint64_t>(st.st_size) & ~(kMinPageSize - 1);
  // The same file (not rewritten since) is the same image for a reconnecting client.
  memory.image_id = std::hash<std::string>{}(fmt::format(
      "{}:{}:{}:{}.{}", st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec));
  return start(options, std::move(memory));
}

Result<std::unique_ptr<PageServer>> PageServer::start(const PageServerOptions& options,
                                                      ServedMemory memory) {
  if (options.max_clients <= 0) {
    return invalid_argument(
        fmt::format("page server: max_clients must be positive, not {}", options.max_clients));
  }
  if (memory.source == nullptr || memory.size == 0 || memory.size % kMinPageSize != 0 ||
      memory.ram_start % kMinPageSize != 0) {
    return invalid_argument(fmt::format(
        "page server: memory to serve must be whole 4 KiB pages, not {:#x} bytes at {:#x}",
        memory.size, memory.ram_start));
  }
  if (memory.state.size() > v2::kMaxStateLength) {
    return invalid_argument(fmt::format("page server: state of {} bytes exceeds {}",
                                        memory.state.size(), v2::kMaxStateLength));
  }
  if (options.handshake_timeout.count() <= 0 || options.idle_timeout.count() <= 0) {
    return invalid_argument(fmt::format(
        "page server: the handshake timeout ({} ms) and idle timeout ({} ms) must be positive",
        options.handshake_timeout.count(), options.idle_timeout.count()));
  }
  if (options.connection_reply_limit == 0 || options.server_reply_limit == 0 ||
      options.max_bad_requests == 0) {
    return invalid_argument(
        "page server: the reply limits and the bad request limit must be positive");
  }
  if (options.push_chunk < kMinPageSize || options.push_chunk > v2::kMaxRange) {
    return invalid_argument(
        fmt::format("page server: push chunk {} outside [4 KiB, 2 MiB]", options.push_chunk));
  }
  const v2::Encoding compression = v2::encoding_of(options.compression);
  auto address = net::parse_socket_address(options.listen);
  if (!address) return address.status();
  std::shared_ptr<net::TlsContext> tls;
  const TlsOptions& t = options.tls;
  if (!t.cert_file.empty() || !t.key_file.empty() || !t.ca_file.empty()) {
    auto context = net::TlsContext::server(t);
    if (!context) return context.status();
    tls = std::move(*context);
  } else if (address->kind == net::SocketAddress::Kind::kTcp && !options.allow_plain_tcp) {
    return net::plain_tcp_refused(*address, "TlsOptions::cert_file and TlsOptions::key_file");
  }
  auto listener = net::listen_socket(*address);
  if (!listener) return listener.status();
  auto impl = std::make_unique<Impl>(std::move(memory), options, compression, std::move(tls),
                                     std::move(*listener));
  if (Status s = impl->listen(); !s) return s;
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
