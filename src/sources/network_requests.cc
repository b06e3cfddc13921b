// Fetches in flight: claiming a slot, waiting for the reply, re-sending.
#include "sources/network_requests.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/log.h"
#include "protocol/page_codec.h"
#include "sources/network_connection.h"

namespace faultline::network {
namespace {

// A request unanswered this long is sent again (the reply may have been lost).
constexpr std::chrono::milliseconds kResendAfter{1000};

}  // namespace

RequestSlots::RequestSlots(SourceState& state, Connection& connection,
                           std::chrono::milliseconds patience)
    : state_(state), connection_(connection), patience_(patience) {}

Result<PageKind> RequestSlots::fetch(Gpa gpa, std::span<std::byte> dest) {
  const std::string& describe = state_.description;
  std::unique_lock lock(state_.mu);
  Slot* slot = nullptr;
  for (;;) {
    if (state_.stopping) return Status(ErrorCode::kShutdown, describe + ": closing");
    for (Slot& s : slots_) {
      if (s.state == SlotState::kFree) {
        slot = &s;
        break;
      }
    }
    if (slot != nullptr) break;
    state_.cv.wait(lock);
  }
  if (!state_.failed.is_ok()) return state_.failed;
  slot->state = SlotState::kWaiting;
  slot->id = state_.next_id++;
  slot->gpa = gpa;
  slot->dest = dest;
  slot->error = Status::ok();
  const v2::Request request{slot->id, gpa, static_cast<uint32_t>(dest.size())};
  std::shared_ptr<net::Stream> stream = state_.stream;
  ++state_.stats.requests;
  lock.unlock();
  // A failed send is the reader's business: it reconnects and sends again.
  if (stream) connection_.send_request(*stream, request);
  lock.lock();
  // A reply may wait out a reconnection, but never forever; a request or
  // reply lost on the way (a corrupted id) is asked for again.
  const auto deadline = std::chrono::steady_clock::now() + patience_;
  for (;;) {
    const auto resend_at = std::min(deadline, std::chrono::steady_clock::now() + kResendAfter);
    if (slot->cv.wait_until(lock, resend_at, [&] {
          return slot->state != SlotState::kWaiting || state_.stopping;
        })) {
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      slot->state = SlotState::kFailed;
      slot->error = Status(
          ErrorCode::kTimeout,
          fmt::format("{}: no reply for [{:#x}, +{:#x}) in time", describe, gpa, dest.size()));
      break;
    }
    std::shared_ptr<net::Stream> now = state_.stream;
    if (!now || slot->filling) continue;
    ++state_.stats.requests;
    ++state_.stats.resent;
    lock.unlock();
    connection_.send_request(*now, request);
    lock.lock();
  }
  Result<PageKind> result = slot->state == SlotState::kDone ? Result<PageKind>(slot->kind)
                            : slot->state == SlotState::kFailed
                                ? Result<PageKind>(slot->error)
                                : Result<PageKind>(Status(ErrorCode::kShutdown, "closing"));
  while (slot->filling) slot->cv.wait(lock);
  if (result.is_ok()) state_.stats.requested_bytes += dest.size();
  slot->state = SlotState::kFree;
  slot->dest = {};
  state_.cv.notify_all();
  return result;
}

Status RequestSlots::on_reply(net::Stream& stream, const v2::DataHeader& header,
                              std::span<const std::byte> payload) {
  std::unique_lock lock(state_.mu);
  Slot* slot = find(header.id);
  if (slot == nullptr) {
    ++state_.stats.late_replies;
    return Status::ok();
  }
  if (slot->gpa != header.gpa || slot->dest.size() != header.length) {
    return Status(ErrorCode::kProtocol,
                  fmt::format("reply {} is for [{:#x}, +{:#x}), the request was [{:#x}, +{:#x})",
                              header.id, header.gpa, header.length, slot->gpa, slot->dest.size()));
  }
  slot->filling = true;
  lock.unlock();
  Status decoded = v2::decode_payload(header, payload, slot->dest, false);
  lock.lock();
  slot->filling = false;
  state_.stats.wire_bytes += payload.size();
  if (!decoded) {
    ++state_.stats.corrupt;
    log().warn("{}: {}; fetching it again", state_.description, decoded.message());
    const v2::Request again{slot->id, slot->gpa, static_cast<uint32_t>(slot->dest.size())};
    ++state_.stats.requests;
    slot->cv.notify_all();
    lock.unlock();
    connection_.send_request(stream, again);
    return Status::ok();
  }
  if (header.encoding == v2::Encoding::kZero) state_.stats.zero_bytes += header.length;
  slot->kind = header.encoding == v2::Encoding::kZero ? PageKind::kZero : PageKind::kData;
  slot->state = SlotState::kDone;
  slot->cv.notify_all();
  return Status::ok();
}

void RequestSlots::on_error(uint64_t id, ErrorCode code, const std::string& message) {
  std::lock_guard lock(state_.mu);
  if (Slot* slot = find(id)) {
    slot->state = SlotState::kFailed;
    // Only "not in the image" is permanent; anything else may pass.
    slot->error =
        Status(code == ErrorCode::kOutOfRange ? ErrorCode::kOutOfRange : ErrorCode::kUnavailable,
               fmt::format("{}: {}", state_.description, message));
    slot->cv.notify_all();
  }
}

void RequestSlots::fail_waiting(const Status& why) {
  for (Slot& slot : slots_) {
    if (slot.state == SlotState::kWaiting) {
      slot.state = SlotState::kFailed;
      slot.error = why;
      slot.cv.notify_all();
    }
  }
}

void RequestSlots::unanswered(std::vector<v2::Request>& out) const {
  for (const Slot& slot : slots_) {
    if (slot.state == SlotState::kWaiting) {
      out.push_back({slot.id, slot.gpa, static_cast<uint32_t>(slot.dest.size())});
    }
  }
}

RequestSlots::Slot* RequestSlots::find(uint64_t id) {
  for (Slot& slot : slots_) {
    if (slot.state == SlotState::kWaiting && slot.id == id) return &slot;
  }
  return nullptr;
}

}  // namespace faultline::network
