// A proxy between a client and its server that injects the network faults a
// protocol must recover from: cut connections, delayed chunks, corrupted
// bytes, and a far side that is down.
//
// Byte-exact when no fault is set. Cuts and corruptions are deterministic:
// they happen at stream offsets, counted per connection and per direction,
// never at times.
// Faults that apply to new connections (cut_after, corrupt_at,
// corrupt_randomly) are given to each connection when the proxy accepts it,
// so a test sets them before its client connects, and can cut the first
// connection and let the reconnection through.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "faultline/status.h"
#include "faultline/unique_fd.h"
#include "net/socket_address.h"

namespace faultline::testing {

enum class Direction { kToServer, kToClient };

// For the `connections` argument of the faults given to new connections.
inline constexpr uint64_t kEveryConnection = std::numeric_limits<uint64_t>::max();

class FaultProxy {
 public:
  struct Counters {
    uint64_t connections = 0;  // accepted and forwarded to the target
    uint64_t refused = 0;      // accepted and closed at once: refused, or the target is down
    uint64_t cuts = 0;         // connections cut by cut_after or cut_all
    uint64_t corrupted_bytes = 0;
    uint64_t bytes_to_server = 0;  // passed on to the server
    uint64_t bytes_to_client = 0;  // passed on to the client
  };

  // Listens on `listen` ("tcp:127.0.0.1:0", "unix:PATH") and forwards every
  // connection it accepts to `target`, each direction pumped by its own thread.
  static Result<std::unique_ptr<FaultProxy>> start(const std::string& listen,
                                                   const std::string& target);
  // Cuts every connection and joins every thread.
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  // Where clients connect: the real port for "tcp:HOST:0".
  std::string address() const { return listener_.address.to_string(); }

  // Ends every current connection now: the client and the server each read
  // end-of-stream after the bytes already forwarded, and what they still send
  // goes nowhere.
  void cut_all();
  // Each of the next `connections` new connections is cut as soon as `bytes`
  // bytes have passed in `direction`: its receiver reads exactly that many,
  // then end-of-stream. 0 bytes turns the fault off. Replaces the previous
  // cut_after for that direction.
  void cut_after(Direction direction, uint64_t bytes, uint64_t connections = kEveryConnection);
  // Holds every chunk read in `direction` this long before forwarding it
  // (applies at once, to current connections too).
  void set_delay(Direction direction, std::chrono::milliseconds delay);
  // In each of the next `connections` new connections, XORs the byte at stream
  // offset `offset` in `direction` with `mask`. Adds to earlier corrupt_at calls.
  void corrupt_at(Direction direction, uint64_t offset, std::byte mask = std::byte{0x5a},
                  uint64_t connections = kEveryConnection);
  // In each of the next `connections` new connections, every 1 KiB block of
  // the stream in `direction` has one byte flipped with this probability. The
  // n-th connection forwarded (from 0) draws from `seed` + n, so a run repeats
  // exactly.
  void corrupt_randomly(Direction direction, double probability_per_kib, uint64_t seed,
                        uint64_t connections = kEveryConnection);
  // While true, connections are accepted and closed at once, as if the far
  // side were down.
  void refuse_connections(bool refuse);
  // Turns every fault off, in current connections too; already flipped bytes
  // stay flipped and cut connections stay cut.
  void clear_faults();

  Counters counters() const;

 private:
  struct Connection;
  struct Rules;

  FaultProxy(net::Listener listener, net::SocketAddress target, UniqueFd stop);
  void accept_loop();
  void forward(UniqueFd client);
  void pump(Connection& connection, Direction direction);
  // Waits out the delay of `direction`; false if the connection was cut meanwhile.
  bool hold(Connection& connection, Direction direction);
  void finish(Connection& connection);
  void cut(Connection& connection, bool injected);  // needs mu_
  void join_closed();

  net::Listener listener_;
  net::SocketAddress target_;
  UniqueFd stop_;
  std::thread accept_thread_;

  mutable std::mutex mu_;
  std::condition_variable held_chunks_;                 // a delay changed or a connection was cut
  std::unique_ptr<Rules> rules_;                        // guarded by mu_
  std::list<std::unique_ptr<Connection>> connections_;  // guarded by mu_
  Counters counters_;                                   // guarded by mu_
};

}  // namespace faultline::testing
