// The page server answering SocketPageSource: `faultline serve-pages`.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "faultline/compression.h"
#include "faultline/page_source.h"
#include "faultline/status.h"
#include "faultline/tls_options.h"

namespace faultline {

struct PageServerOptions {
  std::string listen;      // "unix:PATH" or "tcp:HOST:PORT" (port 0 picks one)
  std::string mem_file;    // the snapshot memory file
  uint64_t ram_start = 0;  // guest-physical address of the file's byte 0
  // Connections served at once. When all are taken, a new one takes the slot
  // of the oldest that has not yet finished its handshake or had a request
  // served; only when every one has is it refused (with a log line).
  int max_clients = 256;

  // What one client can make the server hold:
  std::chrono::milliseconds handshake_timeout{10'000};  // for a v2 HELLO or a first v1 request
  std::chrono::milliseconds idle_timeout{300'000};      // nothing heard (and, v2, nothing sent)
  // Reply bytes queued for one v2 connection, and for all of them: beyond,
  // a connection's requests are left unread until its client reads replies.
  uint64_t connection_reply_limit = 8u << 20;
  uint64_t server_reply_limit = 256u << 20;
  uint32_t max_bad_requests = 32;  // v2 requests outside the image before a hang-up

  // Protocol v2 (the v1 wire shape keeps working on the same socket):
  Compression compression = Compression::kNone;  // for clients that accept it
  bool push = true;                              // push every page to clients that ask for it
  uint32_t push_chunk = 128u << 10;              // bytes per pushed frame
  // TLS (v2 only): our certificate chain and key (PEM); with ca_file, clients
  // must present a certificate signed by it (mutual authentication).
  TlsOptions tls;
  // Listening on TCP without TLS is refused unless this is set.
  bool allow_plain_tcp = false;
  // Called when a v2 client says it holds every page (COMPLETE).
  std::function<void()> on_complete;
};

// Guest memory to serve that is not a file: a migrating VM's RAM.
struct ServedMemory {
  std::unique_ptr<PageSource> source;
  uint64_t ram_start = 0;
  uint64_t size = 0;             // bytes, a multiple of 4 KiB
  uint64_t image_id = 0;         // identifies this image to reconnecting clients
  std::vector<std::byte> state;  // handed to v2 clients in the handshake
};

struct PageServerStats {
  uint64_t connections = 0;   // accepted over the server's life
  uint64_t active = 0;        // connected now
  uint64_t requests = 0;      // pages served
  uint64_t bytes = 0;         // payload bytes sent
  uint64_t bad_requests = 0;  // connections closed for a bad request
  // Protocol v2:
  uint64_t v2_sessions = 0;     // v2 connections accepted
  uint64_t pushed_bytes = 0;    // bytes pushed unasked
  uint64_t demand_bytes = 0;    // bytes sent in answer to v2 requests
  uint64_t wire_bytes = 0;      // v2 payload bytes on the wire, after compression
  uint64_t zero_bytes = 0;      // v2 bytes sent as a zero flag
  uint64_t push_remaining = 0;  // pages the newest pushing client still lacks
  uint64_t completes = 0;       // clients that said they hold everything
  uint64_t queued_bytes = 0;    // v2 reply bytes queued or being written now
  uint64_t evicted = 0;         // unproven connections closed to make room for new ones
};

class PageServer {
 public:
  // Opens the file and binds the socket (Unix sockets are created 0600).
  static Result<std::unique_ptr<PageServer>> start(const PageServerOptions& options);
  // Serves `memory` instead of options.mem_file (which is ignored).
  static Result<std::unique_ptr<PageServer>> start(const PageServerOptions& options,
                                                   ServedMemory memory);
  ~PageServer();  // stops and joins every thread
  PageServer(const PageServer&) = delete;
  PageServer& operator=(const PageServer&) = delete;

  // The address clients connect to, with the real port for "tcp:HOST:0".
  const std::string& address() const;
  PageServerStats stats() const;
  // Closes the listener and every connection; returns once all threads ended.
  void stop();

 private:
  class Impl;
  explicit PageServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace faultline
