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
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/latency_histogram.h"
#include "faultline/fault_server.h"
#include "naive_handler.h"
#include "os_linux/anonymous_memory.h"

namespace faultline::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kPage = 4096;

double ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Page i: 8-byte words from a per-page xorshift stream; every 16th page and a
// run of 64 pages in every 4096 are zero (holes in the file).
bool zero_page(uint64_t i) {
  return i % 16 == 15 || i % 4096 < 64;
}
uint64_t first_word(uint64_t i) {
  return zero_page(i) ? 0 : (i + 1) * 0x9E3779B97F4A7C15ull;
}

void fill_page(uint64_t i, std::byte* out) {
  uint64_t x = first_word(i);
  for (uint64_t off = 0; off < kPage; off += 8) {
    std::memcpy(out + off, &x, 8);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
}

void write_image(const std::string& path, uint64_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
  }
  std::vector<std::byte> chunk(1 << 20);
  const uint64_t per_chunk = chunk.size() / kPage;
  for (uint64_t first = 0; first < size / kPage; first += per_chunk) {
    for (uint64_t i = 0; i < per_chunk; ++i) fill_page(first + i, chunk.data() + i * kPage);
    for (uint64_t i = 0; i < per_chunk; ++i) {
      if (zero_page(first + i)) continue;
      if (::pwrite(fd, chunk.data() + i * kPage, kPage, static_cast<off_t>((first + i) * kPage)) !=
          static_cast<ssize_t>(kPage)) {
        throw std::runtime_error("write " + path);
      }
    }
  }
  ::fsync(fd);
  ::close(fd);
}

// Guest memory for one run: anonymous, or the file mapped MAP_PRIVATE.
struct Memory {
  std::byte* data = nullptr;
  uint64_t size = 0;
  AnonymousMemory anonymous;  // empty when the file is mapped
  Memory(uint64_t bytes, int file) : size(bytes) {
    if (file < 0) {
      auto mapped = AnonymousMemory::map(bytes, "guest memory",
                                         {.no_reserve = true, .pages = PageBacking::kSmallPages});
      if (!mapped.is_ok()) throw std::runtime_error(mapped.status().to_string());
      anonymous = std::move(mapped).value();
      data = anonymous.data();
      return;
    }
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE, file, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap guest memory");
    ::madvise(p, bytes, MADV_NOHUGEPAGE);
    data = static_cast<std::byte*>(p);
  }
  ~Memory() {
    if (!anonymous) ::munmap(data, size);
  }
};

struct Workload {
  std::string name;
  int threads;
  // Each thread's list of page indexes to touch, in order.
  std::vector<std::vector<uint64_t>> touches;
};

std::vector<Workload> make_workloads(uint64_t pages) {
  std::mt19937_64 rng(42);
  std::vector<uint64_t> all(pages);
  for (uint64_t i = 0; i < pages; ++i) all[i] = i;
  std::vector<Workload> w;
  w.push_back({"seq", 1, {all}});
  std::vector<uint64_t> shuffled = all;
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  w.push_back({"random", 1, {{shuffled.begin(), shuffled.begin() + pages / 4}}});
  std::vector<uint64_t> hot(shuffled.begin(), shuffled.begin() + pages / 10);
  std::vector<uint64_t> hot_touches;
  for (int pass = 0; pass < 10; ++pass) {
    std::shuffle(hot.begin(), hot.end(), rng);
    hot_touches.insert(hot_touches.end(), hot.begin(), hot.end());
  }
  w.push_back({"hot", 1, {hot_touches}});
  Workload seq4{"seq4", 4, {}};
  for (uint64_t t = 0; t < 4; ++t) {
    seq4.touches.emplace_back(all.begin() + static_cast<int64_t>(pages * t / 4),
                              all.begin() + static_cast<int64_t>(pages * (t + 1) / 4));
  }
  w.push_back(seq4);
  return w;
}

struct Outcome {
  double total_ms = 0;      // restore start to workload done
  double resident_ms = -1;  // restore start to all of memory resident; -1: never in the run
  uint64_t faults = 0;
  LatencySummary first_touch;  // latency of each page's first touch
  uint64_t wrong = 0;
};

// Runs the workload over `memory`: every touch reads a word and writes one;
// each page's first touch is timed, and its first word checked.
void run_workload(const Workload& w, std::byte* memory, LatencyHistogram& latency,
                  std::atomic<uint64_t>& wrong) {
  std::vector<std::thread> threads;
  for (int t = 0; t < w.threads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<bool> seen;
      for (uint64_t page : w.touches[static_cast<size_t>(t)]) {
        auto* word = reinterpret_cast<volatile uint64_t*>(memory + page * kPage + 8);
        auto* head = reinterpret_cast<volatile uint64_t*>(memory + page * kPage);
        if (seen.size() <= page) seen.resize(std::max<size_t>(page + 1, seen.size() * 2));
        if (!seen[page]) {
          const auto start = Clock::now();
          const uint64_t value = *head;
          latency.record(static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count()));
          if (value != first_word(page)) wrong.fetch_add(1);
          seen[page] = true;
        }
        *word = *word + 1;
      }
    });
  }
  for (auto& t : threads) t.join();
}

