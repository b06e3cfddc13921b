// `faultline serve-pages`: run a PageServer until SIGINT or SIGTERM.
#include <signal.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "cli/commands.h"
#include "cli/compression_option.h"
#include "cli/flag_names.h"
#include "cli/size_option.h"
#include "cli/socket_directory.h"
#include "cli/stop_signals.h"
#include "cli/tls_args.h"
#include "core/log.h"
#include "faultline/page_server.h"
#include "faultline/version.h"
#include "net/socket_address.h"

namespace faultline::cli {
namespace {

struct ServePagesArgs {
  std::string listen;
  std::string mem_file;
  std::string ram_start = "0";
  int max_clients = PageServerOptions{}.max_clients;
  Compression compression = Compression::kNone;
  bool no_push = false;
  TlsArgs tls;
  // Per-client limits, in the units users type.
  double handshake_timeout_s = to_seconds(PageServerOptions{}.handshake_timeout);
  double idle_timeout_s = to_seconds(PageServerOptions{}.idle_timeout);
  std::string reply_limit = "8M";
  std::string server_reply_limit = "256M";
  uint32_t max_bad_requests = PageServerOptions{}.max_bad_requests;

  static double to_seconds(std::chrono::milliseconds ms) { return ms.count() / 1000.0; }
};

std::chrono::milliseconds milliseconds_of(double seconds) {
  return std::chrono::milliseconds(std::max<int64_t>(1, std::llround(seconds * 1000)));
}

// "0x80000000" or "2147483648".
std::optional<uint64_t> parse_address(const std::string& text) {
  const bool hex = text.starts_with("0x") || text.starts_with("0X");
  const char* begin = text.data() + (hex ? 2 : 0);
  const char* end = text.data() + text.size();
  uint64_t value = 0;
  auto [stop, error] = std::from_chars(begin, end, value, hex ? 16 : 10);
  if (begin == end || error != std::errc() || stop != end) return std::nullopt;
  return value;
}

[[noreturn]] void fail(const std::string& message) {
  log().error("serve-pages: {}", with_flag_names(message));
  throw CLI::RuntimeError(1);
}

void run_serve_pages(const ServePagesArgs& args) {
  auto ram_start = parse_address(args.ram_start);
  if (!ram_start) {
    fail(fmt::format("--ram-start \"{}\" is not an address (decimal, or hex with 0x)",
                     args.ram_start));
  }
  auto reply_limit = parse_size(args.reply_limit);
  if (!reply_limit) fail("--reply-limit: " + reply_limit.status().message());
  auto server_reply_limit = parse_size(args.server_reply_limit);
  if (!server_reply_limit) fail("--server-reply-limit: " + server_reply_limit.status().message());
  if (Status s = check_listen_directory("--listen", args.listen); !s.is_ok()) fail(s.message());
  const sigset_t signals = block_stop_signals();
  PageServerOptions options;
  options.handshake_timeout = milliseconds_of(args.handshake_timeout_s);
  options.idle_timeout = milliseconds_of(args.idle_timeout_s);
  options.connection_reply_limit = *reply_limit;
  options.server_reply_limit = *server_reply_limit;
  options.max_bad_requests = args.max_bad_requests;
  options.listen = args.listen;
  options.mem_file = args.mem_file;
  options.ram_start = *ram_start;
  options.max_clients = args.max_clients;
  options.compression = args.compression;
  options.push = !args.no_push;
  options.tls = args.tls.options;
  options.allow_plain_tcp = args.tls.plain_tcp;
  auto server = PageServer::start(options);
  if (!server) fail(server.status().to_string());

  const std::string& address = (*server)->address();
  log().info("faultline {}: serving pages of {} (ram_start {:#x}) on {}", FAULTLINE_VERSION_STRING,
             args.mem_file, *ram_start, address);
  auto parsed = net::parse_socket_address(address);
  if (parsed && !net::is_loopback_only(*parsed) && args.tls.options.cert_file.empty()) {
    log().warn(
        "{} accepts connections from other hosts in plaintext (--plain-tcp), "
        "unauthenticated: anyone who can reach it can read guest memory",
        address);
  }

  const int signo = wait_for_stop_signal(signals);
  log().info("{} received; stopping", strsignal(signo));
  (*server)->stop();
  const PageServerStats stats = (*server)->stats();
  log().info("served {} pages ({} bytes) over {} connections; {} bad requests", stats.requests,
             stats.bytes, stats.connections, stats.bad_requests);
}

}  // namespace

void add_serve_pages_command(CLI::App& app) {
  auto args = std::make_shared<ServePagesArgs>();
  CLI::App* cmd = app.add_subcommand("serve-pages", "serve a snapshot memory file to page sources");
  cmd->add_option("--listen", args->listen, "unix:PATH or tcp:HOST:PORT (port 0 picks one)")
      ->required();
  cmd->add_option("--mem-file", args->mem_file, "the snapshot memory file")->required();
  cmd->add_option("--ram-start", args->ram_start,
                  "guest-physical address of the file's first byte (0x hex or decimal)")
      ->required();
  cmd->add_option("--max-clients", args->max_clients,
                  "connections served at once; a new one takes the place of the oldest that "
                  "has not finished its handshake")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--handshake-timeout", args->handshake_timeout_s,
                  "seconds a new connection has for its v2 handshake or first v1 request")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 86400.0));
  cmd->add_option("--idle-timeout", args->idle_timeout_s,
                  "seconds after which a connection that sends nothing (and, v2, is sent "
                  "nothing) is closed")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 86400.0));
  cmd->add_option("--reply-limit", args->reply_limit,
                  "v2 reply bytes queued for one client before its requests wait unread")
      ->capture_default_str();
  cmd->add_option("--server-reply-limit", args->server_reply_limit,
                  "v2 reply bytes queued for all clients together")
      ->capture_default_str();
  cmd->add_option("--max-bad-requests", args->max_bad_requests,
                  "v2 requests outside the image before the client is disconnected")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  add_compression_option(cmd, args->compression, "v2 clients that accept it get none, lz4 or zstd");
  cmd->add_flag("--no-push", args->no_push, "v2: answer requests only, never push");
  args->tls.add_to(cmd, true);
  cmd->callback([args] { run_serve_pages(*args); });
}

}  // namespace faultline::cli
