// Postcopy live migration of the KVM VMM's guest between two processes:
//   faultline migrate --listen ADDR ...   the source: runs the guest, pauses it,
//                                          then serves its memory (push + demand)
//   faultline vm receive --from ADDR ...  the destination: resumes at once and
//                                          pulls what the guest touches first
#include <fmt/format.h>
#include <signal.h>

#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "cli/compression_option.h"
#include "cli/size_option.h"
#include "cli/socket_directory.h"
#include "cli/stop_signals.h"
#include "cli/tls_args.h"
#include "cli/vm_output.h"
#include "core/log.h"
#include "faultline/network_page_source.h"
#include "faultline/page_server.h"
#include "migration/source.h"
#include "vm/machine.h"
#include "vm/restore.h"

namespace faultline::cli {
namespace {

using vm::Clock;

double mib(uint64_t bytes) {
  return static_cast<double>(bytes) / (1 << 20);
}

// ---- the source --------------------------------------------------------------

struct MigrateArgs {
  std::string listen;
  std::string ram = "512M";
  uint64_t seed = 1;
  std::string progress_every = "16M";
  uint64_t words_per_page = vm::WorkloadParams{}.words_per_page;
  uint64_t after_progress = 1;
  Compression compression = Compression::kNone;
  TlsArgs tls;
  double wait_s = 300;
  bool quiet = false;
  bool json = false;
};

void print_progress(const migration::MigrationProgress& p) {
  const PageServerStats& s = p.stats;
  fmt::print(
      "migration: pushed {:.0f} MiB, requested {:.1f} MiB, {} of {} pages remaining, "
      "{:.0f} MiB/s{}\n",
      mib(s.pushed_bytes), mib(s.demand_bytes), s.push_remaining, p.total_pages, p.mib_per_s,
      s.active == 0 ? " (destination disconnected; waiting for it)" : "");
  std::fflush(stdout);
}

void migrate(const MigrateArgs& a) {
  const std::string cmd = "migrate";
  if (Status s = check_listen_directory("--listen", a.listen); !s.is_ok()) fail(cmd, s.message());
  migration::MigrationSourceOptions o;
  o.listen = a.listen;
  auto ram_size = parse_size(a.ram);
  if (!ram_size.is_ok()) fail(cmd, "--ram: " + ram_size.status().message());
  o.ram_size = *ram_size;
  auto progress = parse_size(a.progress_every);
  if (!progress.is_ok()) fail(cmd, "--progress-every: " + progress.status().message());
  o.workload = {a.seed, *progress, a.words_per_page};
  o.after_progress = a.after_progress;
  o.compression = a.compression;
  o.tls = a.tls.options;
  o.allow_plain_tcp = a.tls.plain_tcp;
  o.wait = std::chrono::duration<double>(a.wait_s);
  // Signals are waited for by the main thread; threads started from here on
  // inherit the mask.
  const sigset_t stop = block_stop_signals();
  auto source = migration::MigrationSource::boot(o);
  if (!source.is_ok()) {
    const Status& s = source.status();
    fail(cmd, s.code() == ErrorCode::kInvalidArgument ? s.message() : s.to_string());
  }
  vm::Machine& m = (*source)->machine();
  if (!a.json) {
    fmt::print("guest: {} MiB of RAM, workload of {} pages (seed {}); migrating at progress {}\n",
               *ram_size >> 20, m.workload().pages, a.seed, a.after_progress);
  }
  if (Status s =
          (*source)->run_until_paused(progress_hooks(m, a.quiet || a.json, a.after_progress));
      !s.is_ok()) {
    fail(cmd, s.code() == ErrorCode::kInvalidArgument ? s.message() : s.to_string());
  }
  if (Status s = (*source)->capture(); !s.is_ok()) fail(cmd, "capture: " + s.to_string());
  if (Status s = (*source)->serve(); !s.is_ok()) fail(cmd, s.to_string());
  if (!a.json) {
    fmt::print("guest paused at progress {}; serving its memory on {} ({})\n",
               m.last_progress() ? m.last_progress()->index : 0, (*source)->address(),
               a.compression == Compression::kNone
                   ? "uncompressed"
                   : fmt::format("{} compression", compression_name(a.compression)));
    std::fflush(stdout);
  }
  const bool print = !a.quiet && !a.json;
  const migration::MigrationOutcome out =
      (*source)->wait(stop, [&](const migration::MigrationProgress& p) {
        if (print) print_progress(p);
      });
  const PageServerStats& s = out.stats;
  const bool completed = out.completed();
  const double ms = out.ms_after_pause;
  const auto paused = (*source)->paused_at();

  if (a.json) {
    nlohmann::ordered_json j;
    j["completed"] = completed;
    j["paused_at_progress"] = m.last_progress() ? m.last_progress()->index : 0;
    j["ram_bytes"] = *ram_size;
    j["pushed_bytes"] = s.pushed_bytes;
    j["demand_bytes"] = s.demand_bytes;
    j["wire_bytes"] = s.wire_bytes;
    j["zero_bytes"] = s.zero_bytes;
    j["sessions"] = s.v2_sessions;
    j["ms_after_pause"] = ms;
    j["serving_after_pause_ms"] = (*source)->serving_after_pause_ms();
    // steady_clock is CLOCK_MONOTONIC: comparable with the destination's figures.
    j["paused_at_ns"] =
        std::chrono::duration_cast<std::chrono::nanoseconds>(paused.time_since_epoch()).count();
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print(
        "migration {} after {:.0f} ms: {:.0f} MiB pushed, {:.1f} MiB on demand, {:.0f} MiB on "
        "the wire ({:.0f} MiB as zero flags), {} connection(s)\n",
        completed ? "complete" : "NOT complete", ms, mib(s.pushed_bytes), mib(s.demand_bytes),
        mib(s.wire_bytes), mib(s.zero_bytes), s.v2_sessions);
  }
  using Ending = migration::MigrationOutcome::Ending;
  switch (out.ending) {
    case Ending::kCompleted:
      return;
    case Ending::kSignalled:
      fail(cmd, "stopped by a signal before the destination held every page");
    case Ending::kDestinationGone:
      fail(cmd,
           fmt::format("the destination went away and did not come back within {} s", a.wait_s));
    case Ending::kNeverConnected:
      fail(cmd, fmt::format("no destination connected within {} s", a.wait_s));
  }
}

// ---- the destination ---------------------------------------------------------

struct ReceiveArgs {
  std::string from;
  Compression compression = Compression::kNone;
  TlsArgs tls;
  int fault_threads = 1;
  double reconnect_s = 30;
  double wait_s = 30;
  bool quiet = false;
  bool json = false;
};

// Prints progress while pages arrive, and tells the source when every page is here.
class MigrationMonitor {
 public:
  MigrationMonitor(vm::RestoredVm& vm, bool print) : vm_(vm), print_(print) {
    thread_ = std::thread([this] { run(); });
  }
  ~MigrationMonitor() { stop(); }

  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  // Waits until every page is here and the source has been told.
  bool wait_complete(std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return completed_; });
  }
  std::optional<Clock::time_point> completed_at() const {
    std::lock_guard lock(mu_);
    return completed_at_;
  }

