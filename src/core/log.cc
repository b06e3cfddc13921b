#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace faultline {

spdlog::logger& log() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    if (auto existing = spdlog::get("faultline")) return existing;
    auto created = spdlog::stderr_color_mt("faultline");
    created->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
    return created;
  }();
  return *logger;
}

}  // namespace faultline
