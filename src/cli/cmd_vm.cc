// `faultline vm run | snapshot | restore`: the KVM VMM's command line.
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "cli/compression_option.h"
#include "cli/prefetch_args.h"
#include "cli/size_option.h"
#include "cli/tls_args.h"
#include "cli/vm_output.h"
#include "core/log.h"
#include "core/prefetch_stats_json.h"
#include "faultline/unique_fd.h"
#include "vm/guest_ram.h"
#include "vm/machine.h"
#include "vm/restore.h"
#include "vm/snapshot.h"

namespace faultline::cli {
namespace {

using vm::Clock;

struct RunArgs {
  std::string ram = "512M";
  uint64_t seed = 1;
  std::string progress_every = "16M";
  uint64_t words_per_page = vm::WorkloadParams{}.words_per_page;
  std::string workload = "walk";  // or "invocation"
  uint64_t touch_permille = vm::WorkloadParams{}.touch_permille;
  uint64_t snapshot_after_progress = 0;
  std::string state;
  std::string mem;
  bool keep_running = false;
  bool quiet = false;
  bool json = false;
};

void run_vm(const RunArgs& a) {
  auto ram_size = parse_size(a.ram);
  if (!ram_size.is_ok()) fail("run", "--ram: " + ram_size.status().message());
  if (Status s = vm::check_guest_ram_size(*ram_size); !s.is_ok()) fail("run", s.message());
  auto progress = parse_size(a.progress_every);
  if (!progress.is_ok()) fail("run", "--progress-every: " + progress.status().message());
  const bool snapshots = !a.state.empty() || !a.mem.empty();
  if (snapshots && (a.state.empty() || a.mem.empty())) {
    fail("run", "a snapshot needs both --state and --mem");
  }
  if (a.snapshot_after_progress != 0 && !snapshots) {
    fail("run", "--snapshot-after-progress needs --state and --mem");
  }
  if (snapshots) {
    if (Status s = vm::Machine::pause_on_signal(SIGUSR1); !s.is_ok()) fail("run", s.to_string());
  }

  const auto start = Clock::now();
  auto ram = vm::GuestRam::map(*ram_size);
  if (!ram.is_ok()) fail("run", ram.status().to_string());
  auto machine = vm::Machine::create((*ram)->bytes());
  if (!machine.is_ok()) fail("run", machine.status().to_string());
  vm::Machine& m = **machine;
  vm::WorkloadParams params{a.seed, *progress, a.words_per_page};
  if (a.workload == "invocation") params.kind = vm::WorkloadKind::kInvocation;
  params.touch_permille = a.touch_permille;
  if (Status s = m.boot_workload(params); !s.is_ok()) fail("run", s.to_string());
  if (!a.json) {
    fmt::print("guest: {} MiB of RAM, workload of {} pages (seed {}), {} progress reports\n",
               *ram_size >> 20, m.workload().pages, a.seed, m.workload().total_reports());
  }
  if (a.snapshot_after_progress > m.workload().total_reports()) {
    fail("run", fmt::format("--snapshot-after-progress {}: the workload reports {} times",
                            a.snapshot_after_progress, m.workload().total_reports()));
  }

  nlohmann::ordered_json snapshot_json;
  auto end = m.run(progress_hooks(m, a.quiet || a.json, a.snapshot_after_progress));
  if (!end.is_ok()) fail("run", end.status().to_string());
  if (*end == vm::RunEnd::kPaused) {
    auto figures = vm::write_snapshot(m, a.state, a.mem);
    if (!figures.is_ok()) fail("run", "snapshot: " + figures.status().to_string());
    const uint64_t at = m.last_progress() ? m.last_progress()->index : 0;
    snapshot_json = {{"after_progress", at},
                     {"state", a.state},
                     {"mem", a.mem},
                     {"data_bytes", figures->data_bytes},
                     {"state_bytes", figures->state_bytes},
                     {"ms", figures->ms}};
    if (!a.json) {
      fmt::print(
          "snapshot after progress {}: {} ({} bytes), {} ({} MiB of data, holes for zero "
          "pages) in {:.0f} ms\n",
          at, a.state, figures->state_bytes, a.mem, figures->data_bytes >> 20, figures->ms);
    }
    if (a.keep_running) {
      end = m.run(progress_hooks(m, a.quiet || a.json, 0));
      if (!end.is_ok()) fail("run", end.status().to_string());
    }
  }
  const auto done = Clock::now();
  const auto& results = m.results();
  if (a.json) {
    nlohmann::ordered_json j = guest_json(m, *end);
    j["ram_bytes"] = *ram_size;
    j["seed"] = a.seed;
    if (!snapshot_json.is_null()) j["snapshot"] = snapshot_json;
    j["first_entry_ms"] = ms_since(start, m.first_entry());
    j["total_ms"] = ms_since(start, done);
    fmt::print("{}\n", j.dump(2));
  } else {
    print_results(m);
    fmt::print("total: {:.1f} ms\n", ms_since(start, done));
  }
  if (results && results->mismatches != 0) throw CLI::RuntimeError(1);
}

struct SnapshotArgs {
  int pid = 0;
  double timeout_s = 60;
};

// Signals a `vm run --state S --mem M` process to pause and snapshot, and
// waits for it to exit.
void snapshot_vm(const SnapshotArgs& a) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, a.pid, 0)));
  if (!pidfd) fail("snapshot", fmt::format("process {}: {}", a.pid, std::strerror(errno)));
  if (::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGUSR1, nullptr, 0) != 0) {
    fail("snapshot", fmt::format("signal process {}: {}", a.pid, std::strerror(errno)));
  }
  pollfd p{pidfd.get(), POLLIN, 0};
  const int rc = ::poll(&p, 1, static_cast<int>(a.timeout_s * 1000));
  if (rc <= 0) {
    fail("snapshot", fmt::format("process {} did not exit within {} s", a.pid, a.timeout_s));
  }
  fmt::print("process {} paused its guest, wrote its snapshot and exited\n", a.pid);
}

