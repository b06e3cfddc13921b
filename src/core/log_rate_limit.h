// Repeated log lines, limited: a peer that provokes the same line thousands of
// times a second gets a few of them and a count, not gigabytes of log.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "core/log.h"

namespace faultline {

struct LogRateLimit {
  uint64_t lines = 10;  // per key and interval
  std::chrono::milliseconds interval{1000};
};

// Decides, per key (the kind of line, not its text), which lines are written:
// at most `lines` in each interval. The first line written after some were
// held back is preceded by one saying how many.
class LogRateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  explicit LogRateLimiter(LogRateLimit limit = {}) : limit_(limit) {}

  struct Verdict {
    bool write = false;
    uint64_t suppressed = 0;  // lines of this key held back before this one (if written)
  };
  Verdict admit(std::string_view key, Clock::time_point now);

 private:
  struct Window {
    Clock::time_point start;
    uint64_t written = 0;
    uint64_t suppressed = 0;
  };

  const LogRateLimit limit_;
  std::mutex mu_;
  std::map<std::string, Window, std::less<>> windows_;  // guarded by mu_; keys are few
};

// The limiter log_limited uses (LogRateLimit's defaults).
LogRateLimiter& shared_log_rate_limiter();

// log().log(level, ...), unless lines of `key` have had their share lately.
template <typename... Args>
void log_limited(spdlog::level::level_enum level, std::string_view key,
                 fmt::format_string<Args...> format, Args&&... args) {
  const LogRateLimiter::Verdict verdict =
      shared_log_rate_limiter().admit(key, LogRateLimiter::Clock::now());
  if (!verdict.write) return;
  if (verdict.suppressed > 0) {
    log().log(level, "{}: {} more such lines were suppressed", key, verdict.suppressed);
  }
  log().log(level, format, std::forward<Args>(args)...);
}

}  // namespace faultline
