#include "support/fault_proxy.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <optional>
#include <random>
#include <span>
#include <vector>

namespace faultline::testing {
namespace {

constexpr size_t kChunk = 64 * 1024;
constexpr uint64_t kRandomBlock = 1024;
constexpr std::chrono::seconds kConnectTimeout(2);
// Enough to empty a socket's receive queue; a peer that keeps sending after a
// cut must not keep the proxy busy.
constexpr int kMaxDiscardReads = 256;
// How long a connection's last bytes get to reach a peer that stopped reading.
constexpr std::chrono::milliseconds kMaxSendWait(3000);

size_t index(Direction direction) {
  return direction == Direction::kToServer ? 0 : 1;
}

struct Corruption {
  uint64_t offset = 0;
  std::byte mask{};
};

struct RandomCorruption {
  double probability_per_kib = 0;
  uint64_t seed = 0;
};

// A fault for the next `remaining` new connections.
template <typename Fault>
struct Rationed {
  Fault fault{};
  uint64_t remaining = 0;

  // Whether the fault applies to one more connection, and counts it.
  bool take() {
    if (remaining == 0) return false;
    if (remaining != kEveryConnection) --remaining;
    return true;
  }
};

// Flips decided block by block in stream order, the same however the stream
// happens to be split into chunks.
class RandomFlips {
 public:
  RandomFlips(double probability, uint64_t seed) : probability_(probability), rng_(seed) {}

  // Appends the flips of every block that starts before stream offset `end`.
  void decide_until(uint64_t end, std::vector<Corruption>& flips) {
    for (; next_block_ * kRandomBlock < end; ++next_block_) {
      const bool hit = static_cast<double>(rng_() >> 11) * 0x1.0p-53 < probability_;
      const uint64_t offset = next_block_ * kRandomBlock + rng_() % kRandomBlock;
      const auto mask = static_cast<std::byte>(rng_() % 255 + 1);
      if (hit) flips.push_back({offset, mask});
    }
  }

 private:
  double probability_;
  std::mt19937_64 rng_;
  uint64_t next_block_ = 0;
};

// The faults of one direction of one connection, at offsets in its stream.
class StreamFaults {
 public:
  struct Outcome {
    size_t forward = 0;  // bytes of the chunk to pass on
    bool cut = false;    // cut the connection once they are passed on
    uint64_t corrupted = 0;
  };

  void cut_at(uint64_t offset) { cut_at_ = offset; }
  void corrupt(Corruption corruption) { corruptions_.push_back(corruption); }
  void corrupt_randomly(const RandomCorruption& random, uint64_t connection) {
    random_.emplace(random.probability_per_kib, random.seed + connection);
  }
  void clear() {
    cut_at_ = 0;
    corruptions_.clear();
    random_.reset();
  }

  // Corrupts `chunk`, the next bytes of the stream, in place.
  Outcome apply(std::span<std::byte> chunk) {
    uint64_t forward = chunk.size();
    if (cut_at_ != 0) forward = std::min(forward, cut_at_ - passed_);
    const uint64_t end = passed_ + forward;
    if (random_) random_->decide_until(end, corruptions_);
    uint64_t corrupted = 0;
    for (const Corruption& c : corruptions_) {
      if (c.offset < passed_ || c.offset >= end) continue;
      chunk[c.offset - passed_] ^= c.mask;
      ++corrupted;
    }
    std::erase_if(corruptions_, [end](const Corruption& c) { return c.offset < end; });
    passed_ = end;
    return {static_cast<size_t>(forward), cut_at_ != 0 && passed_ >= cut_at_, corrupted};
  }

 private:
  uint64_t passed_ = 0;                  // bytes of the stream forwarded so far
  uint64_t cut_at_ = 0;                  // 0: never
  std::vector<Corruption> corruptions_;  // those not yet passed
  std::optional<RandomFlips> random_;
};

bool worth_retrying(int errno_value) {
  return errno_value == EINTR || errno_value == EAGAIN || errno_value == EWOULDBLOCK;
}

// Waits until `fd` is ready for `events`; false once `cut_event` is signalled.
bool wait_ready(int fd, short events, int cut_event) {
  pollfd fds[2] = {{fd, events, 0}, {cut_event, POLLIN, 0}};
  while (::poll(fds, 2, -1) < 0) {
    if (errno != EINTR) return false;
  }
  return fds[1].revents == 0;
}

// One recv of whatever has arrived, waiting for some: the byte count, 0 at
// end-of-stream or once the connection is cut, -1 on an error.
ssize_t receive_some(int fd, int cut_event, std::span<std::byte> buf) {
  for (;;) {
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n >= 0) return n;
    if (!worth_retrying(errno)) return -1;
    if (!wait_ready(fd, POLLIN, cut_event)) return 0;
  }
}

// All of `bytes`; false on an error or once the connection is cut.
bool send_all(int fd, int cut_event, std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      bytes = bytes.subspan(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && !worth_retrying(errno)) return false;
    if (!wait_ready(fd, POLLOUT, cut_event)) return false;
  }
  return true;
}

