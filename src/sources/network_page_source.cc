// The v2 client. One connection carries every request; a reader thread owns
// the receiving side (replies to waiting fetches, pushed pages to the sink,
// reconnection); fetching threads send their own requests.
#include "faultline/network_page_source.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "core/log.h"
#include "net/socket_address.h"
#include "net/stream.h"
#include "net/stream_connect.h"
#include "net/tls.h"
#include "protocol/frames.h"
#include "protocol/page_codec.h"

namespace faultline {
namespace {

constexpr size_t kSlots = 64;
constexpr std::chrono::seconds kHandshakeTimeout{10};
constexpr std::chrono::seconds kBodyTimeout{30};
constexpr std::chrono::seconds kWriteTimeout{10};
constexpr std::chrono::milliseconds kFirstBackoff{20};
constexpr std::chrono::milliseconds kMaxBackoff{1000};
// A request unanswered this long is sent again (the reply may have been lost).
constexpr std::chrono::milliseconds kResendAfter{1000};
// Internal requests re-fetch pushed ranges that arrived corrupt.
constexpr uint64_t kRepairBit = uint64_t{1} << 63;

}  // namespace

// The sink pushed pages are handed to, shared by the source's reader and the
// Push that ends the hand-over, so either may be destroyed first.
struct NetworkPageSource::Push::State {
  // The sink, counted as in use until release(); null when there is none.
  PageSink* acquire() {
    std::lock_guard lock(mu);
    if (sink != nullptr) ++users;
    return sink;
  }
  void release() {
    {
      std::lock_guard lock(mu);
      --users;
    }
    idle.notify_all();
  }
  // No sink from now on; returns once no hand-over is in progress.
  void detach() {
    std::unique_lock lock(mu);
    sink = nullptr;
    idle.wait(lock, [&] { return users == 0; });
  }

  std::mutex mu;
  std::condition_variable idle;
  PageSink* sink = nullptr;
  bool started = false;  // start_push was called (once per source)
  int users = 0;         // hand-overs to sink in progress
};

NetworkPageSource::Push::Push(std::shared_ptr<State> state) : state_(std::move(state)) {}
NetworkPageSource::Push::~Push() {
  state_->detach();
}

class NetworkPageSource::Impl {
 public:
  Impl(net::SocketAddress address, NetworkSourceOptions options)
      : address_(std::move(address)), options_(std::move(options)) {}

