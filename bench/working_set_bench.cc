// faultline-ws-bench: repeated restores of a KVM guest whose work after the
// resume is a "function invocation" (the invocation workload: a scattered,
// seeded 15% of 1 GiB read and written), with and without a recorded working
// set. Each row is `faultline vm restore --json` of the same snapshot, taken at
// the workload's ready report; figures come from its JSON, medians of --runs
// rounds (each round runs every row once).
//
//   to result    restore start -> the guest reported its result (total_ms),
//                with the fastest and slowest run beside it
//   guest ms     first KVM_RUN -> the result: the invocation itself
//   faults       demand faults the fault server served (faults)
//   replayed     pages installed ahead of the guest from the working set
//
// Every restore must end with the uninterrupted run's checksum, else exit 1.
// The working-set rows need `vm restore --record-working-set / --working-set`;
// where the binary lacks them, those rows say so and the targets are not judged.
// Where KVM cannot run the guest, the bench says so and exits 0.
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
#include "vm/probe.h"

namespace {

using faultline::ChildProcess;
using nlohmann::json;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs argv with stdout and stderr in files; exit code and stdout as JSON.
struct Ran {
  int code = -1;
  json out;
  std::string err;
};

Ran run(const std::vector<std::string>& argv, const std::string& out) {
  Ran r;
  auto process = ChildProcess::spawn(argv, {.stdout_file = out, .stderr_file = out + ".err"});
  if (!process.is_ok()) {
    r.err = process.status().to_string();
    return r;
  }
  r.code = process->wait().code();
  r.out = json::parse(slurp(out), nullptr, false);
  r.err = slurp(out + ".err");
  return r;
}

struct Guest {
  std::string checksum;
  uint64_t pages = 0;           // pages the invocation touches
  uint64_t workload_pages = 0;  // all of them
  uint64_t ready_report = 0;
  double run_ms = 0;
};

struct Config {
  std::string cli = FAULTLINE_CLI;
  std::string restore_cli;  // empty: cli
  std::string dir = "build/ws-bench";
  std::string ram = "1G";
  uint64_t seed = 1;
  uint64_t touch_permille = 150;
  uint64_t words_per_page = 1;
  int runs = 3;
  std::vector<std::string> workload() const {
    return {"--workload",
            "invocation",
            "--ram",
            ram,
            "--seed",
            std::to_string(seed),
            "--touch-permille",
            std::to_string(touch_permille),
            "--words-per-page",
            std::to_string(words_per_page),
            "--progress-every",
            "16M"};
  }
  std::string state() const { return dir + "/invocation.state"; }
  std::string mem() const { return dir + "/invocation.mem"; }
};

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The uninterrupted run's result, then the snapshot at the ready report.
std::optional<Guest> prepare(const Config& c, std::string& why) {
  Ran plain = run(concat({c.cli, "vm", "run", "--json"}, c.workload()), c.dir + "/run.json");
  if (plain.code != 0 || plain.out.is_discarded() || plain.out["finished"] != true) {
    why = fmt::format("the uninterrupted run failed (exit {}): {}", plain.code,
                      plain.err.substr(0, 400));
    return std::nullopt;
  }
  Guest g;
  g.checksum = plain.out["checksum"].get<std::string>();
  g.pages = plain.out["pages"].get<uint64_t>();
  g.ready_report = plain.out["progress_total"].get<uint64_t>();
  g.run_ms = plain.out["total_ms"].get<double>();
  Ran snap = run(concat({c.cli, "vm", "run", "--json", "--snapshot-after-progress",
                         std::to_string(g.ready_report), "--state", c.state(), "--mem", c.mem()},
                        c.workload()),
                 c.dir + "/snapshot.json");
  if (snap.code != 0 || snap.out.is_discarded() ||
      snap.out["snapshot"]["after_progress"] != g.ready_report) {
    why = fmt::format("the snapshot at report {} failed (exit {}): {}", g.ready_report, snap.code,
                      snap.err.substr(0, 400));
    return std::nullopt;
  }
  g.workload_pages = (snap.out["ram_bytes"].get<uint64_t>() - (1 << 20)) / 4096;
  return g;
}

// One figure of a row: its runs' values, and their median.
struct Figure {
  std::vector<double> runs;
  double median() const {
    std::vector<double> v = runs;
    std::sort(v.begin(), v.end());
    return v.empty() ? -1 : v[v.size() / 2];
  }
};

struct Row {
  std::string name;
  std::vector<std::string> flags;  // a run's flags; "{run}" is replaced by its number
  std::string missing;             // why the row cannot run with this binary
  std::string why;                 // why a run failed
  Figure ms, guest_ms, faults, replayed, background;
  bool ok() const { return missing.empty() && why.empty() && !ms.runs.empty(); }
};

std::vector<std::string> with_run(std::vector<std::string> flags, int n) {
  for (std::string& f : flags) {
    if (const auto at = f.find("{run}"); at != std::string::npos) {
      f.replace(at, 5, std::to_string(n));
    }
  }
  return flags;
}

// Pages the restore installed from its working set: "working_set" in `vm
// restore --json` where the binary has working sets; -1 where it has none.
double replayed_pages(const json& out) {
  if (!out.contains("working_set") || !out["working_set"].is_object()) return -1;
  return out["working_set"].value("replayed_pages", 0.0);
}

// Run `n` of the row (from 1): one restore, its figures added to the row's.
void measure_once(const Config& c, const Guest& g, int index, int n, Row& row) {
  if (!row.missing.empty() || !row.why.empty()) return;
  const std::string out = fmt::format("{}/restore-{}-{}.json", c.dir, index, n);
  Ran r = run(concat({c.restore_cli, "vm", "restore", "--json", "--quiet", "--state", c.state(),
                      "--mem", c.mem()},
                     with_run(row.flags, n)),
              out);
  if (r.code != 0 || r.out.is_discarded()) {
    row.why = fmt::format("exit {}: {}", r.code, r.err.substr(0, 300));
    return;
  }
  if (r.out["finished"] != true || r.out["checksum"] != g.checksum || r.out["mismatches"] != 0 ||
      r.out["pages"] != g.pages) {
    row.why = fmt::format("WRONG result: checksum {}, {} mismatches (uninterrupted: {})",
                          r.out.value("checksum", std::string("none")),
                          r.out.value("mismatches", uint64_t{0}), g.checksum);
    return;
  }
  const double total = r.out["total_ms"].get<double>();
  row.ms.runs.push_back(total);
  row.guest_ms.runs.push_back(total - r.out["first_entry_ms"].get<double>());
  row.faults.runs.push_back(r.out.value("faults", 0.0));
  row.replayed.runs.push_back(replayed_pages(r.out));
  row.background.runs.push_back(r.out.value("background_pages", 0.0));
}

bool restore_has_flag(const Config& c, const std::string& flag) {
  run({c.restore_cli, "vm", "restore", "--help"}, c.dir + "/restore-help.txt");
  const std::string text = slurp(c.dir + "/restore-help.txt");
  return text.find(flag + " ") != std::string::npos || text.find(flag + "=") != std::string::npos;
}

std::string cell(double v, const char* spec = "{:.0f}") {
  return v < 0 ? std::string("n/a") : fmt::format(fmt::runtime(spec), v);
}

// The two targets for a restore with a working set against the one
// without, under the same policy; false if a target is missed.
bool judge(const Row& without, const Row& with) {
  fmt::print("\n{} against {}:\n", with.name, without.name);
  if (!without.ok() || !with.ok()) {
    fmt::print("  not judged: {}\n",
               !with.missing.empty() ? with.missing : "a row did not complete");
    return false;
  }
  const double faults_without = without.faults.median(), faults_with = with.faults.median();
  const double ms_without = without.ms.median(), ms_with = with.ms.median();
  const double reduction = faults_without > 0 ? 1 - faults_with / faults_without : 0;
  const double ratio = ms_with / ms_without;
  const bool faults_met = reduction >= 0.9;
  const bool time_met = ratio <= 0.5;
  fmt::print("  demand faults {:.0f} -> {:.0f}: {:.1f}% fewer (target >= 90%): {}\n",
             faults_without, faults_with, 100 * reduction, faults_met ? "met" : "NOT met");
  fmt::print("  time to result {:.1f} -> {:.1f} ms: {:.2f}x (target <= 0.5x): {}\n", ms_without,
             ms_with, ratio, time_met ? "met" : "NOT met");
  return faults_met && time_met;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  CLI::App app{
      "faultline-ws-bench: restores of a function-invocation guest, with and without "
      "a recorded working set"};
  app.add_option("--faultline", c.cli, "the faultline binary")->capture_default_str();
  app.add_option("--restore-with", c.restore_cli,
                 "another faultline binary for the restores (the snapshot's format is shared)");
  app.add_option("--dir", c.dir, "where the snapshot, working sets and JSON go")
      ->capture_default_str();
  app.add_option("--ram", c.ram, "guest RAM")->capture_default_str();
  app.add_option("--seed", c.seed, "the workload's seed")->capture_default_str();
  app.add_option("--touch-permille", c.touch_permille, "pages the invocation touches per 1000")
      ->capture_default_str();
  app.add_option("--words-per-page", c.words_per_page,
                 "words the fill writes per page (the invocation reads one)")
      ->capture_default_str();
  app.add_option("--runs", c.runs, "restores per row (median)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (c.restore_cli.empty()) c.restore_cli = c.cli;
  std::filesystem::create_directories(c.dir);
  // Part of `make bench`: where KVM cannot run the guest, say so and pass.
  if (faultline::Status kvm = faultline::vm::probe_kvm(); !kvm.is_ok()) {
    fmt::print("working-set bench skipped: KVM cannot run the test guest here: {}\n",
               kvm.to_string());
    return 0;
  }

  fmt::print(stderr, "running the invocation guest ({}) uninterrupted, then to its snapshot...\n",
             c.ram);
  std::string why;
  const std::optional<Guest> guest = prepare(c, why);
  if (!guest) {
    fmt::print(stderr, "{}\n", why);
    return 1;
  }
  const bool record = restore_has_flag(c, "--record-working-set");
  const bool replay = restore_has_flag(c, "--working-set");
  const std::string ws = c.dir + "/invocation.ws";
  const std::string no_record = "this faultline has no `vm restore --record-working-set`";
  const std::string no_replay = "this faultline has no `vm restore --working-set`";
  std::vector<Row> rows = {
      {"eager (every page first)", {"--eager"}},
      {"lazy, default (full)", {}},
      {"lazy, --prefetch demand", {"--prefetch", "demand"}},
      {"recording (--record-working-set)",
       {"--record-working-set", c.dir + "/recorded-{run}.ws"},
       record ? "" : no_record},
      {"full + --working-set", {"--working-set", ws}, replay ? "" : no_replay},
      {"--prefetch working-set + --working-set",
       {"--prefetch", "working-set", "--working-set", ws},
       replay ? "" : no_replay},
  };
  const size_t kFull = 1, kDemand = 2, kRecording = 3, kFullWs = 4, kPolicyWs = 5;
  // Round by round, every row once per round, so that the rows compared ran
  // close together in time on a machine whose load comes and goes.
  for (int n = 1; n <= c.runs; ++n) {
    fmt::print(stderr, "round {} of {}...\n", n, c.runs);
    for (size_t i = 0; i < rows.size(); ++i) {
      if (i == kFullWs && n == 1) {
        if (rows[kRecording].ok()) {
          std::filesystem::copy_file(c.dir + "/recorded-1.ws", ws,
                                     std::filesystem::copy_options::overwrite_existing);
        } else if (record && replay) {
          rows[kFullWs].missing = rows[kPolicyWs].missing = "no working set was recorded";
        }
      }
      measure_once(c, *guest, static_cast<int>(i), n, rows[i]);
    }
  }

  const Guest& g = *guest;
  fmt::print(
      "\nrestores of a {} invocation guest: {} of its {} workload pages ({:.1f}%) read and "
      "written after the resume; medians of {}; uninterrupted run {:.0f} ms, checksum {}\n\n",
      c.ram, g.pages, g.workload_pages, 100.0 * static_cast<double>(g.pages) / g.workload_pages,
      c.runs, g.run_ms, g.checksum);
  fmt::print(
      "| restore | to result ms | (min-max) | guest ms | demand faults | replayed pages | "
      "background pages | result |\n|---|---:|---:|---:|---:|---:|---:|---|\n");
  bool all_right = true;
  for (const Row& r : rows) {
    if (!r.missing.empty()) {
      fmt::print("| {} | | | | | | | not run: {} |\n", r.name, r.missing);
      continue;
    }
    if (!r.ok()) {
      all_right = false;
      fmt::print("| {} | | | | | | | FAILED: {} |\n", r.name, r.why);
      continue;
    }
    const auto [least, most] = std::minmax_element(r.ms.runs.begin(), r.ms.runs.end());
    fmt::print("| {} | {:.1f} | {:.0f}-{:.0f} | {:.1f} | {} | {} | {} | right |\n", r.name,
               r.ms.median(), *least, *most, r.guest_ms.median(), cell(r.faults.median()),
               cell(r.replayed.median()), cell(r.background.median()));
  }
  judge(rows[kFull], rows[kFullWs]);
  judge(rows[kDemand], rows[kPolicyWs]);
  return all_right ? 0 : 1;
}