struct RestoreArgs {
  std::string state;
  std::string mem;
  std::string page_server;
  bool eager = false;
  bool lazy = false;
  int fault_threads = 1;
  bool no_background_fill = false;
  PrefetchArgs prefetch;
  Compression compression = Compression::kNone;
  TlsArgs tls;
  bool quiet = false;
  bool json = false;
};

void restore_vm(const RestoreArgs& a) {
  if (a.eager && a.lazy) fail("restore", "--lazy or --eager, not both");
  vm::RestoreOptions options;
  options.state_file = a.state;
  options.mem_file = a.mem;
  options.page_server = a.page_server;
  options.lazy = !a.eager;
  options.fault_threads = a.fault_threads;
  auto prefetch = a.prefetch.options();
  if (!prefetch.is_ok()) fail("restore", prefetch.status().message());
  options.prefetch = *prefetch;
  if (a.no_background_fill) options.prefetch.fill = false;
  auto working_sets = a.prefetch.working_set_files();
  if (!working_sets.is_ok()) fail("restore", working_sets.status().message());
  options.working_sets = *working_sets;
  if (a.eager && !(options.working_sets.replay.empty() && options.working_sets.record.empty())) {
    fail("restore", "--working-set and --record-working-set need a lazy restore, not --eager");
  }
  options.network.compression = a.compression;
  options.network.allow_plain_tcp = a.tls.plain_tcp;
  options.network.tls = a.tls.options;
  auto restored = vm::restore_vm(options);
  if (!restored.is_ok()) fail("restore", restored.status().to_string());
  vm::RestoredVm& r = **restored;
  vm::Machine& m = *r.machine;
  auto end = m.run(progress_hooks(m, a.quiet || a.json, 0));
  const auto done = Clock::now();
  if (r.working_sets.recording) r.working_sets.recording->finish();
  if (!end.is_ok()) fail("restore", end.status().to_string());
  const char* mode = options.lazy ? "lazy" : "eager";

  PagerStats ps;
  FaultServerStats fs;
  if (r.pager) ps = r.pager->stats();
  if (r.server) fs = r.server->stats();
  const double mib = options.lazy ? static_cast<double>(ps.bytes_served) / (1 << 20)
                                  : static_cast<double>(r.state.ram_size) / (1 << 20);
  if (a.json) {
    nlohmann::ordered_json j = guest_json(m, *end);
    j["mode"] = mode;
    j["source"] = r.source;
    j["ram_bytes"] = r.state.ram_size;
    j["memory_ready_ms"] = ms_since(r.started, r.memory_ready);
    j["first_entry_ms"] = ms_since(r.started, m.first_entry());
    j["first_exit_ms"] = ms_since(r.started, m.first_exit());
    j["total_ms"] = ms_since(r.started, done);
    j["faults"] = ps.faults;
    j["fault_around_pages"] = ps.fault_around_pages;
    j["background_pages"] = fs.filled_pages + fs.pushed_pages;
    j["fully_resident_ms"] = static_cast<double>(fs.fully_resident_ns) / 1e6;
    j["prewarmed"] = ps.prewarmed;
    j["working_set"] = working_set_json(r.working_sets, fs);
    if (options.lazy) j["prefetch"] = prefetch_stats_json(options.prefetch.policy, fs);
    j["zero_pages"] = fs.zero_installs;
    j["mib_served"] = mib;
    j["fault_p50_us"] = static_cast<double>(ps.fault_latency.p50_ns) / 1e3;
    j["fault_p99_us"] = static_cast<double>(ps.fault_latency.p99_ns) / 1e3;
    fmt::print("{}\n", j.dump(2));
  } else {
    print_results(m);
    fmt::print("restore ({}) from {}\n", mode, r.source);
    fmt::print("  memory ready        {:.2f} ms{}\n", ms_since(r.started, r.memory_ready),
               options.lazy ? fmt::format("  ({} boot-critical pages prewarmed)", ps.prewarmed)
                            : std::string("  (every page copied)"));
    fmt::print("  first instruction   {:.2f} ms after restore start (first KVM_RUN)\n",
               ms_since(r.started, m.first_entry()));
    if (options.lazy) {
      fmt::print("  faults              {}  ({:.1f} MiB served, {} zero pages)\n", ps.faults, mib,
                 fs.zero_installs);
    }
    if (const auto& ws = r.working_sets; ws.replay) {
      fmt::print("  working set         {} of its {} pages replayed ahead of the guest\n",
                 fs.replayed_pages, ws.replay->touches().size());
    }
    if (const auto& ws = r.working_sets; ws.recording) {
      fmt::print("  recorded            {} pages into {}\n", ws.recording->pages(),
                 ws.recording->path());
    }
    fmt::print("  total               {:.1f} ms to the guest's result\n",
               ms_since(r.started, done));
  }
  const auto& results = m.results();
  if (results && results->mismatches != 0) throw CLI::RuntimeError(1);
}

}  // namespace