  ~Impl() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      if (stream_) stream_->shutdown();
    }
    cv_.notify_all();
    if (reader_.joinable()) reader_.join();
  }

  Status start() {
    accepted_ = v2::encoding_bit(v2::Encoding::kRaw) |
                v2::encoding_bit(v2::encoding_of(options_.compression));
    const TlsOptions& t = options_.tls;
    if (!t.ca_file.empty() || !t.cert_file.empty() || !t.key_file.empty()) {
      auto context = net::TlsContext::client(t);
      if (!context) return context.status();
      tls_ = std::move(*context);
    }
    auto connected = connect_once();
    if (!connected) return connected.status();
    image_ = std::move(connected->image);
    pages_ = image_.size / image_.page_size;
    {
      std::lock_guard lock(mu_);
      stream_ = std::move(connected->stream);
    }
    push_buffer_.resize(v2::kMaxRange);
    reader_ = std::thread([this] { reader_loop(); });
    return Status::ok();
  }

  std::string describe() const { return fmt::format("page server {} (v2)", address_.to_string()); }

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
      auto kind = fetch_one(gpa + done, part);
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
      std::lock_guard lock(mu_);
      stream = stream_;
    }
    // If the connection is down, the reconnection sends HAVE instead.
    if (stream) {
      if (Status s = send_have(*stream); !s) {
        log().debug("{}: HAVE not sent: {}", describe(), s.to_string());
      }
    }
    return push_;
  }

  Status complete() {
    std::shared_ptr<net::Stream> stream;
    {
      std::lock_guard lock(mu_);
      stream = stream_;
    }
    if (!stream) return {ErrorCode::kUnavailable, fmt::format("{}: not connected", describe())};
    {
      // The server may go away as soon as it reads COMPLETE: that is no
      // reason to reconnect, so say so before sending it.
      std::lock_guard lock(mu_);
      completed_ = true;
    }
    std::lock_guard write_lock(write_mu_);
    Status sent = stream->write_full(v2::encode_empty(v2::FrameType::kComplete),
                                     net::deadline_after(kWriteTimeout));
    if (!sent.is_ok()) {
      std::lock_guard lock(mu_);
      completed_ = false;
    }
    return sent;
  }

  NetworkSourceStats stats() const {
    std::lock_guard lock(mu_);
    return stats_;
  }

 private:
  struct Connected {
    std::shared_ptr<net::Stream> stream;
    RemoteImage image;
  };

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

  Result<Connected> connect_once() {
    auto stream = net::connect_stream(address_, tls_.get(), options_.tls.server_name,
                                      options_.allow_plain_tcp, options_.connect_timeout);
    if (!stream) return stream.status();
    std::shared_ptr<net::Stream> s = std::move(*stream);
    v2::Hello hello;
    hello.accepted_encodings = accepted_;
    hello.want_push = options_.push;
    const auto deadline = net::deadline_after(kHandshakeTimeout);
    if (Status st = s->write_full(v2::kMagic, deadline); !st) return st;
    if (Status st = s->write_full(v2::encode(hello), deadline); !st) return st;
    v2::FrameHeaderBytes header_bytes;
    if (Status st = s->read_full(header_bytes, deadline); !st) return st;
    auto header = v2::decode_frame_header(header_bytes);
    if (!header) return header.status();
    std::vector<std::byte> body(header->body_length);
    if (Status st = s->read_full(body, deadline); !st) return st;
    if (header->type == v2::FrameType::kError) {
      auto error = v2::decode_error(body);
      if (!error) return error.status();
      return Status(error->code, fmt::format("{} refused: {}", describe(), error->message));
    }
    if (header->type != v2::FrameType::kWelcome) {
      return Status(ErrorCode::kProtocol, fmt::format("{}: expected WELCOME, got frame type {}",
                                                      describe(), static_cast<int>(header->type)));
    }
    auto welcome = v2::decode_welcome(body);
    if (!welcome) {
      return Status(ErrorCode::kProtocol,
                    fmt::format("{}: {}", describe(), welcome.status().message()));
    }
    if ((accepted_ & v2::encoding_bit(welcome->encoding)) == 0) {
      return Status(ErrorCode::kProtocol,
                    fmt::format("{}: server chose {} compression, which was not offered",
                                describe(), v2::compression_name(welcome->encoding)));
    }
    Connected c;
    c.stream = std::move(s);
    c.image.ram_start = welcome->ram_start;
    c.image.size = welcome->image_size;
    c.image.page_size = welcome->page_size;
    c.image.image_id = welcome->image_id;
    c.image.state = std::move(welcome->state);
    return c;
  }

  Result<PageKind> fetch_one(Gpa gpa, std::span<std::byte> dest) {
    std::unique_lock lock(mu_);
    Slot* slot = nullptr;
    for (;;) {
      if (stopping_) return Status(ErrorCode::kShutdown, describe() + ": closing");
      for (Slot& s : slots_) {
        if (s.state == SlotState::kFree) {
          slot = &s;
          break;
        }
      }
      if (slot != nullptr) break;
      cv_.wait(lock);
    }
    if (!failed_.is_ok()) return failed_;
    slot->state = SlotState::kWaiting;
    slot->id = next_id_++;
    slot->gpa = gpa;
    slot->dest = dest;
    slot->error = Status::ok();
    const v2::Request request{slot->id, gpa, static_cast<uint32_t>(dest.size())};
    std::shared_ptr<net::Stream> stream = stream_;
    ++stats_.requests;
    lock.unlock();
    // A failed send is the reader's business: it reconnects and sends again.
    if (stream) send_request(*stream, request);
    lock.lock();
    // A reply may wait out a reconnection, but never forever; a request or
    // reply lost on the way (a corrupted id) is asked for again.
    const auto deadline = std::chrono::steady_clock::now() + options_.reconnect_for +
                          options_.connect_timeout + kBodyTimeout;
    for (;;) {
      const auto resend_at = std::min(deadline, std::chrono::steady_clock::now() + kResendAfter);
      if (slot->cv.wait_until(lock, resend_at,
                              [&] { return slot->state != SlotState::kWaiting || stopping_; })) {
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        slot->state = SlotState::kFailed;
        slot->error = Status(
            ErrorCode::kTimeout,
            fmt::format("{}: no reply for [{:#x}, +{:#x}) in time", describe(), gpa, dest.size()));
        break;
      }
      std::shared_ptr<net::Stream> now = stream_;
      if (!now || slot->filling) continue;
      ++stats_.requests;
      ++stats_.resent;
      lock.unlock();
      send_request(*now, request);
      lock.lock();
    }
    Result<PageKind> result = slot->state == SlotState::kDone ? Result<PageKind>(slot->kind)
                              : slot->state == SlotState::kFailed
                                  ? Result<PageKind>(slot->error)
                                  : Result<PageKind>(Status(ErrorCode::kShutdown, "closing"));
    while (slot->filling) slot->cv.wait(lock);
    if (result.is_ok()) stats_.requested_bytes += dest.size();
    slot->state = SlotState::kFree;
    slot->dest = {};
    cv_.notify_all();
    return result;
  }

  void send_request(net::Stream& stream, const v2::Request& request) {
    std::lock_guard write_lock(write_mu_);
    (void)stream.write_full(v2::encode(request), net::deadline_after(kWriteTimeout));
  }

  // Tells the server what the sink holds, then that pushing may begin.
  Status send_have(net::Stream& stream) {
    PageSink* sink = push_->acquire();
    if (sink == nullptr) return Status::ok();
    Status sent = send_have(stream, *sink);
    push_->release();
    return sent;
  }

  Status send_have(net::Stream& stream, const PageSink& sink) {
    std::lock_guard write_lock(write_mu_);
    const auto deadline = net::deadline_after(kWriteTimeout);
    const uint64_t per_frame = uint64_t{v2::kMaxHaveBytes} * 8;
    for (uint64_t first = 0; first < pages_; first += per_frame) {
      const uint64_t count = std::min(per_frame, pages_ - first);
      v2::Have have{first, std::vector<std::byte>((count + 7) / 8)};
      bool any = false;
      for (uint64_t i = 0; i < count; ++i) {
        if (sink.holds_page(image_.ram_start + (first + i) * image_.page_size)) {
          have.bitmap[i / 8] |= std::byte{static_cast<uint8_t>(1u << (i % 8))};
          any = true;
        }
      }
      if (!any) continue;
      if (Status s = stream.write_full(v2::encode(have), deadline); !s) return s;
    }
    return stream.write_full(v2::encode(v2::Have{}), deadline);
  }

  void reader_loop() {
    std::vector<std::byte> body;
    for (;;) {
      std::shared_ptr<net::Stream> stream;
      {
        std::lock_guard lock(mu_);
        if (stopping_) return;
        stream = stream_;
      }
      if (!stream) {
        if (!reconnect()) return;
        continue;
      }
      Status s = read_one(*stream, body);
      if (s.is_ok()) continue;
      std::lock_guard lock(mu_);
      if (stopping_) return;
      if (completed_) {
        log().debug("{}: the server closed after COMPLETE", describe());
        failed_ = Status(ErrorCode::kUnavailable, describe() + ": the migration is complete");
        fail_waiting(failed_);
        stream_.reset();
        return;
      }
      log().warn("{}: connection lost: {}; reconnecting", describe(), s.to_string());
      stream->shutdown();
      stream_.reset();
    }
  }

  // Reconnects with backoff; false when the source is closing or must give up
  // for good (the server now serves another image).
  bool reconnect() {
    auto backoff = kFirstBackoff;
    const auto give_up_at = std::chrono::steady_clock::now() + options_.reconnect_for;
    Status last;
    for (;;) {
      {
        std::unique_lock lock(mu_);
        if (stopping_) return false;
        if (failed_.is_ok() && std::chrono::steady_clock::now() >= give_up_at) {
          failed_ = Status(ErrorCode::kUnavailable,
                           fmt::format("{}: no connection for {} ms; last error: {}", describe(),
                                       options_.reconnect_for.count(), last.to_string()));
          log().error("{}", failed_.to_string());
          fail_waiting(failed_);
        }
        cv_.wait_for(lock, backoff, [&] { return stopping_; });
        if (stopping_) return false;
      }
      backoff = std::min(backoff * 2, kMaxBackoff);
      auto connected = connect_once();
      if (!connected) {
        last = connected.status();
        continue;
      }
      if (connected->image.image_id != image_.image_id || connected->image.size != image_.size ||
          connected->image.page_size != image_.page_size ||
          connected->image.ram_start != image_.ram_start) {
        std::lock_guard lock(mu_);
        failed_ = Status(ErrorCode::kProtocol,
                         fmt::format("{}: after reconnecting, the server serves another image "
                                     "(id {:#x}, {} bytes); refusing its pages",
                                     describe(), connected->image.image_id, connected->image.size));
        log().error("{}", failed_.to_string());
        fail_waiting(failed_);
        return false;
      }
      if (Status s = send_have(*connected->stream); !s) {
        last = s;
        continue;
      }
      std::vector<v2::Request> again;
      {
        std::lock_guard lock(mu_);
        stream_ = connected->stream;
        failed_ = Status::ok();
        ++stats_.reconnects;
        for (Slot& slot : slots_) {
          if (slot.state == SlotState::kWaiting) {
            again.push_back({slot.id, slot.gpa, static_cast<uint32_t>(slot.dest.size())});
          }
        }
        for (const auto& [id, range] : repairs_) again.push_back({id, range.first, range.second});
        stats_.requests += again.size();
      }
      log().info("{}: reconnected; {} requests sent again", describe(), again.size());
      for (const v2::Request& r : again) send_request(*connected->stream, r);
      return true;
    }
  }

  void fail_waiting(const Status& why) {
    for (Slot& slot : slots_) {
      if (slot.state == SlotState::kWaiting) {
        slot.state = SlotState::kFailed;
        slot.error = why;
        slot.cv.notify_all();
      }
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
        std::lock_guard lock(mu_);
        if (Slot* slot = find_slot(error->id)) {
          slot->state = SlotState::kFailed;
          // Only "not in the image" is permanent; anything else may pass.
          slot->error = Status(error->code == ErrorCode::kOutOfRange ? ErrorCode::kOutOfRange
                                                                     : ErrorCode::kUnavailable,
                               fmt::format("{}: {}", describe(), error->message));
          slot->cv.notify_all();
        }
        return Status::ok();
      }
      case v2::FrameType::kPushDone: {
        std::lock_guard lock(mu_);
        stats_.push_done = true;
        return Status::ok();
      }
      default:
        return Status(ErrorCode::kProtocol, fmt::format("unexpected frame type {} from the server",
                                                        static_cast<int>(header->type)));
    }
  }

  Slot* find_slot(uint64_t id) {
    for (Slot& slot : slots_) {
      if (slot.state == SlotState::kWaiting && slot.id == id) return &slot;
    }
    return nullptr;
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
    if (header->id == 0 || (header->id & kRepairBit) != 0) {
      return on_pushed(stream, *header, payload);
    }
    std::unique_lock lock(mu_);
    Slot* slot = find_slot(header->id);
    if (slot == nullptr) {
      ++stats_.late_replies;
      return Status::ok();
    }
    if (slot->gpa != header->gpa || slot->dest.size() != header->length) {
      return Status(
          ErrorCode::kProtocol,
          fmt::format("reply {} is for [{:#x}, +{:#x}), the request was [{:#x}, +{:#x})",
                      header->id, header->gpa, header->length, slot->gpa, slot->dest.size()));
    }
    slot->filling = true;
    lock.unlock();
    Status decoded = v2::decode_payload(*header, payload, slot->dest, false);
    lock.lock();
    slot->filling = false;
    stats_.wire_bytes += payload.size();
    if (!decoded) {
      ++stats_.corrupt;
      log().warn("{}: {}; fetching it again", describe(), decoded.message());
      const v2::Request again{slot->id, slot->gpa, static_cast<uint32_t>(slot->dest.size())};
      ++stats_.requests;
      slot->cv.notify_all();
      lock.unlock();
      send_request(stream, again);
      return Status::ok();
    }
    if (header->encoding == v2::Encoding::kZero) stats_.zero_bytes += header->length;
    slot->kind = header->encoding == v2::Encoding::kZero ? PageKind::kZero : PageKind::kData;
    slot->state = SlotState::kDone;
    slot->cv.notify_all();
    return Status::ok();
  }

  Status on_pushed(net::Stream& stream, const v2::DataHeader& header,
                   std::span<const std::byte> payload) {
    // Raw bytes are checked where they lie and installed from there; the rest
    // are decoded into the push buffer first.
    const bool raw = header.encoding == v2::Encoding::kRaw;
    std::span<const std::byte> bytes = raw ? payload : std::span(push_buffer_).first(header.length);
    Status decoded = raw ? v2::verify_raw_payload(header, payload)
                         : v2::decode_payload(header, payload,
                                              std::span(push_buffer_).first(header.length), false);
    v2::Request again;
    {
      std::lock_guard lock(mu_);
      stats_.wire_bytes += payload.size();
      if ((header.id & kRepairBit) != 0) {
        if (repairs_.erase(header.id) == 0) {
          ++stats_.late_replies;
          return Status::ok();
        }
      }
      if (!decoded) {
        ++stats_.corrupt;
        // Fetch it again, into the sink like a pushed range.
        const uint64_t id = kRepairBit | next_id_++;
        repairs_.emplace(id, std::pair<uint64_t, uint32_t>{header.gpa, header.length});
        ++stats_.requests;
        log().warn("{}: pushed {}; fetching it again", describe(), decoded.message());
        again = v2::Request{id, header.gpa, header.length};
      } else {
        stats_.pushed_bytes += header.length;
        if (header.encoding == v2::Encoding::kZero) stats_.zero_bytes += header.length;
      }
    }
    if (!decoded) {
      send_request(stream, again);
      return Status::ok();
    }
    PageSink* sink = push_->acquire();
    if (sink == nullptr) return Status::ok();  // nobody to hand it to: dropped
    const bool zero = header.encoding == v2::Encoding::kZero;
    Status installed =
        sink->install(header.gpa, header.length, zero ? std::span<const std::byte>() : bytes);
    push_->release();
    if (!installed) {
      log().warn("{}: pushed range [{:#x}, +{:#x}) not installed: {}", describe(), header.gpa,
                 header.length, installed.to_string());
    }
    return Status::ok();
  }

  const net::SocketAddress address_;
  const NetworkSourceOptions options_;
  uint32_t accepted_ = 0;
  std::shared_ptr<net::TlsContext> tls_;  // null: plain
  RemoteImage image_;
  uint64_t pages_ = 0;
  std::vector<std::byte> push_buffer_;  // the reader's

  mutable std::mutex mu_;
  std::condition_variable cv_;  // a slot became free; stopping
  std::array<Slot, kSlots> slots_;
  std::map<uint64_t, std::pair<uint64_t, uint32_t>> repairs_;  // id -> pushed range to re-fetch
  uint64_t next_id_ = 1;
  std::shared_ptr<net::Stream> stream_;  // null while disconnected
  const std::shared_ptr<Push::State> push_ = std::make_shared<Push::State>();
  Status failed_;  // not OK while reconnecting has failed for too long
  bool stopping_ = false;
  bool completed_ = false;  // COMPLETE sent: the server may go away
  NetworkSourceStats stats_;

  std::mutex write_mu_;  // one frame at a time on the connection
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
