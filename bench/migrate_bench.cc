// faultline-migrate-bench: postcopy migration of the KVM guest (default 1 GiB)
// between two processes over loopback, with and without compression, and
// optionally QEMU's own postcopy of a 1 GiB guest on the same machine, in one
// table. Each faultline row is one `faultline migrate` + `faultline vm receive`
// pair; figures come from their JSON.
//
//   total      source pause -> the destination holds every page (COMPLETE)
//   pause      source pause -> the destination's first KVM_RUN (the guest's downtime)
//   fault p50/p99  demand faults on the destination, served while the push runs
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "os_linux/child_process.h"

namespace {

using faultline::ChildProcess;

// A child whose stdout and stderr go to files.
struct Child {
  ChildProcess process;  // not running if it could not be started
  std::string out;
  std::string err;
};

Child spawn(const std::vector<std::string>& args, const std::string& out) {
  Child c;
  c.out = out;
  c.err = out + ".err";
  auto process =
      ChildProcess::spawn(args, {.stdout_file = c.out, .stderr_file = c.err, .search_path = true});
  if (process.is_ok()) c.process = std::move(process).value();
  return c;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Exit status and parsed stdout.
std::pair<int, nlohmann::json> finish(Child& c) {
  const int code = c.process.wait().code();
  return {code, nlohmann::json::parse(slurp(c.out), nullptr, false)};
}

struct Row {
  std::string name;
  bool ok = false;
  std::string why;
  double total_ms = 0;
  double pause_ms = 0;
  double p50_us = -1;
  double p99_us = -1;
  double avg_us = -1;
  uint64_t requests = 0;
  double wire_mib = -1;
  std::string note;
};

Row run_faultline(const std::string& cli, const std::string& dir, const std::string& ram,
                  const std::string& compression, uint64_t after_progress) {
  Row row;
  row.name = compression == "none" ? "faultline" : "faultline + " + compression;
  const std::string sock = dir + "/migrate-" + compression + ".sock";
  std::filesystem::remove(sock);
  const std::vector<std::string> workload = {"--ram", ram, "--progress-every", "16M"};
  std::vector<std::string> src = {cli,
                                  "migrate",
                                  "--json",
                                  "--listen",
                                  "unix:" + sock,
                                  "--after-progress",
                                  std::to_string(after_progress),
                                  "--compression",
                                  compression};
  src.insert(src.end(), workload.begin(), workload.end());
  Child source = spawn(src, dir + "/source-" + compression + ".json");
  Child dest = spawn({cli, "vm", "receive", "--json", "--wait", "120", "--compression", compression,
                      "--from", "unix:" + sock},
                     dir + "/dest-" + compression + ".json");
  if (!source.process.running() || !dest.process.running()) {
    row.why = "could not start " + cli;
    return row;
  }
  auto [dcode, d] = finish(dest);
  auto [scode, s] = finish(source);
  if (dcode != 0 || scode != 0 || d.is_discarded() || s.is_discarded()) {
    row.why = fmt::format("source exit {}, destination exit {}: {}", scode, dcode,
                          slurp(dcode != 0 ? dest.err : source.err).substr(0, 400));
    return row;
  }
  if (d["mismatches"] != 0 || d["finished"] != true) {
    row.why = "the migrated guest's result is WRONG";
    return row;
  }
  row.ok = true;
  row.total_ms = s["ms_after_pause"].get<double>();
  row.pause_ms =
      static_cast<double>(d["resumed_at_ns"].get<int64_t>() - s["paused_at_ns"].get<int64_t>()) /
      1e6;
  row.p50_us = d["fault_p50_us"].get<double>();
  row.p99_us = d["fault_p99_us"].get<double>();
  row.requests = d["requests"].get<uint64_t>();
  row.wire_mib = static_cast<double>(s["wire_bytes"].get<uint64_t>()) / (1 << 20);
  row.note = fmt::format("{} faults, {} reconnections, checksum {}", d["faults"].get<uint64_t>(),
                         d["reconnects"].get<uint64_t>(), d["checksum"].get<std::string>());
  return row;
}

Row run_qemu(const std::string& script, const std::string& dir, int runs) {
  Row row;
  row.name = "QEMU 10 postcopy (TCG)";
  Child c =
      spawn({"python3", script, "--json", "--runs", std::to_string(runs), "--precopy-seconds", "0"},
            dir + "/qemu.json");
  if (!c.process.running()) {
    row.why = "python3 not found";
    return row;
  }
  c.process.wait();
  std::istringstream lines(slurp(c.out));
  std::string line;
  std::optional<nlohmann::json> median;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("kind", "") == "median") median = j;
  }
  if (!median) {
    row.why = "no result (run `make bench-qemu` to see why): " + slurp(c.err).substr(0, 300);
    return row;
  }
  const auto& m = *median;
  auto num = [&](const char* key) {
    return m.contains(key) && m[key].is_number() ? m[key].get<double>() : -1.0;
  };
  row.ok = !m.value("corrupt", false);
  if (!row.ok) row.why = "QEMU corrupted the guest";
  row.total_ms = num("total_ms");
  row.pause_ms = num("resume_pause_ms");
  row.p50_us = num("fault_latency_p50_us");
  row.p99_us = num("fault_latency_p99_us");
  row.avg_us = num("avg_fault_latency_us");
  row.requests = static_cast<uint64_t>(std::max(0.0, num("requests")));
  row.wire_mib = num("transferred_mib");
  row.note = fmt::format("median of {}; {}", runs, m.value("qemu_version", std::string("?")));
  return row;
}

