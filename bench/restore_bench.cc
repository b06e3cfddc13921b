// faultline-bench: restore a memory image and run workloads over it, with
// faultline and with what users would use instead, measured in the same run.
//
//   faultline-bench [--size 1G] [--rounds 1] [--only WORKLOAD] [--dir DIR]
//
// Methods: eager copy (pread everything, then run); the kernel's MAP_PRIVATE
// file mapping (what Firecracker does without a handler); a naive userfaultfd
// handler (one 4 KiB page per fault, one thread in poll); faultline with its
// fast paths in several settings. Workloads: seq (read+write every page in
// order), random (25% of pages, 4 KiB each, random order), hot (10% of pages,
// each touched 10 times), seq4 (seq split over 4 threads). The image lives in
// the page cache for every method alike (it was just written), so the figures
// compare fault handling, not disk speed.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "baselines.h"
#include "bench_image.h"
#include "faultline/fault_server.h"
#include "naive_handler.h"
#include "os_linux/anonymous_memory.h"
#include "workloads.h"

namespace faultline::bench {
namespace {

using Method = std::function<Outcome(const Workload&)>;

struct Bench {
  std::string path;
  uint64_t size;
  int file = -1;

  Outcome naive(const Workload& w) {
    const auto start = Clock::now();
    AnonymousMemory memory = guest_memory(size);
    NaiveHandler handler(file, memory.data(), size);
    if (!handler.start().is_ok()) throw std::runtime_error("naive handler");
    Outcome o = outcome_since(start, run_workload(w, memory.data()));
    o.faults = handler.faults();
    return o;
  }

  Outcome faultline(const Workload& w, FaultServerOptions options) {
    const auto start = Clock::now();
    AnonymousMemory memory = guest_memory(size);
    auto source = open_file_page_source(path, 0);
    if (!source.is_ok()) throw std::runtime_error(source.status().to_string());
    auto pager = Pager::create(std::move(source).value());
    (void)pager->register_region(0, size);
    auto server = FaultServer::create(pager, options);
    if (!server.is_ok()) throw std::runtime_error(server.status().to_string());
    if (!(*server)->map({0, memory.data(), size, kPage}).is_ok() || !(*server)->start().is_ok()) {
      throw std::runtime_error("fault server");
    }
    Outcome o = outcome_since(start, run_workload(w, memory.data()));
    if (options.prefetch.policy == PrefetchPolicy::kFull && options.prefetch.fill) {
      // Time until all of memory is resident (the fill may outlast the workload).
      while ((*server)->stats().fully_resident_ns == 0 && ms(Clock::now() - start) < 60000) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      const uint64_t ns = (*server)->stats().fully_resident_ns;
      if (ns != 0) o.resident_ms = static_cast<double>(ns) / 1e6;
    }
    (*server)->request_shutdown();
    (void)(*server)->wait();
    o.faults = (*server)->stats().events;
    return o;
  }
};

std::string fmt_ms(double v) {
  return v < 0 ? "-" : fmt::format("{:.0f}", v);
}
std::string fmt_us(uint64_t ns) {
  return fmt::format("{:.1f}", static_cast<double>(ns) / 1e3);
}
std::string ratio(double a, double b) {
  return b <= 0 ? "-" : fmt::format("{:.2f}x", a / b);
}

}  // namespace
}  // namespace faultline::bench

int main(int argc, char** argv) {
  using namespace faultline;
  using namespace faultline::bench;
  CLI::App app{"faultline-bench: restores against the baselines, in one run"};
  std::string size_text = "1G";
  std::string only;
  std::string dir;
  app.add_option("--size", size_text, "image size: 256M, 1G, ...")->capture_default_str();
  app.add_option("--only", only, "run one workload: seq, random, hot, seq4");
  app.add_option("--dir", dir, "where the image goes (default: a temporary folder)");
  CLI11_PARSE(app, argc, argv);
  uint64_t size = 0;
  try {
    size = parse_size(size_text, "--size");
  } catch (const std::exception& e) {
    fmt::print(stderr, "faultline-bench: {}\n", e.what());
    return 2;
  }

  const bool own_dir = dir.empty();
  if (own_dir) {
    std::string pattern = std::filesystem::temp_directory_path() / "faultline-bench-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) return 1;
    dir = pattern;
  }
  Bench bench{dir + "/image.mem", size};
  write_image(bench.path, size);
  bench.file = ::open(bench.path.c_str(), O_RDONLY | O_CLOEXEC);

  FaultServerOptions demand;  // fault-around, no fill, one thread
  demand.prefetch.fill = false;
  FaultServerOptions one_page = demand;
  one_page.prefetch.policy = PrefetchPolicy::kDemand;
  FaultServerOptions fill;  // the default
  FaultServerOptions spin = fill;
  spin.spin = std::chrono::microseconds(50);
  FaultServerOptions two_threads = fill;
  two_threads.threads = 2;

  const std::vector<std::pair<std::string, Method>> methods = {
      {"eager copy", [&](const Workload& w) { return eager_copy(bench.file, size, w); }},
      {"kernel MAP_PRIVATE",
       [&](const Workload& w) { return kernel_private_mapping(bench.file, size, w); }},
      {"naive uffd", [&](const Workload& w) { return bench.naive(w); }},
      {"faultline 1 page/fault", [&](const Workload& w) { return bench.faultline(w, one_page); }},
      {"faultline fault-around", [&](const Workload& w) { return bench.faultline(w, demand); }},
      {"faultline +fill", [&](const Workload& w) { return bench.faultline(w, fill); }},
      {"faultline +fill +spin", [&](const Workload& w) { return bench.faultline(w, spin); }},
      {"faultline +fill 2 thr", [&](const Workload& w) { return bench.faultline(w, two_threads); }},
  };

  fmt::print("image: {} MiB, {} pages, {:.1f}% zero (holes); {} cores\n\n", size >> 20,
             size / kPage, zero_percent(), std::thread::hardware_concurrency());
  fmt::print(
      "| workload | method | total ms | faults | first touch p50 us | p99 us | "
      "resident ms | vs eager | vs MAP_PRIVATE | vs naive | wrong |\n");
  fmt::print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  int failures = 0;
  for (const Workload& w : make_workloads(size / kPage)) {
    if (!only.empty() && w.name != only) continue;
    std::map<std::string, Outcome> results;
    for (const auto& [name, method] : methods) {
      Outcome o = method(w);
      results[name] = o;
      failures += o.wrong != 0;
      fmt::print("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", w.name, name,
                 fmt_ms(o.total_ms), o.faults, fmt_us(o.first_touch.p50_ns),
                 fmt_us(o.first_touch.p99_ns), fmt_ms(o.resident_ms),
                 ratio(o.total_ms, results["eager copy"].total_ms),
                 ratio(o.total_ms, results["kernel MAP_PRIVATE"].total_ms),
                 ratio(o.total_ms, results["naive uffd"].total_ms), o.wrong);
      std::fflush(stdout);
    }
  }
  ::close(bench.file);
  if (own_dir) std::filesystem::remove_all(dir);
  if (failures != 0) {
    fmt::print(stderr, "WRONG BYTES in {} runs\n", failures);
    return 1;
  }
  return 0;
}
