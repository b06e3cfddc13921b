#include "slow_link_bench.h"

#include <fmt/format.h>
#include <signal.h>

#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_image.h"
#include "delay_proxy.h"
#include "firecracker_run.h"
#include "os_linux/child_process.h"
#include "prefetch_table.h"
#include "table_format.h"

namespace faultline::bench {
namespace {

constexpr const char* kDefault = "default";
constexpr const char* kDemand = "--prefetch demand";
constexpr const char* kFixed = "--fixed-window 2M";
constexpr const char* kNoFill = "--no-fill";

struct Row {
  std::string name;
  std::vector<std::string> flags;
};

const std::vector<Row> kRows = {{kDefault, {}},
                                {kDemand, {"--prefetch", "demand"}},
                                {kFixed, {"--fixed-window", "2M"}},
                                {kNoFill, {"--no-fill"}}};

// `faultline serve-pages` over the image on a loopback port, stopped when it goes.
class PageServer {
 public:
  PageServer(const BenchConfig& config) {
    log_ = config.dir + "/serve-pages.log";
    auto child =
        ChildProcess::spawn({config.cli, "serve-pages", "--listen", "tcp:127.0.0.1:0", "--mem-file",
                             config.image_path, "--ram-start", "0", "--plain-tcp"},
                            {.stderr_file = log_});
    if (!child.is_ok()) throw std::runtime_error("cannot start " + config.cli + " serve-pages");
    child_ = std::move(child).value();
    // Its startup line ends "... on ADDRESS".
    for (int i = 0; i < 1000 && address_.empty(); ++i) {
      const std::string text = log_text();
      const size_t at = text.find(") on ");
      const size_t end = at == std::string::npos ? at : text.find('\n', at);
      if (end != std::string::npos) {
        address_ = text.substr(at + 5, end - at - 5);
        break;
      }
      if (child_.try_wait()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (address_.empty()) throw std::runtime_error("serve-pages did not start:\n" + log_text());
  }
  ~PageServer() {
    if (!child_.running()) return;
    child_.signal(SIGTERM);
    (void)child_.wait();
  }
  const std::string& address() const { return address_; }

 private:
  std::string log_text() const {
    std::ifstream in(log_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::string log_;
  ChildProcess child_;
  std::string address_;
};

struct Cell {
  double delay_ms;
  const Workload* workload;
  std::map<std::string, Outcome> medians;
  nlohmann::json prefetch;  // of the default row's last run
};

double total(const Cell& cell, const std::string& row) {
  const Outcome& o = cell.medians.at(row);
  return o.aborted ? -1 : o.total_ms;
}

// Against a row cut at the cap, the ratio is at most mine / cap.
std::string ratio_or_bound(double mine, double base, std::chrono::seconds cap) {
  if (mine < 0 || base >= 0) return ratio(mine, base);
  return fmt::format("<{:.2g}x", mine / (1000.0 * static_cast<double>(cap.count())));
}

double p99_us(const Cell& cell, const std::string& row) {
  const Outcome& o = cell.medians.at(row);
  return o.aborted ? -1 : static_cast<double>(o.first_touch.p99_ns) / 1e3;
}

void print_targets(const std::vector<Cell>& cells, std::chrono::seconds cap) {
  fmt::print("\nTargets of issue 13, slow link (- : a row cut at the cap, so slower than it):\n\n");
  fmt::print(
      "| delay | workload | default vs demand | default vs fixed 2M | "
      "p99 fill / no fill | at least as fast as both | p99 ratio <= 2x |\n");
  fmt::print("|---:|---|---:|---:|---:|---|---|\n");
  for (const Cell& c : cells) {
    const double mine = total(c, kDefault);
    const double demand = total(c, kDemand);
    const double fixed = total(c, kFixed);
    // A baseline cut at the cap was slower than any row that finished.
    const bool beats_demand = mine >= 0 && (demand < 0 || mine <= demand);
    const bool beats_fixed = mine >= 0 && (fixed < 0 || mine <= fixed);
    const double fill = p99_us(c, kDefault);
    const double no_fill = p99_us(c, kNoFill);
    const double p99_ratio = fill < 0 || no_fill <= 0 ? -1 : fill / no_fill;
    fmt::print("| {} ms | {} | {} | {} | {} | {} | {} |\n", c.delay_ms, c.workload->title,
               ratio_or_bound(mine, demand, cap), ratio_or_bound(mine, fixed, cap),
               ratio(fill, no_fill),
               mine < 0 ? "-" : (beats_demand && beats_fixed ? "met" : "NOT met"),
               verdict(p99_ratio, 2.0));
  }
}

}  // namespace

int run_slow_link_bench(const BenchConfig& config) {
  PageServer server(config);
  const std::vector<Workload> workloads = make_workloads(config.size / kPage);
  fmt::print(
      "serve-pages on {}; a proxy adds each delay per round trip (half each way); rows "
      "over {} s are cut (-)\n\n",
      server.address(), config.cap.count());
  fmt::print(
      "| delay | workload | handle flags | total ms | faults | first touch p50 us | "
      "p99 us | vs demand | vs fixed 2M | wrong |\n");
  fmt::print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
  int failures = 0;
  std::vector<Cell> cells;
  for (double delay_ms : config.delays_ms) {
    auto proxy = DelayProxy::start(server.address(),
                                   std::chrono::nanoseconds(static_cast<int64_t>(delay_ms * 1e6)));
    if (!proxy.is_ok()) throw std::runtime_error("delay proxy: " + proxy.status().to_string());
    for (const Workload& w : workloads) {
      if (w.name != "random" && w.name != "seq") continue;
      if (!config.only.empty() && w.name != config.only) continue;
      Cell cell{delay_ms, &w, {}, nullptr};
      std::map<std::string, std::vector<Outcome>> runs;
      for (int r = 0; r < config.runs; ++r) {
        for (const Row& row : kRows) {
          HandleRun run{.cli = config.cli, .dir = config.dir, .size = config.size};
          run.args = {"--page-server", (*proxy)->address(), "--plain-tcp"};
          run.args.insert(run.args.end(), row.flags.begin(), row.flags.end());
          run.cap = config.cap;
          try {
            HandleOutcome o = run_under_handler(run, w);
            runs[row.name].push_back(o.outcome);
            if (row.name == kDefault) cell.prefetch = o.prefetch;
          } catch (const std::exception& e) {
            fmt::print(stderr, "{} ms / {} / {}: {}\n", delay_ms, w.name, row.name, e.what());
            Outcome failed;
            failed.aborted = true;
            failed.wrong = 1;  // counted as a failure, unlike a row cut at the cap
            runs[row.name].push_back(failed);
          }
        }
      }
      for (const Row& row : kRows) cell.medians[row.name] = median(runs[row.name]);
      for (const Row& row : kRows) {
        const Outcome& o = cell.medians[row.name];
        // A row cut at the cap still checked every page it touched.
        const uint64_t wrong = o.wrong;
        failures += wrong != 0;
        const double t = total(cell, row.name);
        fmt::print("| {} ms | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", delay_ms, w.title,
                   row.name, fmt_ms(t), o.aborted ? "-" : std::to_string(o.faults),
                   o.aborted ? "-" : fmt_us(o.first_touch.p50_ns),
                   o.aborted ? "-" : fmt_us(o.first_touch.p99_ns),
                   ratio_or_bound(t, total(cell, kDemand), config.cap),
                   ratio_or_bound(t, total(cell, kFixed), config.cap), wrong);
      }
      std::fflush(stdout);
      cells.push_back(std::move(cell));
    }
  }
  print_targets(cells, config.cap);
  std::vector<PrefetchRow> prefetch;
  for (const Cell& c : cells) {
    prefetch.push_back({fmt::format("{} ms, {}", c.delay_ms, c.workload->name), c.prefetch});
  }
  print_prefetch_stats("delay, workload", prefetch);
  return failures;
}

}  // namespace faultline::bench
