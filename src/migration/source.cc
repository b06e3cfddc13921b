#include "migration/source.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <random>

#include "core/log.h"
#include "net/socket_address.h"
#include "net/stream_connect.h"
#include "net/tls.h"
#include "vm/state_file.h"

namespace faultline::migration {
namespace {

using vm::Clock;

double mib(uint64_t bytes) {
  return static_cast<double>(bytes) / (1 << 20);
}

double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// Binds the address once and loads the TLS files, so that a taken port, a
// missing directory or a bad certificate is refused before the guest runs
// rather than after it paused (serve() binds again).
Status check_can_serve(const net::SocketAddress& address, const TlsOptions& tls) {
  auto listener = net::listen_socket(address);
  if (!listener.is_ok()) {
    return listener.status().with_context("MigrationSourceOptions::listen " + address.to_string());
  }
  // `listener` goes out of scope here, taking its socket file with it (only
  // while the file is still the one it bound).
  if (tls.cert_file.empty() && tls.key_file.empty() && tls.ca_file.empty()) return Status::ok();
  auto context = net::TlsContext::server(tls);
  return context.is_ok() ? Status::ok() : context.status();
}

}  // namespace

Result<std::unique_ptr<MigrationSource>> MigrationSource::boot(MigrationSourceOptions options) {
  auto address = net::parse_socket_address(options.listen);
  if (!address.is_ok())
    return invalid_argument("MigrationSourceOptions::listen: " + address.status().message());
  // Refused before the guest runs, not after (PageServer::start checks it again).
  if (address->kind == net::SocketAddress::Kind::kTcp && options.tls.cert_file.empty() &&
      !options.allow_plain_tcp) {
    return net::plain_tcp_refused(*address, "TlsOptions::cert_file and TlsOptions::key_file");
  }
  if (Status s = check_can_serve(*address, options.tls); !s.is_ok()) return s;
  if (Status s = vm::check_guest_ram_size(options.ram_size); !s.is_ok()) return s;
  if (Status s = vm::Machine::pause_on_signal(SIGUSR1); !s.is_ok()) return s;

  std::unique_ptr<MigrationSource> source(new MigrationSource(std::move(options)));
  auto ram = vm::GuestRam::map(source->options_.ram_size);
  if (!ram.is_ok()) return ram.status();
  source->ram_ = std::move(ram).value();
  auto machine = vm::Machine::create(source->ram_->bytes());
  if (!machine.is_ok()) return machine.status();
  source->machine_ = std::move(machine).value();
  vm::Machine& m = *source->machine_;
  if (Status s = m.boot_workload(source->options_.workload); !s.is_ok()) return s;
  const uint64_t after = source->options_.after_progress;
  if (after == 0 || after > m.workload().total_reports()) {
    return invalid_argument(
        fmt::format("MigrationSourceOptions::after_progress {}: must be in [1, {}]", after,
                    m.workload().total_reports()));
  }
  return source;
}

MigrationSource::~MigrationSource() {
  if (server_) server_->stop();
}

Status MigrationSource::run_until_paused(const vm::RunHooks& hooks) {
  auto end = machine_->run(hooks);
  if (!end.is_ok()) return end.status();
  if (*end == vm::RunEnd::kFinished) {
    return Status(ErrorCode::kInvalidArgument, "the guest finished before it could be migrated");
  }
  paused_ = Clock::now();
  return Status::ok();
}

Status MigrationSource::capture() {
  auto state = machine_->capture();
  if (!state.is_ok()) return state.status();
  state_ = vm::encode_vm_state(*state);
  return Status::ok();
}

Status MigrationSource::serve() {
  ServedMemory memory;
  memory.source = borrow_memory_page_source(ram_->bytes(), 0);
  memory.ram_start = 0;
  memory.size = options_.ram_size;
  memory.image_id = std::random_device{}() | (uint64_t{std::random_device{}()} << 32);
  memory.state = std::move(state_);
  PageServerOptions server_options;
  server_options.listen = options_.listen;
  server_options.compression = options_.compression;
  server_options.push = true;
  server_options.tls = options_.tls;
  server_options.allow_plain_tcp = options_.allow_plain_tcp;
  server_options.on_complete = [this] {
    std::lock_guard lock(mu_);
    completed_at_ = Clock::now();
  };
  auto server = PageServer::start(server_options, std::move(memory));
  if (!server.is_ok()) return server.status();
  server_ = std::move(server).value();
  serving_ms_ = ms_between(paused_, Clock::now());
  return Status::ok();
}

MigrationOutcome MigrationSource::wait(
    const sigset_t& stop, const std::function<void(const MigrationProgress&)>& on_progress) {
  using Ending = MigrationOutcome::Ending;
  const uint64_t total_pages = options_.ram_size / kMinPageSize;
  uint64_t last_bytes = 0;
  auto last_at = Clock::now();
  bool connected_once = false;
  auto last_connected = paused_;
  MigrationOutcome outcome;
  outcome.ending = Ending::kNeverConnected;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (completed_at_) {
        outcome.ending = Ending::kCompleted;
        break;
      }
    }
    // SIGINT / SIGTERM end the migration (the destination then fails visibly);
    // SIGHUP, if in the set, asks for nothing.
    const timespec tick{0, 100'000'000};
    const int signo = ::sigtimedwait(&stop, nullptr, &tick);
    if (signo == SIGHUP) log().info("SIGHUP received: nothing to reload; still migrating");
    if (signo > 0 && signo != SIGHUP) {
      outcome.ending = Ending::kSignalled;
      break;
    }
    const PageServerStats s = server_->stats();
    connected_once = connected_once || s.v2_sessions > 0;
    if (s.active > 0) last_connected = Clock::now();
    // Nobody came, or the destination left and did not come back: give up
    // loudly rather than wait forever (the guest stays paused here).
    if (Clock::now() - last_connected > options_.wait) {
      outcome.ending = connected_once ? Ending::kDestinationGone : Ending::kNeverConnected;
      break;
    }
    if (Clock::now() - last_at < std::chrono::seconds(1)) continue;
    const uint64_t bytes = s.pushed_bytes + s.demand_bytes;
    const double secs = std::chrono::duration<double>(Clock::now() - last_at).count();
    if (connected_once && on_progress) {
      on_progress({s, total_pages, mib(bytes - last_bytes) / std::max(secs, 1e-3)});
    }
    last_bytes = bytes;
    last_at = Clock::now();
  }
  outcome.stats = server_->stats();
  server_->stop();  // no more on_complete calls after this
  std::lock_guard lock(mu_);
  outcome.ms_after_pause = ms_between(paused_, outcome.completed() ? *completed_at_ : Clock::now());
  return outcome;
}

}  // namespace faultline::migration
