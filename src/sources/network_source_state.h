// What the parts of a NetworkPageSource share: the connection of the moment,
// whether the source is closing or has failed for good, request ids and the
// counters, all under one mutex. The parts:
//   network_connection.cc  connect, handshake, reconnect with backoff, HAVE
//   network_requests.cc    request slots: ids, waiting fetches, replies, re-sends
//   network_push.cc        pushed DATA frames checked and handed to the sink
//   network_page_source.cc the reader thread that dispatches what arrives
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "faultline/network_page_source.h"
#include "faultline/status.h"
#include "net/stream.h"

namespace faultline::network {

inline constexpr std::chrono::seconds kBodyTimeout{30};
inline constexpr std::chrono::seconds kWriteTimeout{10};

struct SourceState {
  explicit SourceState(std::string description) : description(std::move(description)) {}

  const std::string description;  // describe(): names the server in messages

  mutable std::mutex mu;
  std::condition_variable cv;           // a slot became free; stopping
  std::shared_ptr<net::Stream> stream;  // null while disconnected
  Status failed;                        // not OK while reconnecting has failed for too long
  bool stopping = false;                // the source is being destroyed
  bool completed = false;               // COMPLETE sent: the server may go away
  uint64_t next_id = 1;                 // of the next request (repairs add a bit)
  NetworkSourceStats stats;
};

}  // namespace faultline::network
