// Bytes of replies the server owes its clients, bounded per connection and
// over the whole server. A connection whose client does not read its replies
// stops having its requests read (they back up in the client's socket)
// instead of growing a queue without end.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>

namespace faultline {

struct ReplyLimits {
  uint64_t per_connection = 8u << 20;
  uint64_t total = 256u << 20;
};

class ReplyBudget {
 public:
  explicit ReplyBudget(ReplyLimits limits) : limits_(limits) {}

  // One connection's share; gives back what it still holds when destroyed.
  class Account {
   public:
    explicit Account(ReplyBudget& budget) : budget_(budget) {}
    ~Account() { release(held_); }
    Account(const Account&) = delete;
    Account& operator=(const Account&) = delete;

    // Waits until `bytes` more fit both this connection's limit and the
    // server's, or `abandoned()` (checked whenever wake() is called) says to
    // stop: false then. A connection holding nothing is always let through,
    // so every connection makes progress whatever the others hold.
    bool reserve(uint64_t bytes, const std::function<bool()>& abandoned);
    void release(uint64_t bytes);

   private:
    ReplyBudget& budget_;
    uint64_t held_ = 0;  // guarded by budget_.mu_
  };

  // Wakes every reserve() to check its abandoned() again.
  void wake();
  // Bytes held over all connections now.
  uint64_t held() const;

 private:
  const ReplyLimits limits_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t held_ = 0;  // guarded by mu_
};

}  // namespace faultline
