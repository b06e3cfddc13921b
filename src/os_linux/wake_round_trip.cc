#include "os_linux/wake_round_trip.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "faultline/unique_fd.h"

namespace faultline {
namespace {

bool wait_and_read(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 1000) != 1) return false;
  uint64_t value = 0;
  return ::read(fd, &value, sizeof value) == sizeof value;
}

bool signal(int fd) {
  const uint64_t one = 1;
  return ::write(fd, &one, sizeof one) == sizeof one;
}

uint64_t measure() {
  constexpr int kRounds = 48;
  UniqueFd ping(::eventfd(0, EFD_CLOEXEC));
  UniqueFd pong(::eventfd(0, EFD_CLOEXEC));
  if (!ping || !pong) return 0;
  std::thread peer([&] {
    for (int i = 0; i < kRounds; ++i) {
      if (!wait_and_read(ping.get()) || !signal(pong.get())) return;
    }
  });
  std::vector<uint64_t> samples;
  samples.reserve(kRounds);
  for (int i = 0; i < kRounds; ++i) {
    const auto start = std::chrono::steady_clock::now();
    if (!signal(ping.get()) || !wait_and_read(pong.get())) break;
    samples.push_back(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                std::chrono::steady_clock::now() - start)
                                                .count()));
  }
  peer.join();
  if (samples.empty()) return 0;
  const auto middle = samples.begin() + static_cast<std::ptrdiff_t>(samples.size() / 2);
  std::nth_element(samples.begin(), middle, samples.end());
  return *middle;
}

}  // namespace

uint64_t wake_round_trip_ns() {
  static std::once_flag once;
  static uint64_t measured = 0;
  std::call_once(once, [] { measured = measure(); });
  return measured;
}

}  // namespace faultline
