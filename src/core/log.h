// The library's logger. Embedders may replace the "faultline" logger in
// spdlog's registry to route lines elsewhere.
#pragma once

#include <spdlog/spdlog.h>

namespace faultline {

spdlog::logger& log();

}  // namespace faultline
