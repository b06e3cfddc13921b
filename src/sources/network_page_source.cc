// The v2 client. One connection carries every request; a reader thread owns
// the receiving side (replies to waiting fetches, pushed pages to the sink,
// reconnection); fetching threads send their own requests. The parts are
// listed in network_source_state.h.
#include "faultline/network_page_source.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "core/log.h"
#include "net/socket_address.h"
#include "net/stream.h"
#include "protocol/frames.h"
#include "protocol/page_codec.h"
#include "sources/network_connection.h"
#include "sources/network_push.h"
#include "sources/network_requests.h"
#include "sources/network_source_state.h"

namespace faultline {

using network::kBodyTimeout;

NetworkPageSource::Push::Push(std::shared_ptr<State> state) : state_(std::move(state)) {}
NetworkPageSource::Push::~Push() {
  state_->detach();
}

class NetworkPageSource::Impl {
 public:
  Impl(net::SocketAddress address, NetworkSourceOptions options)
      : options_(std::move(options)),
        state_(fmt::format("page server {} (v2)", address.to_string())),
        connection_(state_, std::move(address), options_),
        // A reply may wait out a reconnection, but never forever.
        slots_(state_, connection_,
               options_.reconnect_for + options_.connect_timeout +
                   std::chrono::duration_cast<std::chrono::milliseconds>(kBodyTimeout)),
        push_(state_, connection_, image_) {}

  ~Impl() {
    {
      std::lock_guard lock(state_.mu);
      state_.stopping = true;
      if (state_.stream) state_.stream->shutdown();
    }
    state_.cv.notify_all();
    if (reader_.joinable()) reader_.join();
  }

  Status start() {
    auto connected = connection_.open();
    if (!connected) return connected.status();
    image_ = std::move(connected->image);
    {
      std::lock_guard lock(state_.mu);
      state_.stream = std::move(connected->stream);
    }
    reader_ = std::thread([this] { reader_loop(); });
    return Status::ok();
  }

  const std::string& describe() const { return state_.description; }

  const RemoteImage& image() const { return image_; }

  Result<PageKind> fetch(Gpa gpa, std::span<std::byte> dest) {
    if (Status s = v2::check_range(gpa, dest.size() > 0 ? dest.size() : 1, image_.page_size,
                                   image_.ram_start, image_.size, UINT32_MAX);
        !s) {
      return Status(
          s.code() == ErrorCode::kOutOfRange ? ErrorCode::kOutOfRange : ErrorCode::kInvalidArgument,
          fmt::format("{}: {}", describe(), s.message()));
    }
    // Larger ranges go as several requests, one after the other.
    bool all_zero = true;
    for (uint64_t done = 0; done < dest.size(); done += v2::kMaxRange) {
      const auto part = dest.subspan(done, std::min<size_t>(v2::kMaxRange, dest.size() - done));
      auto kind = slots_.fetch(gpa + done, part);
      if (!kind) return kind.status();
      if (*kind == PageKind::kData) {
        if (all_zero && done > 0) std::memset(dest.data(), 0, done);
        all_zero = false;
      } else if (!all_zero) {
        std::memset(part.data(), 0, part.size());
      }
    }
    return all_zero ? PageKind::kZero : PageKind::kData;
  }

  Result<std::shared_ptr<Push::State>> start_push(PageSink& sink) {
    if (!options_.push) {
      return Status(ErrorCode::kInvalidArgument, "start_push: the source was not opened with push");
    }
    return push_.start(sink);
  }

  Status complete() {
    std::shared_ptr<net::Stream> stream;
    {
      std::lock_guard lock(state_.mu);
      stream = state_.stream;
    }
    if (!stream) return {ErrorCode::kUnavailable, fmt::format("{}: not connected", describe())};
    {
      // The server may go away as soon as it reads COMPLETE: that is no
      // reason to reconnect, so say so before sending it.
      std::lock_guard lock(state_.mu);
      state_.completed = true;
    }
    Status sent = connection_.send_complete(*stream);
    if (!sent.is_ok()) {
      std::lock_guard lock(state_.mu);
      state_.completed = false;
    }
    return sent;
  }

  NetworkSourceStats stats() const {
    std::lock_guard lock(state_.mu);
    return state_.stats;
  }