 private:
  void run() {
    const uint64_t total = vm_.state.ram_size;
    uint64_t last = 0;
    auto last_print = Clock::now();
    std::unique_lock lock(mu_);
    while (!stopping_) {
      cv_.wait_for(lock, std::chrono::milliseconds(20));
      if (stopping_) break;
      lock.unlock();
      const bool done = !completed_ && vm_.server->everything_resident();
      if (done) {
        Status told = vm_.network->complete();
        if (!told.is_ok()) log().warn("vm receive: telling the source: {}", told.to_string());
      }
      const auto now = Clock::now();
      if (print_ && (done || now - last_print >= std::chrono::seconds(1))) {
        const NetworkSourceStats n = vm_.network->stats();
        const FaultServerStats f = vm_.server->stats();
        const uint64_t have = n.pushed_bytes + n.requested_bytes;
        const double secs = std::chrono::duration<double>(now - last_print).count();
        fmt::print(
            "migration: {:.0f}/{:.0f} MiB here ({} pages pushed, {} requests), {:.0f} MiB/s{}{}\n",
            mib(std::min(have, total)), mib(total), f.pushed_pages, n.requests,
            mib(have - std::min(have, last)) / std::max(secs, 1e-3),
            n.reconnects > 0 ? fmt::format(", {} reconnections", n.reconnects) : "",
            done ? "; every page is here" : "");
        std::fflush(stdout);
        last = have;
        last_print = now;
      }
      lock.lock();
      if (done) {
        completed_ = true;
        completed_at_ = Clock::now();
        cv_.notify_all();
      }
    }
  }