// Reads and drops what has arrived; false once the peer has closed or reset
// the connection.
bool discard_unread(int fd) {
  std::byte sink[4096];
  for (int i = 0; i < kMaxDiscardReads; ++i) {
    const ssize_t n = ::recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && !worth_retrying(errno))) return false;
    if (n < 0) break;
  }
  return true;
}

// Closing a socket with unread bytes resets the connection: a TCP reset drops
// bytes the peer has not read yet, and a Unix peer reads ECONNRESET instead of
// end-of-stream once its queue is empty. Either way the receiver of a cut
// would not see "exactly N bytes, then end-of-stream". So this discards what
// arrives until the peer closes its side too, or for kMaxSendWait at most.
void discard_unread_until_sent(int fd) {
  const auto deadline = std::chrono::steady_clock::now() + kMaxSendWait;
  for (;;) {
    if (!discard_unread(fd)) return;  // end-of-stream or an error: the peer is done
    if (std::chrono::steady_clock::now() >= deadline) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

struct FaultProxy::Rules {
  struct PerDirection {
    Rationed<uint64_t> cut_after;
    std::vector<Rationed<Corruption>> corruptions;
    Rationed<RandomCorruption> random;
    std::chrono::milliseconds delay{0};

    // The faults the next new connection gets, the `connection`-th forwarded.
    StreamFaults issue(uint64_t connection) {
      StreamFaults faults;
      if (cut_after.take()) faults.cut_at(cut_after.fault);
      for (Rationed<Corruption>& corruption : corruptions) {
        if (corruption.take()) faults.corrupt(corruption.fault);
      }
      std::erase_if(corruptions, [](const auto& c) { return c.remaining == 0; });
      if (random.take()) faults.corrupt_randomly(random.fault, connection);
      return faults;
    }
  };

  std::array<PerDirection, 2> directions;
  bool refuse = false;
};

struct FaultProxy::Connection {
  // Closed under mu_ once both pumps have finished.
  UniqueFd client;
  UniqueFd server;
  // Signalled by cut(): wakes the pumps wherever they wait on a socket.
  UniqueFd cut_event;
  std::array<StreamFaults, 2> faults;  // guarded by mu_, by Direction
  bool cut = false;                    // guarded by mu_
  int finished = 0;                    // pumps that returned; guarded by mu_
  bool closed = false;                 // guarded by mu_
  std::thread to_server;
  std::thread to_client;

  int source(Direction d) const { return (d == Direction::kToServer ? client : server).get(); }
  int sink(Direction d) const { return (d == Direction::kToServer ? server : client).get(); }
};

Result<std::unique_ptr<FaultProxy>> FaultProxy::start(const std::string& listen,
                                                      const std::string& target) {
  auto listen_address = net::parse_socket_address(listen);
  if (!listen_address) return listen_address.status();
  auto target_address = net::parse_socket_address(target);
  if (!target_address) return target_address.status();
  auto listener = net::listen_socket(*listen_address);
  if (!listener) return listener.status().with_context("fault proxy");
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC));
  if (!stop) return io_error("eventfd", errno);
  return std::unique_ptr<FaultProxy>(
      new FaultProxy(std::move(*listener), std::move(*target_address), std::move(stop)));
}

FaultProxy::FaultProxy(net::Listener listener, net::SocketAddress target, UniqueFd stop)
    : listener_(std::move(listener)),
      target_(std::move(target)),
      stop_(std::move(stop)),
      rules_(std::make_unique<Rules>()) {
  accept_thread_ = std::thread([this] { accept_loop(); });
}

FaultProxy::~FaultProxy() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(stop_.get(), &one, sizeof(one));
  accept_thread_.join();
  {
    std::lock_guard lock(mu_);
    for (auto& connection : connections_) cut(*connection, /*injected=*/false);
  }
  // Only pumps remain, and they never change the list.
  for (auto& connection : connections_) {
    connection->to_server.join();
    connection->to_client.join();
  }
  if (listener_.address.kind == net::SocketAddress::Kind::kUnix) {
    ::unlink(listener_.address.path.c_str());
  }
}

void FaultProxy::cut_all() {
  std::lock_guard lock(mu_);
  for (auto& connection : connections_) cut(*connection, /*injected=*/true);
}

void FaultProxy::cut_after(Direction direction, uint64_t bytes, uint64_t connections) {
  std::lock_guard lock(mu_);
  rules_->directions[index(direction)].cut_after = {bytes, bytes == 0 ? 0 : connections};
}

void FaultProxy::set_delay(Direction direction, std::chrono::milliseconds delay) {
  std::lock_guard lock(mu_);
  rules_->directions[index(direction)].delay = delay;
  held_chunks_.notify_all();
}

void FaultProxy::corrupt_at(Direction direction, uint64_t offset, std::byte mask,
                            uint64_t connections) {
  std::lock_guard lock(mu_);
  rules_->directions[index(direction)].corruptions.push_back({{offset, mask}, connections});
}

