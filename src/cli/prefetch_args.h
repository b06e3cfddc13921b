// The prefetch flags `handle` and `vm restore` share: --prefetch,
// --fault-around, --fixed-window, --no-fill.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "faultline/prefetch.h"
#include "faultline/status.h"

namespace faultline::cli {

struct PrefetchArgs {
  std::string policy = "full";
  uint64_t max_window = PrefetchOptions{}.max_window;
  uint64_t fixed_window = 0;
  bool no_fill = false;

  void add_to(CLI::App* cmd);
  // The options they name, or a sentence naming the flag that is wrong.
  Result<PrefetchOptions> options() const;
};

}  // namespace faultline::cli