  vm::RestoredVm& vm_;
  const bool print_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool completed_ = false;
  std::optional<Clock::time_point> completed_at_;
  std::thread thread_;
};

void receive(const ReceiveArgs& a) {
  const std::string cmd = "receive";
  vm::ReceiveOptions options;
  options.from = a.from;
  options.fault_threads = a.fault_threads;
  options.network.compression = a.compression;
  options.network.allow_plain_tcp = a.tls.plain_tcp;
  options.network.tls = a.tls.options;
  options.network.reconnect_for =
      std::chrono::milliseconds(static_cast<int64_t>(a.reconnect_s * 1000));
  // The source listens once its guest is paused: keep knocking until then.
  // A connection reset while it starts (it checks its address by binding it
  // once before the guest boots, and a connection caught in that moment is
  // reset) is the same "not yet".
  const auto give_up = Clock::now() + std::chrono::duration<double>(a.wait_s);
  auto received = vm::receive_vm(options);
  while (!received.is_ok() && Clock::now() < give_up &&
         (received.status().code() == ErrorCode::kUnavailable ||
          received.status().code() == ErrorCode::kIo) &&
         (received.status().message().find("refused") != std::string::npos ||
          received.status().message().find("reset by peer") != std::string::npos ||
          received.status().message().find("No such file") != std::string::npos)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    received = vm::receive_vm(options);
  }
  if (!received.is_ok()) fail(cmd, received.status().to_string());
  vm::RestoredVm& r = **received;
  vm::Machine& m = *r.machine;
  MigrationMonitor monitor(r, !a.quiet && !a.json);
  auto end = m.run(progress_hooks(m, a.quiet || a.json, 0));
  if (!end.is_ok()) fail(cmd, end.status().to_string());
  const auto guest_done = Clock::now();
  const bool complete = monitor.wait_complete(std::chrono::seconds(120));
  monitor.stop();
  const PagerStats ps = r.pager->stats();
  const FaultServerStats fs = r.server->stats();
  const NetworkSourceStats ns = r.network->stats();
  if (a.json) {
    nlohmann::ordered_json j = guest_json(m, *end);
    j["source"] = r.source;
    j["ram_bytes"] = r.state.ram_size;
    j["resume_ms"] = ms_since(r.started, m.first_entry());
    j["resumed_at_ns"] = m.first_entry() ? std::chrono::duration_cast<std::chrono::nanoseconds>(
                                               m.first_entry()->time_since_epoch())
                                               .count()
                                         : 0;
    j["guest_done_ms"] = ms_since(r.started, guest_done);
    j["all_pages_ms"] = ms_since(r.started, monitor.completed_at());
    j["faults"] = ps.faults;
    j["fault_p50_us"] = static_cast<double>(ps.fault_latency.p50_ns) / 1e3;
    j["fault_p99_us"] = static_cast<double>(ps.fault_latency.p99_ns) / 1e3;
    j["pushed_pages"] = fs.pushed_pages;
    j["requests"] = ns.requests;
    j["requested_bytes"] = ns.requested_bytes;
    j["pushed_bytes"] = ns.pushed_bytes;
    j["wire_bytes"] = ns.wire_bytes;
    j["corrupt"] = ns.corrupt;
    j["reconnects"] = ns.reconnects;
    fmt::print("{}\n", j.dump(2));
  } else {
    print_results(m);
    fmt::print("received from {}\n", r.source);
    fmt::print("  guest resumed       {:.2f} ms after receive start (first KVM_RUN)\n",
               ms_since(r.started, m.first_entry()));
    fmt::print("  faults              {}  (p50 {:.0f} us, p99 {:.0f} us)\n", ps.faults,
               static_cast<double>(ps.fault_latency.p50_ns) / 1e3,
               static_cast<double>(ps.fault_latency.p99_ns) / 1e3);
    fmt::print(
        "  pages               {} pushed, {} requests ({:.1f} MiB), {} corrupt ranges "
        "fetched again, {} reconnections\n",
        fs.pushed_pages, ns.requests, mib(ns.requested_bytes), ns.corrupt, ns.reconnects);
    fmt::print("  every page here     {:.1f} ms\n", ms_since(r.started, monitor.completed_at()));
    fmt::print("  total               {:.1f} ms to the guest's result\n",
               ms_since(r.started, guest_done));
  }
  if (!complete) fail(cmd, "not every page arrived within 120 s of the guest finishing");
  const auto& results = m.results();
  if (results && results->mismatches != 0) throw CLI::RuntimeError(1);
}

}  // namespace

