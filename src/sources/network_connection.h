// The network source's connection and its recovery: connecting (TLS or
// plain), the handshake, every frame the client sends, and reconnecting with
// backoff after a drop, refusing a server that now serves another image.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "faultline/network_page_source.h"
#include "faultline/page_sink.h"
#include "faultline/status.h"
#include "net/socket_address.h"
#include "net/stream.h"
#include "net/tls.h"
#include "protocol/frames.h"
#include "sources/network_source_state.h"

namespace faultline::network {

class RequestSlots;
class PushReceiver;

class Connection {
 public:
  struct Connected {
    std::shared_ptr<net::Stream> stream;
    RemoteImage image;
  };

  Connection(SourceState& state, net::SocketAddress address, const NetworkSourceOptions& options);

  // Makes the TLS context (when configured) and connects the first time.
  Result<Connected> open();
  // One connection and its handshake (HELLO out, WELCOME or ERROR back).
  Result<Connected> connect_once();
  // Reconnects with backoff and sends HAVE and every unanswered request
  // again; false when the source is closing or must give up for good (the
  // server now serves another image).
  bool reconnect(const RemoteImage& image, RequestSlots& slots, PushReceiver& push);

  // One frame at a time on the connection. A failed request is not reported:
  // the reader notices the connection is gone and recovers.
  void send_request(net::Stream& stream, const v2::Request& request);
  // Tells the server what `sink` holds of `image`, then that pushing may begin.
  Status send_have(net::Stream& stream, const RemoteImage& image, const PageSink& sink);
  Status send_complete(net::Stream& stream);

 private:
  Status with_refusal_hint(const Status& failure) const;

  SourceState& state_;
  const net::SocketAddress address_;
  const NetworkSourceOptions& options_;
  const uint32_t accepted_;               // encodings offered in HELLO
  std::shared_ptr<net::TlsContext> tls_;  // null: plain
  std::mutex write_mu_;                   // one frame at a time on the connection
};

}  // namespace faultline::network
