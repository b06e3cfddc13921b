#include "bench_config.h"

#include <sstream>
#include <stdexcept>

namespace faultline::bench {

std::vector<double> parse_delays(const std::string& text) {
  std::vector<double> delays;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    double ms = -1;
    try {
      ms = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || ms < 0 || ms > 1000) {
      throw std::runtime_error("--delays " + text + ": \"" + item +
                               "\" is not a delay in ms between 0 and 1000");
    }
    delays.push_back(ms);
  }
  if (delays.empty()) throw std::runtime_error("--delays " + text + ": no delay given");
  return delays;
}

}  // namespace faultline::bench
