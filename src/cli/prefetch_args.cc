#include "cli/prefetch_args.h"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>

#include "cli/size_option.h"

namespace faultline::cli {

void PrefetchArgs::add_to(CLI::App* cmd, const std::string& restore_ends) {
  cmd->add_option("--prefetch", policy,
                  "what arrives besides the touched pages: full (everything, in the background; "
                  "the whole image becomes resident), working-set (the --working-set's pages, "
                  "then only touched ones), demand (only touched pages, one per fault)")
      ->capture_default_str()
      ->check(CLI::IsMember({"full", "working-set", "demand"}));
  add_size_option(cmd, "--fault-around", max_window,
                  "full: the largest window one fault installs, a power of two (4K: off)")
      ->default_str("2M");
  add_size_option(cmd, "--fixed-window", fixed_window,
                  "every fault installs this much, no cost model (for comparisons)");
  cmd->add_flag("--no-fill", no_fill, "full: no background fill, only fault-around");
  cmd->add_option("--working-set", working_set,
                  "replay this recorded working set first, ahead of the guest (full, "
                  "working-set); one of another image or damaged is refused with a warning and "
                  "the restore goes on without it")
      ->type_name("FILE");
  cmd->add_option("--record-working-set", record_working_set,
                  "record the order of first touches into this file, written when " + restore_ends +
                      " (replaced atomically; with several at once the last wins); while "
                      "recording, only touched pages are served, one per fault, whatever "
                      "--prefetch says")
      ->type_name("FILE");
  cmd->add_option("--record-for", record_for_s,
                  "--record-working-set: write the file after this many seconds if " +
                      restore_ends + " later")
      ->type_name("SECONDS")
      ->check(CLI::Range(0.001, 86400.0));
}

Result<WorkingSetFiles> PrefetchArgs::working_set_files() const {
  WorkingSetFiles files;
  if (!working_set.empty() && policy == "demand") {
    return invalid_argument(
        "--working-set with --prefetch demand: demand installs only touched pages, so "
        "nothing would be replayed; use --prefetch working-set or full");
  }
  if (record_for_s > 0 && record_working_set.empty()) {
    return invalid_argument("--record-for needs --record-working-set FILE");
  }
  if (!record_working_set.empty()) {
    std::filesystem::path dir = std::filesystem::path(record_working_set).parent_path();
    if (dir.empty()) dir = ".";
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
      return invalid_argument(fmt::format("--record-working-set {}: no directory {}",
                                          record_working_set, dir.string()));
    }
  }
  files.replay = working_set;
  files.record = record_working_set;
  files.record_for = std::chrono::milliseconds(std::llround(record_for_s * 1000));
  return files;
}

Result<PrefetchOptions> PrefetchArgs::options() const {
  PrefetchOptions o;
  auto parsed = parse_prefetch_policy(policy);
  if (!parsed)
    return invalid_argument(fmt::format("--prefetch {}: not full, working-set or demand", policy));
  o.policy = *parsed;
  if (Status s = check_page_power_of_two(max_window); !s.is_ok()) {
    return invalid_argument("--fault-around " + s.message());
  }
  o.max_window = max_window;
  if (fixed_window % kMinPageSize != 0) {
    return invalid_argument(
        fmt::format("--fixed-window {} is not a multiple of the 4 KiB page", fixed_window));
  }
  o.fixed_window = fixed_window;
  o.fill = !no_fill;
  return o;
}

}  // namespace faultline::cli
