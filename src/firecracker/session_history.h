// The handler's memory of sessions that have ended, refused ones included:
// the last few, each with its final counters, how long it ran and how it
// ended, for `faultline stats`. Bounded, so a long-running handler does not
// grow with the number of VMs it has served.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

namespace faultline::firecracker {

class SessionHistory {
 public:
  static constexpr size_t kDefaultLimit = 64;
  explicit SessionHistory(size_t limit = kDefaultLimit) : limit_(limit) {}

  // `summary` is the session's stats (or what a refusal knew), to which
  // "ended" (how) is added; the oldest entry goes once `limit` are kept.
  void add(nlohmann::ordered_json summary, const std::string& how_it_ended);
  // Oldest first.
  nlohmann::ordered_json to_json() const;
  // Entries no longer kept.
  uint64_t forgotten() const;

 private:
  const size_t limit_;
  mutable std::mutex mu_;
  std::deque<nlohmann::ordered_json> ended_;  // guarded by mu_
  uint64_t forgotten_ = 0;                    // guarded by mu_
};

}  // namespace faultline::firecracker
