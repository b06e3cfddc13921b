// `faultline demo`: where KVM can run our guest, the VM demo (vm_demo.cc);
// otherwise, or with --process, the process demo: make a snapshot image,
// restore it lazily in a fresh process, run a memory workload over it, verify
// every byte, show the figures.
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/demo_image.h"
#include "cli/progress_line.h"
#include "cli/size_option.h"
#include "cli/vm_demo.h"
#include "core/log.h"
#include "faultline/fault_server.h"
#include "faultline/page_server.h"
#include "faultline/pager.h"
#include "os_linux/child_process.h"
#include "vm/guest_ram.h"
#include "vm/probe.h"

namespace faultline::cli {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kRamStart = 0x8000'0000;  // where the demo's "guest RAM" starts

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

std::string us(uint64_t ns) {
  return fmt::format("{:.1f} us", static_cast<double>(ns) / 1e3);
}

struct DemoOptions {
  std::string size = "256M";
  int threads = 4;
  std::string source = "file";  // file | socket
  std::string dir;              // where the image goes; a temporary folder by default
  bool json = false;
  bool process = false;  // the process demo even where KVM works
  VmDemoOptions vm;
};

struct RestoreOptions {
  std::string mem_file;
  std::string page_server;  // address; empty: read the file directly
  uint64_t size = 0;
  int threads = 4;
  bool json = false;
};

struct WorkloadResult {
  uint64_t pages_checked = 0;
  uint64_t wrong_pages = 0;
  Clock::time_point first_access = Clock::time_point::max();
};

// Each thread reads and verifies its slice of guest RAM page by page, then
// rewrites a word of every page and reads random pages back.
// `checked` counts the pages verified so far, for a progress line.
WorkloadResult run_workload(std::byte* ram, uint64_t pages, int threads,
                            std::atomic<uint64_t>& checked) {
  std::atomic<uint64_t> wrong{0};
  std::atomic<Clock::rep> first{Clock::time_point::max().time_since_epoch().count()};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::vector<std::byte> expected(kDemoPage);
      const uint64_t begin = pages * static_cast<uint64_t>(t) / static_cast<uint64_t>(threads);
      const uint64_t end = pages * static_cast<uint64_t>(t + 1) / static_cast<uint64_t>(threads);
      for (uint64_t page = begin; page < end; ++page) {
        std::byte* p = ram + page * kDemoPage;
        volatile std::byte touched = p[0];  // the fault happens here
        (void)touched;
        if (page == begin) {
          Clock::rep now = Clock::now().time_since_epoch().count();
          Clock::rep seen = first.load();
          while (now < seen && !first.compare_exchange_weak(seen, now)) {
          }
        }
        fill_demo_page(page, expected);
        if (std::memcmp(p, expected.data(), kDemoPage) != 0) wrong.fetch_add(1);
        checked.fetch_add(1, std::memory_order_relaxed);
        uint64_t stamp = page ^ 0xFA17'11E0;
        std::memcpy(p + kDemoPage - 8, &stamp, 8);
      }
      std::mt19937_64 rng(static_cast<uint64_t>(t));
      for (uint64_t i = 0; i < (end - begin) / 10; ++i) {
        const uint64_t page = begin + rng() % (end - begin);
        uint64_t stamp = 0;
        std::memcpy(&stamp, ram + page * kDemoPage + kDemoPage - 8, 8);
        if (stamp != (page ^ 0xFA17'11E0)) wrong.fetch_add(1);
      }
    });
  }
  for (auto& w : workers) w.join();
  WorkloadResult r;
  r.pages_checked = checked.load();
  r.wrong_pages = wrong.load();
  r.first_access = Clock::time_point(Clock::duration(first.load()));
  return r;
}

// The eager baseline: read the whole image into fresh memory before running.
double measure_eager_copy(const std::string& mem_file, uint64_t size) {
  auto guest_ram = vm::GuestRam::map(size);
  const auto start = Clock::now();
  auto source = open_file_page_source(mem_file, 0);
  if (!source.is_ok() || !guest_ram.is_ok()) return -1;
  const vm::GuestRam& ram = **guest_ram;
  constexpr uint64_t kChunk = 1 << 20;
  for (uint64_t off = 0; off < size; off += kChunk) {
    const uint64_t len = std::min(kChunk, size - off);
    auto kind = (*source)->fetch(off, {ram.data() + off, len});
    if (!kind.is_ok()) return -1;
    if (*kind == PageKind::kZero) std::memset(ram.data() + off, 0, len);
  }
  return ms_between(start, Clock::now());
}

