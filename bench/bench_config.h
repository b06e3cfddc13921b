// What faultline-handle-bench was asked to run, shared by its two benches.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace faultline::bench {

struct BenchConfig {
  std::string cli = FAULTLINE_CLI;  // the faultline binary
  std::string dir;                  // image, sockets, logs
  std::string image_path;
  int image = -1;  // the image, open for reading
  uint64_t size = 0;
  int runs = 3;
  std::string only;               // one workload, or all
  std::vector<double> delays_ms;  // slow link: round-trip delays
  std::chrono::seconds cap{60};   // slow link: time a row may take
};

// "0.2,2" -> {0.2, 2}; throws naming the flag on anything else.
std::vector<double> parse_delays(const std::string& text);

}  // namespace faultline::bench
