#include "support/raw_server.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace faultline::testing {

RawServer::RawServer(const std::string& listen, Behaviour behave) : behave_(std::move(behave)) {
  auto listener = net::listen_socket(*net::parse_socket_address(listen));
  EXPECT_TRUE(listener) << listener.status().to_string();
  if (!listener) return;
  listener_ = std::move(*listener);
  stop_.reset(::eventfd(0, EFD_CLOEXEC));
  thread_ = std::thread([this] { run(); });
}

RawServer::~RawServer() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  EXPECT_EQ(::write(stop_.get(), &one, sizeof(one)), 8);
  {
    std::lock_guard lock(mu_);
    if (current_ >= 0) ::shutdown(current_, SHUT_RDWR);
  }
  thread_.join();
}

void RawServer::run() {
  pollfd fds[2] = {{listener_.fd.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
  while (::poll(fds, 2, -1) >= 0 && fds[1].revents == 0) {
    UniqueFd fd(::accept4(listener_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) continue;
    {
      std::lock_guard lock(mu_);
      current_ = fd.get();
    }
    behave_(fd.get());
    std::lock_guard lock(mu_);
    current_ = -1;
  }
}

}  // namespace faultline::testing
