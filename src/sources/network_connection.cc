// Connecting, the handshake, sending, and recovery after a dropped connection.
#include "sources/network_connection.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/log.h"
#include "net/stream_connect.h"
#include "protocol/page_codec.h"
#include "sources/network_push.h"
#include "sources/network_requests.h"

namespace faultline::network {
namespace {

constexpr std::chrono::seconds kHandshakeTimeout{10};
constexpr std::chrono::milliseconds kFirstBackoff{20};
constexpr std::chrono::milliseconds kMaxBackoff{1000};

bool same_image(const RemoteImage& a, const RemoteImage& b) {
  return a.image_id == b.image_id && a.size == b.size && a.page_size == b.page_size &&
         a.ram_start == b.ram_start;
}

// A TLS server that reads our plaintext HELLO may answer with an alert record
// (content type 21, version 3.x) before it hangs up.
bool starts_tls_alert(std::span<const std::byte> bytes) {
  return bytes.size() >= 2 && bytes[0] == std::byte{21} && bytes[1] == std::byte{3};
}

}  // namespace

Connection::Connection(SourceState& state, net::SocketAddress address,
                       const NetworkSourceOptions& options)
    : state_(state),
      address_(std::move(address)),
      options_(options),
      accepted_(v2::encoding_bit(v2::Encoding::kRaw) |
                v2::encoding_bit(v2::encoding_of(options.compression))) {}

Result<Connection::Connected> Connection::open() {
  const TlsOptions& t = options_.tls;
  if (!t.ca_file.empty() || !t.cert_file.empty() || !t.key_file.empty()) {
    auto context = net::TlsContext::client(t);
    if (!context) return context.status();
    tls_ = std::move(*context);
  }
  return connect_once();
}

Result<Connection::Connected> Connection::connect_once() {
  const std::string& describe = state_.description;
  auto stream = net::connect_stream(address_, tls_.get(), options_.tls.server_name,
                                    options_.allow_plain_tcp, options_.connect_timeout);
  if (!stream) return stream.status();
  std::shared_ptr<net::Stream> s = std::move(*stream);
  v2::Hello hello;
  hello.accepted_encodings = accepted_;
  hello.want_push = options_.push;
  const auto deadline = net::deadline_after(kHandshakeTimeout);
  // One write: a server that refuses us right after connecting (a TLS server
  // met in plaintext, a TLS server that wants a client certificate) hangs up
  // on the first bytes, and a second write would only see the reset.
  std::vector<std::byte> opening(v2::kMagic.begin(), v2::kMagic.end());
  const std::vector<std::byte> hello_frame = v2::encode(hello);
  opening.insert(opening.end(), hello_frame.begin(), hello_frame.end());
  v2::FrameHeaderBytes header_bytes;
  Status opened = s->write_full(opening, deadline);
  if (opened) opened = s->read_full(header_bytes, deadline);
  if (!opened) return with_refusal_hint(opened);
  if (!tls_ && starts_tls_alert(header_bytes)) {
    return Status(ErrorCode::kProtocol,
                  fmt::format("{}: the server expects TLS (it answered with a TLS alert); give "
                              "TlsOptions::ca_file",
                              describe));
  }
  auto header = v2::decode_frame_header(header_bytes);
  if (!header) return header.status();
  std::vector<std::byte> body(header->body_length);
  if (Status st = s->read_full(body, deadline); !st) return st;
  if (header->type == v2::FrameType::kError) {
    auto error = v2::decode_error(body);
    if (!error) return error.status();
    return Status(error->code, fmt::format("{} refused: {}", describe, error->message));
  }
  if (header->type != v2::FrameType::kWelcome) {
    return Status(ErrorCode::kProtocol, fmt::format("{}: expected WELCOME, got frame type {}",
                                                    describe, static_cast<int>(header->type)));
  }
  auto welcome = v2::decode_welcome(body);
  if (!welcome) {
    return Status(ErrorCode::kProtocol,
                  fmt::format("{}: {}", describe, welcome.status().message()));
  }
  if ((accepted_ & v2::encoding_bit(welcome->encoding)) == 0) {
    return Status(ErrorCode::kProtocol,
                  fmt::format("{}: server chose {} compression, which was not offered", describe,
                              v2::compression_name(welcome->encoding)));
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

// A connection that ends before the WELCOME, said with its likely cause.
Status Connection::with_refusal_hint(const Status& failure) const {
  if (!tls_) {
    return failure.with_context(
        fmt::format("{}: no WELCOME (if the server expects TLS, give TlsOptions::ca_file)",
                    state_.description));
  }
  if (failure.message().find("certificate required") != std::string::npos || tls_->mutual()) {
    return failure;  // OpenSSL's alert says it, with its hint (net/tls_errors.cc)
  }
  return failure.with_context(
      fmt::format("{}: the server hung up after the TLS handshake (if the server requires a client "
                  "certificate: give TlsOptions::cert_file and TlsOptions::key_file)",
                  state_.description));
}

bool Connection::reconnect(const RemoteImage& image, RequestSlots& slots, PushReceiver& push) {
  const std::string& describe = state_.description;
  auto backoff = kFirstBackoff;
  const auto give_up_at = std::chrono::steady_clock::now() + options_.reconnect_for;
  Status last;
  for (;;) {
    {
      std::unique_lock lock(state_.mu);
      if (state_.stopping) return false;
      if (state_.failed.is_ok() && std::chrono::steady_clock::now() >= give_up_at) {
        state_.failed = Status(ErrorCode::kUnavailable,
                               fmt::format("{}: no connection for {} ms; last error: {}", describe,
                                           options_.reconnect_for.count(), last.to_string()));
        log().error("{}", state_.failed.to_string());
        slots.fail_waiting(state_.failed);
      }
      state_.cv.wait_for(lock, backoff, [&] { return state_.stopping; });
      if (state_.stopping) return false;
    }
    backoff = std::min(backoff * 2, kMaxBackoff);
    auto connected = connect_once();
    if (!connected) {
      last = connected.status();
      continue;
    }
    if (!same_image(connected->image, image)) {
      std::lock_guard lock(state_.mu);
      state_.failed =
          Status(ErrorCode::kProtocol,
                 fmt::format("{}: after reconnecting, the server serves another image "
                             "(id {:#x}, {} bytes); refusing its pages",
                             describe, connected->image.image_id, connected->image.size));
      log().error("{}", state_.failed.to_string());
      slots.fail_waiting(state_.failed);
      return false;
    }
    if (Status s = push.send_have(*connected->stream); !s) {
      last = s;
      continue;
    }
    std::vector<v2::Request> again;
    {
      std::lock_guard lock(state_.mu);
      state_.stream = connected->stream;
      state_.failed = Status::ok();
      ++state_.stats.reconnects;
      slots.unanswered(again);
      push.unanswered(again);
      state_.stats.requests += again.size();
    }
    log().info("{}: reconnected; {} requests sent again", describe, again.size());
    for (const v2::Request& r : again) send_request(*connected->stream, r);
    return true;
  }
}

void Connection::send_request(net::Stream& stream, const v2::Request& request) {
  std::lock_guard write_lock(write_mu_);
  (void)stream.write_full(v2::encode(request), net::deadline_after(kWriteTimeout));
}

Status Connection::send_have(net::Stream& stream, const RemoteImage& image, const PageSink& sink) {
  std::lock_guard write_lock(write_mu_);
  const auto deadline = net::deadline_after(kWriteTimeout);
  const uint64_t pages = image.size / image.page_size;
  const uint64_t per_frame = uint64_t{v2::kMaxHaveBytes} * 8;
  for (uint64_t first = 0; first < pages; first += per_frame) {
    const uint64_t count = std::min(per_frame, pages - first);
    v2::Have have{first, std::vector<std::byte>((count + 7) / 8)};
    bool any = false;
    for (uint64_t i = 0; i < count; ++i) {
      if (sink.holds_page(image.ram_start + (first + i) * image.page_size)) {
        have.bitmap[i / 8] |= std::byte{static_cast<uint8_t>(1u << (i % 8))};
        any = true;
      }
    }
    if (!any) continue;
    if (Status s = stream.write_full(v2::encode(have), deadline); !s) return s;
  }
  return stream.write_full(v2::encode(v2::Have{}), deadline);
}

Status Connection::send_complete(net::Stream& stream) {
  std::lock_guard write_lock(write_mu_);
  return stream.write_full(v2::encode_empty(v2::FrameType::kComplete),
                           net::deadline_after(kWriteTimeout));
}

}  // namespace faultline::network
