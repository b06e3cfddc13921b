#include "core/log_rate_limit.h"

namespace faultline {

LogRateLimiter::Verdict LogRateLimiter::admit(std::string_view key, Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = windows_.find(key);
  if (it == windows_.end()) it = windows_.emplace(std::string(key), Window{now}).first;
  Window& window = it->second;
  if (now - window.start >= limit_.interval) {
    window.start = now;
    window.written = 0;
  }
  if (window.written >= limit_.lines) {
    ++window.suppressed;
    return {};
  }
  ++window.written;
  const uint64_t suppressed = window.suppressed;
  window.suppressed = 0;
  return {true, suppressed};
}

LogRateLimiter& shared_log_rate_limiter() {
  static LogRateLimiter limiter;
  return limiter;
}

}  // namespace faultline
