// Pushed pages: checked where they arrived, handed to the sink, repaired.
#include "sources/network_push.h"

#include <fmt/format.h>

#include "core/log.h"
#include "protocol/page_codec.h"
#include "sources/network_connection.h"

namespace faultline {

PageSink* NetworkPageSource::Push::State::acquire() {
  std::lock_guard lock(mu);
  if (sink != nullptr) ++users;
  return sink;
}

void NetworkPageSource::Push::State::release() {
  {
    std::lock_guard lock(mu);
    --users;
  }
  idle.notify_all();
}

void NetworkPageSource::Push::State::detach() {
  std::unique_lock lock(mu);
  sink = nullptr;
  idle.wait(lock, [&] { return users == 0; });
}

namespace network {
namespace {

// Internal requests re-fetch pushed ranges that arrived corrupt.
constexpr uint64_t kRepairBit = uint64_t{1} << 63;

}  // namespace

PushReceiver::PushReceiver(SourceState& state, Connection& connection, const RemoteImage& image)
    : state_(state), connection_(connection), image_(image), buffer_(v2::kMaxRange) {}

bool PushReceiver::is_pushed(uint64_t id) {
  return id == 0 || (id & kRepairBit) != 0;
}

Result<std::shared_ptr<NetworkPageSource::Push::State>> PushReceiver::start(PageSink& sink) {
  {
    std::lock_guard lock(push_->mu);
    if (push_->started) {
      return Status(ErrorCode::kInvalidArgument, "start_push: the push was started already");
    }
    push_->started = true;
    push_->sink = &sink;
  }
  std::shared_ptr<net::Stream> stream;
  {
    std::lock_guard lock(state_.mu);
    stream = state_.stream;
  }
  // If the connection is down, the reconnection sends HAVE instead.
  if (stream) {
    if (Status s = send_have(*stream); !s) {
      log().debug("{}: HAVE not sent: {}", state_.description, s.to_string());
    }
  }
  return push_;
}

Status PushReceiver::send_have(net::Stream& stream) {
  PageSink* sink = push_->acquire();
  if (sink == nullptr) return Status::ok();
  Status sent = connection_.send_have(stream, image_, *sink);
  push_->release();
  return sent;
}

Status PushReceiver::on_pushed(net::Stream& stream, const v2::DataHeader& header,
                               std::span<const std::byte> payload) {
  // Raw bytes are checked where they lie and installed from there; the rest
  // are decoded into the buffer first.
  const bool raw = header.encoding == v2::Encoding::kRaw;
  std::span<const std::byte> bytes = raw ? payload : std::span(buffer_).first(header.length);
  Status decoded =
      raw ? v2::verify_raw_payload(header, payload)
          : v2::decode_payload(header, payload, std::span(buffer_).first(header.length), false);
  v2::Request again;
  {
    std::lock_guard lock(state_.mu);
    state_.stats.wire_bytes += payload.size();
    if ((header.id & kRepairBit) != 0) {
      if (repairs_.erase(header.id) == 0) {
        ++state_.stats.late_replies;
        return Status::ok();
      }
    }
    if (!decoded) {
      ++state_.stats.corrupt;
      // Fetch it again, into the sink like a pushed range.
      const uint64_t id = kRepairBit | state_.next_id++;
      repairs_.emplace(id, std::pair<uint64_t, uint32_t>{header.gpa, header.length});
      ++state_.stats.requests;
      log().warn("{}: pushed {}; fetching it again", state_.description, decoded.message());
      again = v2::Request{id, header.gpa, header.length};
    } else {
      state_.stats.pushed_bytes += header.length;
      if (header.encoding == v2::Encoding::kZero) state_.stats.zero_bytes += header.length;
    }
  }
  if (!decoded) {
    connection_.send_request(stream, again);
    return Status::ok();
  }
  PageSink* sink = push_->acquire();
  if (sink == nullptr) return Status::ok();  // nobody to hand it to: dropped
  const bool zero = header.encoding == v2::Encoding::kZero;
  Status installed =
      sink->install(header.gpa, header.length, zero ? std::span<const std::byte>() : bytes);
  push_->release();
  if (!installed) {
    log().warn("{}: pushed range [{:#x}, +{:#x}) not installed: {}", state_.description, header.gpa,
               header.length, installed.to_string());
  }
  return Status::ok();
}

void PushReceiver::unanswered(std::vector<v2::Request>& out) const {
  for (const auto& [id, range] : repairs_) out.push_back({id, range.first, range.second});
}

}  // namespace network
}  // namespace faultline
