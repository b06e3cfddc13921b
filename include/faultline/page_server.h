// The page server answering SocketPageSource: `faultline serve-pages`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "faultline/status.h"

namespace faultline {

struct PageServerOptions {
  std::string listen;      // "unix:PATH" or "tcp:HOST:PORT" (port 0 picks one)
  std::string mem_file;    // the snapshot memory file
  uint64_t ram_start = 0;  // guest-physical address of the file's byte 0
  int max_clients = 256;   // connections beyond this are refused with a log line
};

struct PageServerStats {
  uint64_t connections = 0;   // accepted over the server's life
  uint64_t active = 0;        // connected now
  uint64_t requests = 0;      // pages served
  uint64_t bytes = 0;         // payload bytes sent
  uint64_t bad_requests = 0;  // connections closed for a bad request
};

class PageServer {
 public:
  // Opens the file and binds the socket (Unix sockets are created 0600).
  static Result<std::unique_ptr<PageServer>> start(const PageServerOptions& options);
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