int run_restore(const RestoreOptions& o) {
  const auto start = Clock::now();
  const uint64_t pages = o.size / kDemoPage;
  auto guest_ram = vm::GuestRam::map(o.size);
  if (!guest_ram.is_ok()) {
    log().error("cannot map {} bytes of guest RAM", o.size);
    return 1;
  }
  const vm::GuestRam& ram = **guest_ram;
  auto source = o.page_server.empty() ? open_file_page_source(o.mem_file, kRamStart)
                                      : connect_socket_page_source(o.page_server);
  if (!source.is_ok()) {
    log().error("{}", source.status().to_string());
    return 1;
  }
  const std::string source_name = (*source)->describe();
  PagerConfig config;
  // What a booting guest touches first: here, its first 64 KiB.
  config.prewarm = PrewarmList::from_boot_critical({kRamStart, 16 * kDemoPage}, {}, {});
  auto pager = Pager::create(std::move(source).value(), config);
  Status s = pager->register_region(kRamStart, o.size);
  FaultServerOptions server_options;
  server_options.threads = 2;
  server_options.name = "demo";
  auto server = FaultServer::create(pager, server_options);
  if (!server.is_ok()) {
    log().error("{}", server.status().to_string());
    return 1;
  }
  if (s.is_ok()) s = (*server)->map({kRamStart, ram.data(), o.size, kDemoPage});
  if (s.is_ok()) s = (*server)->prewarm();
  if (s.is_ok()) s = (*server)->start();
  if (!s.is_ok()) {
    log().error("restore failed: {}", s.to_string());
    return 1;
  }
  const auto ready = Clock::now();
  std::atomic<uint64_t> checked{0};
  WorkloadResult work;
  {
    ProgressLine progress("restored lazily, the workload reads and verifies it", o.size,
                          [&] { return checked.load(std::memory_order_relaxed) * kDemoPage; });
    work = run_workload(ram.data(), pages, o.threads, checked);
  }
  const auto done = Clock::now();
  (*server)->request_shutdown();
  Status stopped = (*server)->wait();

  const PagerStats ps = pager->stats();
  const FaultServerStats fs = (*server)->stats();
  double eager_ms = -1;
  if (o.page_server.empty()) {
    ProgressLine progress("the eager baseline copies the whole image");
    eager_ms = measure_eager_copy(o.mem_file, o.size);
  }
  const bool ok = work.wrong_pages == 0 && work.pages_checked == pages && stopped.is_ok();

  if (o.json) {
    nlohmann::ordered_json j = {
        {"source", source_name},
        {"size_bytes", o.size},
        {"restore_ready_ms", ms_between(start, ready)},
        {"first_access_ms", ms_between(start, work.first_access)},
        {"total_ms", ms_between(start, done)},
        {"eager_copy_ms", eager_ms},
        {"pages_verified", work.pages_checked},
        {"wrong_pages", work.wrong_pages},
        {"pager", nlohmann::json::parse(ps.to_json())},
        {"installs",
         {{"copies", fs.copies},
          {"zero_pages", fs.zero_installs},
          {"already_present", fs.already_present}}},
    };
    fmt::print("{}\n", j.dump(2));
    return ok ? 0 : 1;
  }

  const double mib = static_cast<double>(ps.bytes_served) / (1 << 20);
  fmt::print("\nfaultline demo: lazy restore of a {} MiB snapshot in a fresh process\n",
             o.size >> 20);
  fmt::print("  source            {}\n", source_name);
  fmt::print("  restore ready     {:.2f} ms  (pager, userfaultfd, {} prewarmed pages)\n",
             ms_between(start, ready), ps.prewarmed);
  fmt::print("  first access      {:.2f} ms after restore start\n",
             ms_between(start, work.first_access));
  fmt::print("  workload          {} threads read, verify and rewrite every page\n", o.threads);
  fmt::print("  pages faulted     {}  ({:.1f} MiB served)\n", ps.faults, mib);
  fmt::print(
      "  installs          {} copies, {} zero runs mapped without copying (zero pages inside a\n"
      "                    fault-around window are copied with it)\n",
      fs.copies, fs.zero_installs);
  fmt::print("  page fetch        p50 {}  p99 {}  max {}  (source time per fault)\n",
             us(ps.fault_latency.p50_ns), us(ps.fault_latency.p99_ns), us(ps.fault_latency.max_ns));
  fmt::print("  total             {:.1f} ms from restore start to workload done\n",
             ms_between(start, done));
  if (eager_ms >= 0) {
    fmt::print(
        "  eager baseline    {:.1f} ms to copy the whole image before the guest could "
        "start\n",
        eager_ms);
  }
  fmt::print("  verified          {} pages, {} wrong  {}\n", work.pages_checked, work.wrong_pages,
             ok ? "OK" : "FAILED");
  if (!stopped.is_ok()) fmt::print("  fault server      stopped with: {}\n", stopped.to_string());
  return ok ? 0 : 1;
}

int spawn_restore(const std::vector<std::string>& args) {
  auto child = ChildProcess::spawn(args, {.program = "/proc/self/exe"});
  if (!child.is_ok()) {
    log().error("cannot start the restore process: {}", child.status().message());
    return 1;
  }
  const ExitStatus status = child->wait();
  if (status.signalled()) {
    log().error("the restore process died of signal {}", status.signal());
    return 1;
  }
  return status.exited() ? status.exit_code() : 1;
}

int run_process_demo(const DemoOptions& o);

