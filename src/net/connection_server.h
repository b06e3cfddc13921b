// A thread-per-connection server: one thread accepts, each connection is
// served on a thread of its own, so a slow or misbehaving client only ever
// stalls itself. The page server and the Firecracker handler both use it.
//
// A connection is unproven until its handler marks it established (its
// handshake done, a first request served). When every slot is taken, a new
// connection takes the slot of the oldest unproven one, which is shut down
// (as nginx drops idle keep-alive connections when it runs out): clients that
// connect and say nothing, or send garbage slowly, cannot lock out one that
// has something to say. Only established connections make the server refuse.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "faultline/status.h"
#include "faultline/unique_fd.h"

namespace faultline::net {

// One accepted connection, as its handler sees it.
struct Connection {
  uint64_t id = 0;   // 1, 2, ... in the order connections were accepted
  int fd = -1;       // owned by the server: closed once the handler returns
  std::string peer;  // for log lines
  int stop_fd = -1;  // readable once the server stops: for handlers that wait on more than fd
  // Marks the connection established: it no longer gives way to a newcomer.
  // Idempotent; callable from the handler's threads.
  std::function<void()> mark_established;
};

struct ConnectionServerOptions {
  std::string name;  // starts every log line, e.g. "page server unix:/run/p.sock"
  size_t max_connections = 64;
  // Serves one connection on its own thread; the connection ends when it returns.
  std::function<void(const Connection&)> serve;
  // Called on the accept thread for a connection refused because
  // max_connections established ones are being served (`active` of them); it
  // is closed after.
  std::function<void(int fd, const std::string& peer, uint64_t active)> refused;
};

class ConnectionServer {
 public:
  // Accepts on `listener` (a listening socket) until stop().
  static Result<std::unique_ptr<ConnectionServer>> start(UniqueFd listener,
                                                         ConnectionServerOptions options);
  ~ConnectionServer();  // stops
  ConnectionServer(const ConnectionServer&) = delete;
  ConnectionServer& operator=(const ConnectionServer&) = delete;

  // Closes the listener, shuts every connection down (waking handlers blocked
  // on it) and joins every thread. Prompt and idempotent; never call it from a
  // handler, which it would wait for.
  void stop();

  // Connections accepted (not refused) so far; counted before their handler runs.
  uint64_t accepted() const;
  // Connections whose handler has not returned yet.
  uint64_t active() const;
  // Unproven connections shut down to make room for a new one.
  uint64_t evicted() const;

 private:
  class Impl;
  explicit ConnectionServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace faultline::net