uint64_t minor_and_major_faults() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<uint64_t>(usage.ru_minflt + usage.ru_majflt);
}

using Method = std::function<Outcome(const Workload&)>;

struct Bench {
  std::string path;
  uint64_t size;
  int file = -1;

  Outcome eager(const Workload& w) {
    Outcome o;
    LatencyHistogram latency;
    std::atomic<uint64_t> wrong{0};
    const auto start = Clock::now();
    Memory memory(size, -1);
    constexpr uint64_t kChunk = 1 << 20;
    for (uint64_t off = 0; off < size; off += kChunk) {
      if (::pread(file, memory.data + off, kChunk, static_cast<off_t>(off)) !=
          static_cast<ssize_t>(kChunk)) {
        throw std::runtime_error("pread");
      }
    }
    o.resident_ms = ms(Clock::now() - start);
    run_workload(w, memory.data, latency, wrong);
    o.total_ms = ms(Clock::now() - start);
    o.first_touch = latency.summary();
    o.wrong = wrong.load();
    return o;
  }

  Outcome kernel_mapping(const Workload& w) {
    Outcome o;
    LatencyHistogram latency;
    std::atomic<uint64_t> wrong{0};
    const uint64_t faults_before = minor_and_major_faults();
    const auto start = Clock::now();
    Memory memory(size, file);
    run_workload(w, memory.data, latency, wrong);
    o.total_ms = ms(Clock::now() - start);
    o.faults = minor_and_major_faults() - faults_before;
    o.first_touch = latency.summary();
    o.wrong = wrong.load();
    return o;
  }

  Outcome naive(const Workload& w) {
    Outcome o;
    LatencyHistogram latency;
    std::atomic<uint64_t> wrong{0};
    const auto start = Clock::now();
    Memory memory(size, -1);
    NaiveHandler handler(file, memory.data, size);
    if (!handler.start().is_ok()) throw std::runtime_error("naive handler");
    run_workload(w, memory.data, latency, wrong);
    o.total_ms = ms(Clock::now() - start);
    o.faults = handler.faults();
    o.first_touch = latency.summary();
    o.wrong = wrong.load();
    return o;
  }

  Outcome faultline(const Workload& w, FaultServerOptions options) {
    Outcome o;
    LatencyHistogram latency;
    std::atomic<uint64_t> wrong{0};
    const auto start = Clock::now();
    Memory memory(size, -1);
    auto source = open_file_page_source(path, 0);
    if (!source.is_ok()) throw std::runtime_error(source.status().to_string());
    auto pager = Pager::create(std::move(source).value());
    (void)pager->register_region(0, size);
    auto server = FaultServer::create(pager, options);
    if (!server.is_ok()) throw std::runtime_error(server.status().to_string());
    if (!(*server)->map({0, memory.data, size, kPage}).is_ok() || !(*server)->start().is_ok()) {
      throw std::runtime_error("fault server");
    }
    run_workload(w, memory.data, latency, wrong);
    o.total_ms = ms(Clock::now() - start);
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
    o.first_touch = latency.summary();
    o.wrong = wrong.load();
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
  uint64_t size = std::stoull(size_text);
  if (size_text.ends_with('G')) size <<= 30;
  if (size_text.ends_with('M')) size <<= 20;
  size &= ~(kPage - 1);

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
      {"eager copy", [&](const Workload& w) { return bench.eager(w); }},
      {"kernel MAP_PRIVATE", [&](const Workload& w) { return bench.kernel_mapping(w); }},
      {"naive uffd", [&](const Workload& w) { return bench.naive(w); }},
      {"faultline 1 page/fault", [&](const Workload& w) { return bench.faultline(w, one_page); }},
      {"faultline fault-around", [&](const Workload& w) { return bench.faultline(w, demand); }},
      {"faultline +fill", [&](const Workload& w) { return bench.faultline(w, fill); }},
      {"faultline +fill +spin", [&](const Workload& w) { return bench.faultline(w, spin); }},
      {"faultline +fill 2 thr", [&](const Workload& w) { return bench.faultline(w, two_threads); }},
  };

  fmt::print("image: {} MiB, {} pages, {:.1f}% zero (holes); {} cores\n\n", size >> 20,
             size / kPage, 100.0 * 1 / 16 + 100.0 * 64 / 4096, std::thread::hardware_concurrency());
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