int run_demo(const DemoOptions& o) {
  if (!o.process && !o.json) {
    const Status kvm = vm::probe_kvm();
    if (kvm.is_ok()) return run_vm_demo(o.vm);
    fmt::print("KVM cannot run the demo guest here ({}); showing the process demo instead\n\n",
               kvm.to_string());
    (void)std::fflush(stdout);
  }
  return run_process_demo(o);
}

int run_process_demo(const DemoOptions& o) {
  Result<uint64_t> size = parse_size(o.size);
  if (!size.is_ok()) {
    log().error("--size: {}", size.status().message());
    return 2;
  }
  if (*size < 1 << 20 || *size % kDemoPage != 0) {
    log().error("--size: {} must be at least 1 MiB and a multiple of 4 KiB", o.size);
    return 2;
  }
  if (o.threads < 1 || o.threads > 256) {
    log().error("--threads: {} is not between 1 and 256", o.threads);
    return 2;
  }
  std::string dir = o.dir;
  bool remove_dir = false;
  if (dir.empty()) {
    std::string pattern = (std::filesystem::temp_directory_path() / "faultline-demo-XXXXXX");
    if (::mkdtemp(pattern.data()) == nullptr) {
      log().error("cannot create a temporary folder: {}", std::strerror(errno));
      return 1;
    }
    dir = pattern;
    remove_dir = true;
  }
  const std::string image = dir + "/demo-mem.img";
  const auto t0 = Clock::now();
  std::atomic<uint64_t> written_bytes{0};
  Status written;
  {
    ProgressLine progress("making the snapshot image", *size,
                          [&] { return written_bytes.load(std::memory_order_relaxed); });
    written = write_demo_image(image, *size, &written_bytes);
  }
  if (!written.is_ok()) {
    log().error("{}", written.to_string());
    return 1;
  }
  if (!o.json) {
    const uint64_t pages = *size / kDemoPage;
    const DemoImageShape shape = demo_image_shape(pages);
    fmt::print(
        "made a {} MiB snapshot image in {:.0f} ms: {}\n"
        "  {} pages: {} holes (1 in 8) and {} written as zeros (1 in 64), the rest data\n",
        *size >> 20, ms_between(t0, Clock::now()), image, pages, shape.holes, shape.written_zeros);
  }

  std::unique_ptr<PageServer> server;
  std::vector<std::string> args = {
      "faultline", "demo-restore",        "--mem-file", image,
      "--size",    std::to_string(*size), "--threads",  std::to_string(o.threads)};
  if (o.json) args.emplace_back("--json");
  if (o.source == "socket") {
    auto started = PageServer::start({"unix:" + dir + "/pages.sock", image, kRamStart});
    if (!started.is_ok()) {
      log().error("{}", started.status().to_string());
      return 1;
    }
    server = std::move(started).value();
    args.emplace_back("--page-server");
    args.push_back(server->address());
    if (!o.json) fmt::print("serving its pages at {}\n", server->address());
  } else if (o.source != "file") {
    log().error("--source: {} is neither file nor socket", o.source);
    return 2;
  }
  (void)std::fflush(stdout);  // our lines first, then the restore process's
  const int rc = spawn_restore(args);
  if (server) server->stop();
  if (remove_dir) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return rc;
}

}  // namespace

void add_demo_command(CLI::App& app) {
  auto demo_options = std::make_shared<DemoOptions>();
  CLI::App* demo = app.add_subcommand(
      "demo", "make a snapshot image, restore it lazily in a fresh process, verify every byte");
  demo->add_option("--size", demo_options->size, "image size (K, M, G suffixes)")
      ->capture_default_str();
  demo->add_option("--threads", demo_options->threads, "workload threads (vCPUs)")
      ->capture_default_str();
  demo->add_option("--source", demo_options->source,
                   "file: read the image directly; socket: through a page server")
      ->capture_default_str();
  demo->add_option("--dir", demo_options->dir, "keep the image in this folder");
  demo->add_flag("--json", demo_options->json, "print the figures as JSON (process demo)");
  demo->add_flag("--process", demo_options->process,
                 "the process demo, even where KVM can run the VM demo");
  demo->add_option("--ram", demo_options->vm.ram, "the VM demo's guest RAM")->capture_default_str();
  demo->callback([demo_options] {
    if (int rc = run_demo(*demo_options); rc != 0) throw CLI::RuntimeError(rc);
  });

  auto restore_options = std::make_shared<RestoreOptions>();
  CLI::App* restore = app.add_subcommand("demo-restore", "the demo's restore process");
  restore->group("");  // internal: started by `faultline demo`
  restore->add_option("--mem-file", restore_options->mem_file)->required();
  restore->add_option("--size", restore_options->size)->required();
  restore->add_option("--threads", restore_options->threads);
  restore->add_option("--page-server", restore_options->page_server);
  restore->add_flag("--json", restore_options->json);
  restore->callback([restore_options] {
    if (int rc = run_restore(*restore_options); rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace faultline::cli