void add_migrate_commands(CLI::App& app, CLI::App& vm) {
  auto m = std::make_shared<MigrateArgs>();
  CLI::App* mig = app.add_subcommand(
      "migrate", "run the workload guest, then move it (postcopy) to a `vm receive` destination");
  mig->add_option("--listen", m->listen, "where destinations connect: unix:PATH or tcp:HOST:PORT")
      ->required();
  mig->add_option("--ram", m->ram, "guest RAM (K, M, G suffixes)")->capture_default_str();
  mig->add_option("--seed", m->seed, "the workload's seed")->capture_default_str();
  mig->add_option("--progress-every", m->progress_every, "a progress report every ...")
      ->capture_default_str();
  mig->add_option("--words-per-page", m->words_per_page,
                  "words the guest writes and verifies per page (512: all)")
      ->capture_default_str();
  mig->add_option("--after-progress", m->after_progress,
                  "pause the guest at this progress report and migrate it (SIGUSR1: at once)")
      ->capture_default_str();
  add_compression_option(mig, m->compression, "none, lz4 or zstd");
  m->tls.add_to(mig, true);
  mig->add_option("--wait", m->wait_s,
                  "seconds to wait for a destination to connect, or to come back")
      ->capture_default_str();
  mig->add_flag("--quiet", m->quiet, "no progress lines");
  mig->add_flag("--json", m->json, "print the figures as JSON");
  mig->callback([m] { migrate(*m); });

  auto r = std::make_shared<ReceiveArgs>();
  CLI::App* rcv = vm.add_subcommand(
      "receive", "resume a guest migrating from `faultline migrate`, pulling its memory");
  rcv->add_option("--from", r->from, "the source: unix:PATH or tcp:HOST:PORT")->required();
  add_compression_option(rcv, r->compression, "accept none, lz4 or zstd");
  r->tls.add_to(rcv, false);
  rcv->add_option("--fault-threads", r->fault_threads, "fault-server threads")
      ->capture_default_str();
  rcv->add_option("--reconnect-for", r->reconnect_s,
                  "seconds to keep reconnecting when the connection drops")
      ->capture_default_str();
  rcv->add_option("--wait", r->wait_s, "seconds to keep trying until the source listens")
      ->capture_default_str();
  rcv->add_flag("--quiet", r->quiet, "no progress lines");
  rcv->add_flag("--json", r->json, "print the results and figures as JSON");
  rcv->callback([r] { receive(*r); });
}

}  // namespace faultline::cli
