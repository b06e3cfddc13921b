// faultline-handle-bench: `faultline handle` as a user starts it, measured
// through the Firecracker Uffd protocol against the baselines, in one run.
//
//   faultline-handle-bench [--size 512M] [--runs 3] [--only WORKLOAD]
//   faultline-handle-bench --page-server [--size 128M] [--delays 0.2,2] [--cap 60]
//
// The first form restores from the memory file: kernel MAP_PRIVATE, eager
// copy, the naive handler, and `faultline handle --socket S --mem-file F` with
// no other flag, with --prefetch demand and with --fixed-window 2M. The second
// takes pages from `faultline serve-pages` behind a proxy that adds each
// round-trip delay. Every figure is a median of --runs runs; a touched page
// with the wrong first word fails the bench (exit 1).
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>
#include <thread>

#include "bench_image.h"
#include "firecracker_bench.h"
#include "slow_link_bench.h"

int main(int argc, char** argv) {
  using namespace faultline::bench;
  CLI::App app{"faultline-handle-bench: `faultline handle` through the Firecracker protocol"};
  BenchConfig config;
  std::string size_text;
  bool page_server = false;
  std::string delays = "0.2,2";
  int cap_s = 60;
  app.add_option("--size", size_text, "image size (default 512M; 128M with --page-server)");
  app.add_option("--runs", config.runs, "runs per row; the table shows medians")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_option("--only", config.only, "run one workload: seq, random, hot, seq4");
  app.add_option("--dir", config.dir,
                 "where the image and sockets go (default: a temporary folder)");
  app.add_option("--cli", config.cli, "the faultline binary")->capture_default_str();
  app.add_flag("--page-server", page_server,
               "slow-link bench: serve-pages behind a delaying proxy, handle --page-server");
  app.add_option("--delays", delays, "--page-server: round-trip delays to add, in ms")
      ->capture_default_str();
  app.add_option("--cap", cap_s, "--page-server: seconds a row may take before it is cut (\"-\")")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  CLI11_PARSE(app, argc, argv);
  if (!config.only.empty() && config.only != "seq" && config.only != "random" &&
      config.only != "hot" && config.only != "seq4") {
    fmt::print(stderr, "faultline-handle-bench: --only {}: not seq, random, hot or seq4\n",
               config.only);
    return 2;
  }
  if (page_server && !config.only.empty() && config.only != "seq" && config.only != "random") {
    fmt::print(stderr, "faultline-handle-bench: --only {}: --page-server runs seq and random\n",
               config.only);
    return 2;
  }
  config.cap = std::chrono::seconds(cap_s);
  try {
    config.size =
        parse_size(size_text.empty() ? (page_server ? "128M" : "512M") : size_text, "--size");
    if (page_server) config.delays_ms = parse_delays(delays);
  } catch (const std::exception& e) {
    fmt::print(stderr, "faultline-handle-bench: {}\n", e.what());
    return 2;
  }

  const bool own_dir = config.dir.empty();
  if (own_dir) {
    std::string pattern = std::filesystem::temp_directory_path() / "faultline-handle-bench-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) return 1;
    config.dir = pattern;
  }
  int failures = 0;
  try {
    config.image_path = config.dir + "/image.mem";
    write_image(config.image_path, config.size);
    config.image = ::open(config.image_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (config.image < 0) throw std::runtime_error("cannot open " + config.image_path);
    fmt::print("image: {} MiB, {} pages, {:.1f}% zero (holes); {} cores; medians of {} runs\n\n",
               config.size >> 20, config.size / kPage, zero_percent(),
               std::thread::hardware_concurrency(), config.runs);
    failures = page_server ? run_slow_link_bench(config) : run_firecracker_bench(config);
  } catch (const std::exception& e) {
    fmt::print(stderr, "faultline-handle-bench: {}\n", e.what());
    failures = 1;
  }
  if (config.image >= 0) ::close(config.image);
  if (own_dir) std::filesystem::remove_all(config.dir);
  if (failures != 0) {
    fmt::print(stderr, "WRONG BYTES (or a failed run) in {} rows\n", failures);
    return 1;
  }
  return 0;
}