void add_vm_command(CLI::App& app) {
  CLI::App* vm =
      app.add_subcommand("vm", "a minimal KVM VMM: run a guest, snapshot it, restore it");
  vm->require_subcommand(1);

  auto run = std::make_shared<RunArgs>();
  CLI::App* run_cmd = vm->add_subcommand("run", "boot the workload guest; optionally snapshot it");
  run_cmd->add_option("--ram", run->ram, "guest RAM (K, M, G suffixes)")->capture_default_str();
  run_cmd->add_option("--seed", run->seed, "the workload's seed")->capture_default_str();
  run_cmd->add_option("--progress-every", run->progress_every, "a progress report every ...")
      ->capture_default_str();
  run_cmd
      ->add_option("--words-per-page", run->words_per_page,
                   "words the guest writes and verifies per page (512: all)")
      ->capture_default_str();
  run_cmd
      ->add_option("--workload", run->workload,
                   "walk: every page in three passes; invocation: fill, then report ready (the "
                   "last report, a snapshot point) and touch a scattered set of pages")
      ->check(CLI::IsMember({"walk", "invocation"}))
      ->capture_default_str();
  run_cmd
      ->add_option("--touch-permille", run->touch_permille,
                   "invocation: pages touched per 1000 (1..1000)")
      ->capture_default_str();
  run_cmd->add_option("--snapshot-after-progress", run->snapshot_after_progress,
                      "pause at this progress report and write the snapshot");
  run_cmd->add_option("--state", run->state, "the snapshot's state file (SIGUSR1 snapshots too)");
  run_cmd->add_option("--mem", run->mem, "the snapshot's memory file");
  run_cmd->add_flag("--continue", run->keep_running, "keep running after the snapshot");
  run_cmd->add_flag("--quiet", run->quiet, "no progress lines");
  run_cmd->add_flag("--json", run->json, "print the results as JSON");
  run_cmd->callback([run] { run_vm(*run); });

  auto snap = std::make_shared<SnapshotArgs>();
  CLI::App* snap_cmd = vm->add_subcommand(
      "snapshot", "make a running `vm run --state S --mem M` pause, snapshot and exit");
  snap_cmd->add_option("--pid", snap->pid, "the `vm run` process")->required();
  snap_cmd->add_option("--timeout", snap->timeout_s, "seconds to wait for it")
      ->capture_default_str();
  snap_cmd->callback([snap] { snapshot_vm(*snap); });

  auto restore = std::make_shared<RestoreArgs>();
  CLI::App* restore_cmd = vm->add_subcommand("restore", "resume a snapshot in this process");
  restore_cmd->add_option("--state", restore->state, "the snapshot's state file")->required();
  auto* mem = restore_cmd->add_option("--mem", restore->mem, "page source: the memory file");
  auto* server =
      restore_cmd->add_option("--page-server", restore->page_server,
                              "page source: a serve-pages address (unix:, tcp:; v2, pushed)");
  mem->excludes(server);
  restore_cmd->add_flag("--lazy", restore->lazy, "serve pages on first touch (default)");
  restore_cmd->add_flag("--eager", restore->eager, "copy every page before resuming");
  restore_cmd->add_option("--fault-threads", restore->fault_threads, "fault-server threads")
      ->capture_default_str();
  restore->prefetch.add_to(restore_cmd, "the guest's run ends");
  restore_cmd
      ->add_flag("--no-background-fill", restore->no_background_fill,
                 "the same as --no-fill; kept for scripts")
      ->group("");
  add_compression_option(restore_cmd, restore->compression,
                         "--page-server: accept none, lz4 or zstd");
  restore->tls.add_to(restore_cmd, false);
  restore_cmd->add_flag("--quiet", restore->quiet, "no progress lines");
  restore_cmd->add_flag("--json", restore->json, "print the results and figures as JSON");
  restore_cmd->callback([restore] { restore_vm(*restore); });

  add_migrate_commands(app, *vm);
}

}  // namespace faultline::cli
