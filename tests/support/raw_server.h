// A socket server written with raw sockets, for peers that misbehave on purpose.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "faultline/unique_fd.h"
#include "net/socket_address.h"

namespace faultline::testing {

// A server that accepts connections one at a time and hands each to `behave`.
class RawServer {
 public:
  using Behaviour = std::function<void(int fd)>;

  RawServer(const std::string& listen, Behaviour behave);
  ~RawServer();
  RawServer(const RawServer&) = delete;
  RawServer& operator=(const RawServer&) = delete;

  std::string address() const { return listener_.address.to_string(); }

 private:
  void run();

  Behaviour behave_;
  net::Listener listener_;
  UniqueFd stop_;
  std::thread thread_;
  std::mutex mu_;
  int current_ = -1;  // guarded by mu_
};

}  // namespace faultline::testing
