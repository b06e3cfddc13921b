// Names of the prefetch policies, as the CLI and the stats spell them.
#include "faultline/prefetch.h"

namespace faultline {

std::string_view prefetch_policy_name(PrefetchPolicy policy) {
  switch (policy) {
    case PrefetchPolicy::kFull:
      return "full";
    case PrefetchPolicy::kWorkingSet:
      return "working-set";
    case PrefetchPolicy::kDemand:
      return "demand";
  }
  return "unknown";
}

std::optional<PrefetchPolicy> parse_prefetch_policy(std::string_view name) {
  for (PrefetchPolicy p :
       {PrefetchPolicy::kFull, PrefetchPolicy::kWorkingSet, PrefetchPolicy::kDemand}) {
    if (name == prefetch_policy_name(p)) return p;
  }
  return std::nullopt;
}

}  // namespace faultline
