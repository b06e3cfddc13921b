// The prefetch flags `handle` and `vm restore` share: --prefetch,
// --fault-around, --fixed-window, --no-fill, and the working-set files
// (--working-set, --record-working-set, --record-for).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "faultline/prefetch.h"
#include "faultline/status.h"
#include "faultline/working_set.h"

namespace faultline::cli {

struct PrefetchArgs {
  std::string policy = "full";
  uint64_t max_window = PrefetchOptions{}.max_window;
  uint64_t fixed_window = 0;
  bool no_fill = false;
  std::string working_set;
  std::string record_working_set;
  double record_for_s = 0;

  // `restore_ends` says when a recording is written: "the session ends".
  void add_to(CLI::App* cmd, const std::string& restore_ends);
  // The options they name, or a sentence naming the flag that is wrong.
  Result<PrefetchOptions> options() const;
  // The working-set files, or a sentence naming the flag that is wrong
  // (--working-set with --prefetch demand, --record-for without a file, a
  // file in a directory that does not exist).
  Result<WorkingSetFiles> working_set_files() const;
};

}  // namespace faultline::cli
