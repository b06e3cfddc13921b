#include "server/reply_budget.h"

namespace faultline {

bool ReplyBudget::Account::reserve(uint64_t bytes, const std::function<bool()>& abandoned) {
  std::unique_lock lock(budget_.mu_);
  const ReplyLimits& limits = budget_.limits_;
  budget_.cv_.wait(lock, [&] {
    return abandoned() || held_ == 0 ||
           (held_ + bytes <= limits.per_connection && budget_.held_ + bytes <= limits.total);
  });
  if (abandoned()) return false;
  held_ += bytes;
  budget_.held_ += bytes;
  return true;
}

void ReplyBudget::Account::release(uint64_t bytes) {
  if (bytes == 0) return;
  {
    std::lock_guard lock(budget_.mu_);
    held_ -= bytes;
    budget_.held_ -= bytes;
  }
  budget_.cv_.notify_all();
}

void ReplyBudget::wake() {
  { std::lock_guard lock(mu_); }
  cv_.notify_all();
}

uint64_t ReplyBudget::held() const {
  std::lock_guard lock(mu_);
  return held_;
}

}  // namespace faultline
