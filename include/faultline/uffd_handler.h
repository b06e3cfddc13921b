// `faultline handle`: an external page-fault handler for Firecracker's Uffd
// snapshot-restore backend, as a library.
//
// It listens on a Unix socket (created 0600). Each connection is one VM: it
// sends a JSON array of region mappings with its userfaultfd attached, and from
// then on every fault in those regions is served with the bytes at
// offset + (addr - base_host_virt_addr) of the snapshot memory file (or of a
// page server serving that file, protocol v2). Sessions are independent: a bad
// handshake or a VM that exits or crashes ends its own session and nothing else.
// A VM whose handshake is refused gets SIGBUS on its faults (or is killed where
// the kernel cannot poison pages) rather than waiting for ever.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "faultline/network_page_source.h"
#include "faultline/prefetch.h"
#include "faultline/status.h"

namespace faultline {

struct UffdHandlerOptions {
  std::string socket_path;  // where Firecracker connects ("backend_path")
  std::string mem_file;     // the snapshot memory file, or ...
  std::string page_server;  // ... "unix:PATH" / "tcp:HOST:PORT" of `faultline serve-pages`
  // How to reach the page server (TLS, plain TCP, compression); one
  // connection a VM. `push` is ignored: the server pushes whenever the
  // prefetch policy fills in the background.
  NetworkSourceOptions network;
  std::string stats_socket;  // JSON stats for `faultline stats`; default: socket_path + ".stats"
  // Names this socket's sessions "NAME-1", "NAME-2", ... (by connection) in
  // logs and stats, so a platform can tell its VMs apart; empty: ids only.
  std::string session_name;
  int threads_per_session = 1;
  size_t max_sessions = 64;
  std::chrono::milliseconds handshake_timeout{5000};
  // How long one fault may wait for a failing source (see pager.h RetryPolicy).
  std::chrono::milliseconds source_deadline{5000};
  // What each VM's fault server installs besides the faulting page (see
  // prefetch.h): by default adaptive fault-around and background fill.
  PrefetchOptions prefetch;
  // Working sets per session: each session replays `replay` if it fits the
  // image and the session's regions (else logs why not and goes on without
  // it), and records into `record`, written when the session ends (or after
  // `record_for`), replacing the file whole each time.
  WorkingSetFiles working_sets;
};

class UffdHandler {
 public:
  static Result<std::unique_ptr<UffdHandler>> start(const UffdHandlerOptions& options);
  ~UffdHandler();  // stops
  UffdHandler(const UffdHandler&) = delete;
  UffdHandler& operator=(const UffdHandler&) = delete;

  // Ends every session (logging its stats) and stops listening.
  void stop();
  // Live sessions with their counters and latency, totals, and the last
  // ended ones (refused handshakes too) with how each ended, as JSON.
  std::string stats_json() const;
  const std::string& socket_path() const;
  const std::string& stats_socket_path() const;

 private:
  class Impl;
  explicit UffdHandler(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace faultline
