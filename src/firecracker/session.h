// One Firecracker VM served by the handler: its regions, pager, fault server
// and the connection whose hang-up says the VM has gone.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/working_set_session.h"
#include "faultline/fault_server.h"
#include "faultline/page_source.h"
#include "faultline/unique_fd.h"
#include "firecracker/handshake.h"
#include "firecracker/handshake_receiver.h"
#include "firecracker/session_push.h"

namespace faultline::firecracker {

// How a session appears in log lines: "session 3 (pid 42)", or with the
// operator's name "session 3 \"web-3\" (pid 42)".
std::string session_label(uint64_t id, const std::string& name, int pid);

struct SessionConfig {
  std::function<Result<std::unique_ptr<PageSource>>()> open_source;
  // Set when the sources open_source makes push pages (session_source.cc):
  // starts that push into the session's memory once it is served.
  std::function<Result<std::unique_ptr<SessionPush>>(PageSource&, FaultServer&,
                                                     std::span<const RegionMapping>)>
      start_push;
  HandshakeLimits limits;
  int threads = 1;
  std::chrono::milliseconds source_deadline{5000};
  PrefetchOptions prefetch;
  WorkingSetFiles working_sets;  // see UffdHandlerOptions::working_sets
};

class Session {
 public:
  // Validates the handshake, builds the pager and starts serving. `name` (may
  // be empty) is the operator's, shown in logs and stats.
  static Result<std::unique_ptr<Session>> start(uint64_t id, int peer_pid,
                                                ReceivedHandshake handshake,
                                                const SessionConfig& config, std::string name = {});

  // Blocks until the VM goes away (its connection closes or its userfaultfd
  // hangs up) or `stop_fd` becomes readable; then stops serving. Returns how
  // it ended, for the log and the stats ("the VM disconnected", ...).
  std::string serve_until_done(int connection, int stop_fd);

  nlohmann::ordered_json stats() const;
  // One line for the log when the session ends.
  std::string summary(const std::string& how_it_ended) const;
  uint64_t id() const { return id_; }
  // "session 3 (pid 42)", or "session 3 \"web-3\" (pid 42)" with a name.
  const std::string& label() const { return label_; }

 private:
  Session(uint64_t id, int pid, std::string name, std::vector<RegionMapping> regions,
          PagerHandle pager, std::unique_ptr<FaultServer> server);

  uint64_t id_;
  int pid_;
  std::string name_;
  std::string label_;
  std::vector<RegionMapping> regions_;
  PagerHandle pager_;
  std::unique_ptr<FaultServer> server_;
  PrefetchPolicy policy_ = PrefetchPolicy::kFull;
  std::unique_ptr<SessionPush> push_;  // after server_: stops before it
  PreparedWorkingSets working_sets_;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace faultline::firecracker