void FaultProxy::corrupt_randomly(Direction direction, double probability_per_kib, uint64_t seed,
                                  uint64_t connections) {
  std::lock_guard lock(mu_);
  rules_->directions[index(direction)].random = {{probability_per_kib, seed}, connections};
}

void FaultProxy::refuse_connections(bool refuse) {
  std::lock_guard lock(mu_);
  rules_->refuse = refuse;
}

void FaultProxy::clear_faults() {
  std::lock_guard lock(mu_);
  *rules_ = Rules{};
  for (auto& connection : connections_) {
    for (StreamFaults& faults : connection->faults) faults.clear();
  }
  held_chunks_.notify_all();
}

FaultProxy::Counters FaultProxy::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

void FaultProxy::accept_loop() {
  pollfd fds[2] = {{listener_.fd.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
  for (;;) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    join_closed();
    UniqueFd client(::accept4(listener_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (client) forward(std::move(client));
  }
}

void FaultProxy::forward(UniqueFd client) {
  {
    std::lock_guard lock(mu_);
    if (rules_->refuse) {
      ++counters_.refused;
      return;
    }
  }
  auto server = net::connect_socket(target_, kConnectTimeout);
  UniqueFd cut_event(::eventfd(0, EFD_CLOEXEC));
  std::lock_guard lock(mu_);
  if (!server || !cut_event) {
    ++counters_.refused;
    return;
  }
  net::set_no_delay(client.get());
  auto connection = std::make_unique<Connection>();
  connection->client = std::move(client);
  connection->server = std::move(*server);
  connection->cut_event = std::move(cut_event);
  const uint64_t ordinal = counters_.connections++;
  for (Direction d : {Direction::kToServer, Direction::kToClient}) {
    connection->faults[index(d)] = rules_->directions[index(d)].issue(ordinal);
  }
  Connection& c = *connection;
  c.to_server = std::thread([this, &c] { pump(c, Direction::kToServer); });
  c.to_client = std::thread([this, &c] { pump(c, Direction::kToClient); });
  connections_.push_back(std::move(connection));
}

void FaultProxy::pump(Connection& connection, Direction direction) {
  const int from = connection.source(direction);
  const int to = connection.sink(direction);
  const int cut_event = connection.cut_event.get();
  std::vector<std::byte> buf(kChunk);
  for (;;) {
    const ssize_t n = receive_some(from, cut_event, buf);
    if (n == 0) {
      ::shutdown(to, SHUT_WR);  // end-of-stream passes through
      break;
    }
    if (n < 0 || !hold(connection, direction)) {
      std::lock_guard lock(mu_);
      cut(connection, /*injected=*/false);
      break;
    }
    StreamFaults::Outcome outcome;
    {
      std::lock_guard lock(mu_);
      outcome = connection.faults[index(direction)].apply(std::span(buf).first(n));
      counters_.corrupted_bytes += outcome.corrupted;
    }
    const bool written = send_all(to, cut_event, std::span(buf).first(outcome.forward));
    std::lock_guard lock(mu_);
    if (written) {
      (direction == Direction::kToServer ? counters_.bytes_to_server : counters_.bytes_to_client) +=
          outcome.forward;
    }
    if (!written || outcome.cut) {
      cut(connection, /*injected=*/outcome.cut);
      break;
    }
  }
  finish(connection);
}

bool FaultProxy::hold(Connection& connection, Direction direction) {
  std::unique_lock lock(mu_);
  const auto since = std::chrono::steady_clock::now();
  for (;;) {
    if (connection.cut) return false;
    const auto until = since + rules_->directions[index(direction)].delay;
    if (std::chrono::steady_clock::now() >= until) return true;
    held_chunks_.wait_until(lock, until);
  }
}

void FaultProxy::finish(Connection& connection) {
  {
    std::lock_guard lock(mu_);
    if (++connection.finished < 2) return;
  }
  // Until they close, only cut() touches the sockets, to shut them down.
  // Both peers have been sent end-of-stream by now.
  discard_unread_until_sent(connection.client.get());
  discard_unread_until_sent(connection.server.get());
  std::lock_guard lock(mu_);
  connection.client.reset();
  connection.server.reset();
  connection.closed = true;
}

void FaultProxy::cut(Connection& connection, bool injected) {
  if (connection.cut || connection.closed) return;
  connection.cut = true;
  // Not SHUT_RD: a TCP socket shut for reading resets the connection when
  // more bytes arrive, dropping those it has not delivered yet. finish()
  // discards what arrives instead.
  ::shutdown(connection.client.get(), SHUT_WR);
  ::shutdown(connection.server.get(), SHUT_WR);
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(connection.cut_event.get(), &one, sizeof(one));
  if (injected) ++counters_.cuts;
  held_chunks_.notify_all();
}

void FaultProxy::join_closed() {
  std::list<std::unique_ptr<Connection>> closed;
  {
    std::lock_guard lock(mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      auto next = std::next(it);
      if ((*it)->closed) closed.splice(closed.end(), connections_, it);
      it = next;
    }
  }
  for (auto& connection : closed) {
    connection->to_server.join();
    connection->to_client.join();
  }
}

}  // namespace faultline::testing
