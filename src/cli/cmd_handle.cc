// `faultline handle`: Firecracker's external page-fault handler; and
// `faultline stats`: what a running handler is doing.
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "cli/commands.h"
#include "cli/compression_option.h"
#include "cli/flag_names.h"
#include "cli/prefetch_args.h"
#include "cli/size_option.h"
#include "cli/socket_directory.h"
#include "cli/stop_signals.h"
#include "cli/tls_args.h"
#include "core/log.h"
#include "faultline/uffd_handler.h"
#include "net/socket_address.h"
#include "net/socket_io.h"

namespace faultline::cli {
namespace {

[[noreturn]] void fail(const std::string& command, const std::string& message) {
  log().error("{}: {}", command, with_flag_names(message));
  throw CLI::RuntimeError(1);
}

void run_handle(UffdHandlerOptions options) {
  for (const auto& [flag, path] :
       {std::pair<std::string, std::string>{"--socket", options.socket_path},
        {"--stats-socket", options.stats_socket}}) {
    if (Status s = check_socket_directory(flag, path); !s.is_ok()) fail("handle", s.message());
  }
  const sigset_t signals = block_stop_signals();
  auto handler = UffdHandler::start(options);
  if (!handler.is_ok()) fail("handle", handler.status().to_string());
  const int signo = wait_for_stop_signal(signals);
  log().info("{} received; ending every session", strsignal(signo));
  (*handler)->stop();
}

void run_stats(const std::string& stats_socket) {
  auto address = net::parse_socket_address("unix:" + stats_socket);
  if (!address.is_ok()) fail("stats", address.status().to_string());
  auto connection = net::connect_socket(*address, std::chrono::seconds(2));
  if (!connection.is_ok()) {
    fail("stats",
         fmt::format("no handler answers on {}: {}", stats_socket, connection.status().message()));
  }
  // A handler's whole stats fit in far less; more would be a stranger on the socket.
  constexpr size_t kMaxStatsBytes = 16 << 20;
  auto text = net::read_to_end(connection->get(), kMaxStatsBytes,
                               net::deadline_after(std::chrono::seconds(5)));
  if (!text.is_ok())
    fail("stats", fmt::format("reading {}: {}", stats_socket, text.status().message()));
  if (text->empty()) fail("stats", fmt::format("{} sent nothing", stats_socket));
  fmt::print("{}", *text);
}

}  // namespace

void add_handle_command(CLI::App& app) {
  auto options = std::make_shared<UffdHandlerOptions>();
  CLI::App* handle = app.add_subcommand(
      "handle", "serve Firecracker's Uffd page faults from a snapshot memory file");
  handle
      ->add_option("--socket", options->socket_path,
                   "Unix socket Firecracker connects to (mem_backend.backend_path)")
      ->required();
  auto* mem = handle->add_option("--mem-file", options->mem_file, "the snapshot memory file");
  auto* server = handle->add_option("--page-server", options->page_server,
                                    "take pages from `faultline serve-pages` at this address "
                                    "(serving the memory file with --ram-start 0)");
  mem->excludes(server);
  server->excludes(mem);
  handle->add_option("--stats-socket", options->stats_socket,
                     "where `faultline stats` reads JSON (default: SOCKET.stats)");
  handle->add_option("--threads", options->threads_per_session, "fault threads per VM")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  auto prefetch = std::make_shared<PrefetchArgs>();
  prefetch->add_to(handle, "the session ends");
  // The default since the prefetch scheduler; kept so older scripts still run.
  auto legacy_fill = std::make_shared<bool>(false);
  handle->add_flag("--background-fill", *legacy_fill, "the default now; kept for scripts")
      ->group("");
  add_compression_option(handle, options->network.compression,
                         "--page-server: accept none, lz4 or zstd");
  auto tls = std::make_shared<TlsArgs>();
  tls->add_to(handle, false);
  handle->add_option("--session-name", options->session_name,
                     "name this socket's sessions NAME-1, NAME-2, ... in logs and stats");
  auto handshake_timeout_s = std::make_shared<double>(options->handshake_timeout.count() / 1000.0);
  handle
      ->add_option("--handshake-timeout", *handshake_timeout_s,
                   "seconds a VM has to send its handshake; when all sessions are taken, a new "
                   "VM takes the place of the oldest still handshaking")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 86400.0));
  handle->callback([options, tls, mem, server, handshake_timeout_s, prefetch, legacy_fill] {
    auto prefetch_options = prefetch->options();
    if (!prefetch_options.is_ok()) fail("handle", prefetch_options.status().message());
    options->prefetch = *prefetch_options;
    auto working_sets = prefetch->working_set_files();
    if (!working_sets.is_ok()) fail("handle", working_sets.status().message());
    options->working_sets = *working_sets;
    options->handshake_timeout =
        std::chrono::milliseconds(std::max<int64_t>(1, std::llround(*handshake_timeout_s * 1000)));
    if (mem->count() == 0 && server->count() == 0) {
      fail("handle", "give --mem-file FILE or --page-server ADDRESS");
    }
    options->network.tls = tls->options;
    options->network.allow_plain_tcp = tls->plain_tcp;
    run_handle(*options);
  });

  auto stats_socket = std::make_shared<std::string>();
  auto socket = std::make_shared<std::string>();
  CLI::App* stats = app.add_subcommand("stats", "print a running handler's sessions as JSON");
  auto* socket_option =
      stats->add_option("--socket", *socket, "the handler's --socket (reads SOCKET.stats)");
  auto* stats_option = stats->add_option("--stats-socket", *stats_socket, "the stats socket");
  socket_option->excludes(stats_option);
  stats->callback([socket, stats_socket] {
    if (socket->empty() && stats_socket->empty()) fail("stats", "give --socket or --stats-socket");
    run_stats(stats_socket->empty() ? *socket + ".stats" : *stats_socket);
  });
}

}  // namespace faultline::cli