 private:
  void reader_loop() {
    std::vector<std::byte> body;
    for (;;) {
      std::shared_ptr<net::Stream> stream;
      {
        std::lock_guard lock(state_.mu);
        if (state_.stopping) return;
        stream = state_.stream;
      }
      if (!stream) {
        if (!connection_.reconnect(image_, slots_, push_)) return;
        continue;
      }
      Status s = read_one(*stream, body);
      if (s.is_ok()) continue;
      std::lock_guard lock(state_.mu);
      if (state_.stopping) return;
      if (state_.completed) {
        log().debug("{}: the server closed after COMPLETE", describe());
        state_.failed = Status(ErrorCode::kUnavailable, describe() + ": the migration is complete");
        slots_.fail_waiting(state_.failed);
        state_.stream.reset();
        return;
      }
      log().warn("{}: connection lost: {}; reconnecting", describe(), s.to_string());
      stream->shutdown();
      state_.stream.reset();
    }
  }

  Status read_one(net::Stream& stream, std::vector<std::byte>& body) {
    v2::FrameHeaderBytes header_bytes;
    if (Status s = stream.read_full(header_bytes, net::kNoDeadline); !s) return s;
    auto header = v2::decode_frame_header(header_bytes);
    if (!header) return header.status();
    body.resize(header->body_length);
    if (Status s = stream.read_full(body, net::deadline_after(kBodyTimeout)); !s) return s;
    switch (header->type) {
      case v2::FrameType::kData:
        return on_data(stream, body);
      case v2::FrameType::kError: {
        auto error = v2::decode_error(body);
        if (!error) return error.status();
        if (error->id == 0) {
          return Status(ErrorCode::kProtocol, "server reported: " + error->message);
        }
        slots_.on_error(error->id, error->code, error->message);
        return Status::ok();
      }
      case v2::FrameType::kPushDone: {
        std::lock_guard lock(state_.mu);
        state_.stats.push_done = true;
        return Status::ok();
      }
      default:
        return Status(ErrorCode::kProtocol, fmt::format("unexpected frame type {} from the server",
                                                        static_cast<int>(header->type)));
    }
  }

  Status on_data(net::Stream& stream, std::span<const std::byte> body) {
    auto header = v2::decode_data_prefix(body);
    if (!header) return header.status();
    if (Status s = v2::check_range(header->gpa, header->length, image_.page_size, image_.ram_start,
                                   image_.size, v2::kMaxRange);
        !s) {
      return Status(ErrorCode::kProtocol, "DATA: " + s.message());
    }
    const auto payload = body.subspan(v2::kDataPrefixSize);
    if (network::PushReceiver::is_pushed(header->id)) {
      return push_.on_pushed(stream, *header, payload);
    }
    return slots_.on_reply(stream, *header, payload);
  }

  const NetworkSourceOptions options_;
  network::SourceState state_;
  RemoteImage image_;  // known once start() connected; fixed from then on
  network::Connection connection_;
  network::RequestSlots slots_;
  network::PushReceiver push_;
  std::thread reader_;
};

Result<std::unique_ptr<NetworkPageSource>> NetworkPageSource::connect(
    const std::string& address, NetworkSourceOptions options) {
  auto parsed = net::parse_socket_address(address);
  if (!parsed) return parsed.status();
  auto impl = std::make_unique<Impl>(*parsed, std::move(options));
  if (Status s = impl->start(); !s) return s;
  return std::unique_ptr<NetworkPageSource>(new NetworkPageSource(std::move(impl)));
}

NetworkPageSource::NetworkPageSource(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NetworkPageSource::~NetworkPageSource() = default;
Result<PageKind> NetworkPageSource::fetch(Gpa gpa, std::span<std::byte> dest) {
  return impl_->fetch(gpa, dest);
}
std::string NetworkPageSource::describe() const {
  return impl_->describe();
}
const RemoteImage& NetworkPageSource::image() const {
  return impl_->image();
}
Result<std::unique_ptr<NetworkPageSource::Push>> NetworkPageSource::start_push(PageSink& sink) {
  auto state = impl_->start_push(sink);
  if (!state) return state.status();
  return std::unique_ptr<Push>(new Push(std::move(*state)));
}
Status NetworkPageSource::complete() {
  return impl_->complete();
}
NetworkSourceStats NetworkPageSource::stats() const {
  return impl_->stats();
}

}  // namespace faultline
