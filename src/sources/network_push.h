// The network source's push receiver: DATA frames the server pushed unasked
// are checked and handed to the sink of the Push in progress (or dropped when
// there is none); a pushed range that arrived corrupt is asked for again as a
// repair request, whose reply goes to the sink too.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

#include "faultline/network_page_source.h"
#include "faultline/page_sink.h"
#include "faultline/status.h"
#include "net/stream.h"
#include "protocol/frames.h"
#include "sources/network_source_state.h"

namespace faultline {

// The sink pushed pages are handed to, shared by the source's reader and the
// Push that ends the hand-over, so either may be destroyed first.
struct NetworkPageSource::Push::State {
  // The sink, counted as in use until release(); null when there is none.
  PageSink* acquire();
  void release();
  // No sink from now on; returns once no hand-over is in progress.
  void detach();

  std::mutex mu;
  std::condition_variable idle;
  PageSink* sink = nullptr;
  bool started = false;  // start_push was called (once per source)
  int users = 0;         // hand-overs to sink in progress
};

namespace network {

class Connection;

class PushReceiver {
 public:
  // `image` is the one the handshake announced; it is read only once known.
  PushReceiver(SourceState& state, Connection& connection, const RemoteImage& image);

  // Whether a DATA frame with this id was pushed (or repairs a pushed range)
  // rather than answering a fetch.
  static bool is_pushed(uint64_t id);

  // Hands pushed pages to `sink` from now on, and tells the server what it
  // holds (when connected; else the reconnection does).
  Result<std::shared_ptr<NetworkPageSource::Push::State>> start(PageSink& sink);
  // HAVE for the sink of the moment (nothing without one).
  Status send_have(net::Stream& stream);

  // The reader's side: one pushed (or repair) DATA frame.
  Status on_pushed(net::Stream& stream, const v2::DataHeader& header,
                   std::span<const std::byte> payload);
  // With state.mu held: the repair requests still unanswered.
  void unanswered(std::vector<v2::Request>& out) const;

 private:
  SourceState& state_;
  Connection& connection_;
  const RemoteImage& image_;
  const std::shared_ptr<NetworkPageSource::Push::State> push_ =
      std::make_shared<NetworkPageSource::Push::State>();
  std::vector<std::byte> buffer_;  // the reader's: decoded pushed ranges
  std::map<uint64_t, std::pair<uint64_t, uint32_t>> repairs_;  // id -> range; under state_.mu
};

}  // namespace network
}  // namespace faultline
