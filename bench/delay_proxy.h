// A TCP proxy on loopback that stands in for a slow link: every chunk of bytes
// it reads, in either direction, is passed on half a round trip later. Chunks
// are pipelined (a delay, not a bandwidth limit), and bytes stay in order.
#pragma once

#include <chrono>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "faultline/status.h"
#include "faultline/unique_fd.h"
#include "net/socket_address.h"

namespace faultline::bench {

class DelayProxy {
 public:
  // Listens on tcp:127.0.0.1 (a free port) and forwards every connection to
  // `target` ("tcp:HOST:PORT"), adding `round_trip` to each request/reply pair.
  static Result<std::unique_ptr<DelayProxy>> start(const std::string& target,
                                                   std::chrono::nanoseconds round_trip);
  ~DelayProxy();  // cuts every connection and joins every thread
  DelayProxy(const DelayProxy&) = delete;
  DelayProxy& operator=(const DelayProxy&) = delete;

  std::string address() const { return listener_.address.to_string(); }

 private:
  struct Link;

  DelayProxy(net::Listener listener, net::SocketAddress target, std::chrono::nanoseconds one_way);
  void accept_loop();

  net::Listener listener_;
  net::SocketAddress target_;
  std::chrono::nanoseconds one_way_;
  UniqueFd stop_;
  std::thread accept_thread_;
  std::mutex mu_;
  std::list<std::unique_ptr<Link>> links_;  // guarded by mu_
};

}  // namespace faultline::bench