std::string cell(double v, const char* fmt_spec = "{:.1f}") {
  return v < 0 ? std::string("n/a") : fmt::format(fmt::runtime(fmt_spec), v);
}

}  // namespace

int main(int argc, char** argv) {
  std::string cli = FAULTLINE_CLI;
  std::string ram = "1G";
  uint64_t after_progress = 96;  // mid-way through pass 2 of a 1 GiB guest
  bool with_qemu = false;
  int qemu_runs = 3;
  std::string dir = "build/migrate-bench";
  CLI::App app{"faultline-migrate-bench: postcopy migration over loopback, against QEMU's"};
  app.add_option("--faultline", cli, "the faultline binary")->capture_default_str();
  app.add_option("--ram", ram, "guest RAM")->capture_default_str();
  app.add_option("--after-progress", after_progress, "migrate at this progress report")
      ->capture_default_str();
  app.add_flag("--with-qemu", with_qemu,
               "also run bench/qemu_postcopy/run.py (downloads QEMU 10 first: make bench-qemu)");
  app.add_option("--qemu-runs", qemu_runs, "QEMU runs (median)")->capture_default_str();
  app.add_option("--dir", dir, "where the runs' JSON goes")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::filesystem::create_directories(dir);

  std::vector<Row> rows;
  for (const char* compression : {"none", "lz4", "zstd"}) {
    fmt::print(stderr, "migrating a {} guest, compression {}...\n", ram, compression);
    rows.push_back(run_faultline(cli, dir, ram, compression, after_progress));
  }
  if (with_qemu) {
    fmt::print(stderr, "QEMU postcopy, {} run(s)...\n", qemu_runs);
    rows.push_back(run_qemu(FAULTLINE_SOURCE_DIR "/bench/qemu_postcopy/run.py", dir, qemu_runs));
  }

  fmt::print("\npostcopy migration of a {} guest over loopback (one run each unless noted)\n\n",
             ram);
  fmt::print("| {:<24} | {:>9} | {:>9} | {:>9} | {:>9} | {:>8} | {:>8} | {}\n", "", "total ms",
             "pause ms", "fault p50", "fault p99", "requests", "wire MiB", "notes");
  fmt::print("|{:-<26}|{:->11}|{:->11}|{:->11}|{:->11}|{:->10}|{:->10}|------\n", "", "", "", "",
             "", "", "");
  const Row* base = rows.empty() || !rows[0].ok ? nullptr : &rows[0];
  for (const Row& r : rows) {
    if (!r.ok) {
      fmt::print("| {:<24} | FAILED: {}\n", r.name, r.why);
      continue;
    }
    fmt::print("| {:<24} | {:>9} | {:>9} | {:>6} us | {:>6} us | {:>8} | {:>8} | {}\n", r.name,
               cell(r.total_ms, "{:.0f}"), cell(r.pause_ms, "{:.1f}"), cell(r.p50_us, "{:.0f}"),
               cell(r.p99_us, "{:.0f}"), r.requests, cell(r.wire_mib, "{:.0f}"), r.note);
  }
  if (base != nullptr) {
    fmt::print(
        "\nratios to the first row (lower is better for faultline's other rows; for QEMU, "
        "QEMU / faultline):\n");
    for (const Row& r : rows) {
      if (!r.ok || &r == base) continue;
      fmt::print("  {:<24} total {:.2f}x, pause {:.2f}x, fault p99 {}\n", r.name,
                 r.total_ms / base->total_ms, r.pause_ms / base->pause_ms,
                 r.p99_us < 0 || base->p99_us <= 0
                     ? std::string("n/a")
                     : fmt::format("{:.2f}x", r.p99_us / base->p99_us));
    }
  }
  bool all_ok = true;
  for (const Row& r : rows) all_ok = all_ok && r.ok;
  return all_ok ? 0 : 1;
}
