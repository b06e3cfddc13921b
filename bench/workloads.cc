#include "workloads.h"

#include <algorithm>
#include <random>
#include <stdexcept>
#include <thread>

#include "bench_image.h"

namespace faultline::bench {

double ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

std::vector<Workload> make_workloads(uint64_t pages) {
  std::mt19937_64 rng(42);
  std::vector<uint64_t> all(pages);
  for (uint64_t i = 0; i < pages; ++i) all[i] = i;
  std::vector<Workload> w;
  w.push_back({"seq", "every page in order", {all}});
  std::vector<uint64_t> shuffled = all;
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  w.push_back(
      {"random", "random 25% of pages", {{shuffled.begin(), shuffled.begin() + pages / 4}}});
  std::vector<uint64_t> hot(shuffled.begin(), shuffled.begin() + pages / 10);
  std::vector<uint64_t> hot_touches;
  for (int pass = 0; pass < 10; ++pass) {
    std::shuffle(hot.begin(), hot.end(), rng);
    hot_touches.insert(hot_touches.end(), hot.begin(), hot.end());
  }
  w.push_back({"hot", "hot 10%, touched 10x", {hot_touches}});
  Workload seq4{"seq4", "4 threads, quarters", {}};
  for (uint64_t t = 0; t < 4; ++t) {
    seq4.touches.emplace_back(all.begin() + static_cast<int64_t>(pages * t / 4),
                              all.begin() + static_cast<int64_t>(pages * (t + 1) / 4));
  }
  w.push_back(seq4);
  return w;
}

WorkloadResult run_workload(const Workload& w, std::byte* memory, Clock::time_point deadline) {
  LatencyHistogram latency;
  std::atomic<uint64_t> wrong{0};
  std::atomic<bool> aborted{false};
  std::vector<std::thread> threads;
  for (const std::vector<uint64_t>& touches : w.touches) {
    threads.emplace_back([&] {
      std::vector<bool> seen;
      uint64_t n = 0;
      for (uint64_t page : touches) {
        if (++n % 256 == 0 && Clock::now() > deadline) {
          aborted = true;
          return;
        }
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
  return {latency.summary(), wrong.load(), aborted.load()};
}

Outcome outcome_since(Clock::time_point start, const WorkloadResult& r) {
  Outcome o;
  o.total_ms = ms(Clock::now() - start);
  o.first_touch = r.first_touch;
  o.wrong = r.wrong;
  o.aborted = r.aborted;
  return o;
}

AnonymousMemory guest_memory(uint64_t size) {
  auto mapped = AnonymousMemory::map(size, "guest memory",
                                     {.no_reserve = true, .pages = PageBacking::kSmallPages});
  if (!mapped.is_ok()) throw std::runtime_error(mapped.status().to_string());
  return std::move(mapped).value();
}

}  // namespace faultline::bench
