#include "cli/prefetch_args.h"

#include <fmt/format.h>

#include "cli/size_option.h"

namespace faultline::cli {

void PrefetchArgs::add_to(CLI::App* cmd) {
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
