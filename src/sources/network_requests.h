// The network source's request slots: a fixed number of fetches in flight,
// each with its id, waiting for its reply, asked for again when no reply came
// within a second (it may have been lost) or when the reply arrived corrupt.
// While the connection is down a fetch keeps waiting; recovery sends its
// request again or fails it.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "faultline/page_source.h"
#include "faultline/status.h"
#include "net/stream.h"
#include "protocol/frames.h"
#include "sources/network_source_state.h"

namespace faultline::network {

class Connection;

class RequestSlots {
 public:
  // `patience`: how long a fetch waits for its reply in all (reconnections
  // included) before it fails with kTimeout.
  RequestSlots(SourceState& state, Connection& connection, std::chrono::milliseconds patience);

  // Asks for [gpa, gpa + dest.size()) (at most one DATA frame's worth) and
  // waits for the reply to land in `dest`.
  Result<PageKind> fetch(Gpa gpa, std::span<std::byte> dest);

  // The reader's side. A DATA frame answering request `header.id`: decoded
  // into the waiting fetch's buffer, or asked for again when corrupt.
  Status on_reply(net::Stream& stream, const v2::DataHeader& header,
                  std::span<const std::byte> payload);
  // An ERROR frame for request `id`: that fetch fails.
  void on_error(uint64_t id, ErrorCode code, const std::string& message);

  // With state.mu held: fail every waiting fetch; the requests still waiting.
  void fail_waiting(const Status& why);
  void unanswered(std::vector<v2::Request>& out) const;

 private:
  enum class SlotState { kFree, kWaiting, kDone, kFailed };
  struct Slot {
    SlotState state = SlotState::kFree;
    uint64_t id = 0;
    Gpa gpa = 0;
    std::span<std::byte> dest;
    PageKind kind = PageKind::kData;
    Status error;
    bool filling = false;  // the reader is writing into dest
    std::condition_variable cv;
  };
  static constexpr size_t kSlots = 64;

  Slot* find(uint64_t id);

  SourceState& state_;
  Connection& connection_;
  const std::chrono::milliseconds patience_;
  std::array<Slot, kSlots> slots_;  // under state_.mu
};

}  // namespace faultline::network
