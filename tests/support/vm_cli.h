// What the KVM VMM's end-to-end tests share: the test workload, a model of
// what the guest program computes, and running the `faultline` CLI as a child
// process (support/cli_process.h). Header-only: FAULTLINE_CLI is defined per test executable.
#pragma once

#include <gtest/gtest.h>

#include <bit>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/cli_process.h"
#include "support/temp_dir.h"
#include "vm/probe.h"
#include "vm/workload.h"

namespace faultline::vm {
inline namespace test_workload {

using testing::Cli;
using testing::CliProcess;
using testing::faultline;
using testing::read_text;
using testing::TempDir;

constexpr uint64_t kRam = 32ull << 20;
constexpr uint64_t kPages = (kRam - (1 << 20)) / 4096;
constexpr uint64_t kSeed = 7;
constexpr uint64_t kWordsPerPage = 2;
// 4 MiB between reports: 7 per pass, 21 in all; report 10 is mid-way through pass 2.
inline const std::vector<std::string> kWorkload = {
    "--ram", "32M", "--seed", "7", "--progress-every", "4M", "--words-per-page", "2"};
constexpr uint64_t kMidWay = 10;

#define SKIP_WITHOUT_KVM()                                                          \
  do {                                                                              \
    static const Status usable = probe_kvm();                                       \
    if (!usable.is_ok()) {                                                          \
      GTEST_SKIP() << "KVM cannot run the test guest here: " << usable.to_string(); \
    }                                                                               \
  } while (0)

constexpr uint64_t kModelMul = 0x9FB21C651E98DF25ull;

// The words guest/workload.S's pass 1 writes into workload page `page`.
inline std::vector<uint64_t> model_page_words(uint64_t page, uint64_t seed, uint64_t words) {
  std::vector<uint64_t> out;
  uint64_t state = page * 0xD6E8FEB86659FD93ull ^ seed;
  for (uint64_t i = 0; i < words; ++i) {
    state += 0x9E3779B97F4A7C15ull;
    out.push_back((state ^ (state >> 31)) * kModelMul);
  }
  return out;
}

// What guest/workload.S computes, computed here instead.
inline uint64_t model_checksum(uint64_t pages, uint64_t seed, uint64_t words) {
  constexpr uint64_t kMul = kModelMul;
  auto page_words = [&](uint64_t page) { return model_page_words(page, seed, words); };
  uint64_t sum = 0;
  std::vector<uint64_t> stamps(pages);
  const uint64_t stride = walk_stride(pages);
  for (uint64_t k = 0, page = 0; k < pages; ++k) {
    for (uint64_t w : page_words(page)) sum = (std::rotl(sum, 5) ^ w) * kMul;
    stamps[page] = sum;
    page = (page + stride) % pages;
  }
  for (uint64_t stamp : stamps) sum = (std::rotl(sum, 9) ^ stamp) * kMul;
  return sum;
}

inline std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

inline std::vector<std::byte> read_bytes(const std::string& path) {
  const std::string text = read_text(path);
  const auto* p = reinterpret_cast<const std::byte*>(text.data());
  return {p, p + text.size()};
}

// A guest run (restored or migrated) ended as the uninterrupted run does: the
// model's checksum over every workload page, nothing wrong.
inline void expect_uninterrupted_result(const Cli& run) {
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto j = run.json();
  ASSERT_FALSE(j.is_discarded()) << run.out;
  EXPECT_EQ(j["finished"], true);
  EXPECT_EQ(j["checksum"], hex(model_checksum(kPages, kSeed, kWordsPerPage)));
  EXPECT_EQ(j["mismatches"], 0);
  EXPECT_EQ(j["pages"], kPages);
}

inline std::vector<std::string> with(std::vector<std::string> a,
                                     const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace test_workload
}  // namespace faultline::vm
