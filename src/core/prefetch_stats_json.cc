#include "core/prefetch_stats_json.h"

namespace faultline {

nlohmann::ordered_json prefetch_stats_json(PrefetchPolicy policy, const FaultServerStats& s) {
  return {
      {"policy", prefetch_policy_name(policy)},
      {"demand_pages", s.demand_pages},
      {"around_pages", s.around_pages},
      {"filled_pages", s.filled_pages},
      {"replayed_pages", s.replayed_pages},
      {"pushed_pages", s.pushed_pages},
      {"already_coming", s.already_coming},
      {"window_bytes", s.window_bytes},
      {"fully_resident_ms", static_cast<double>(s.fully_resident_ns) / 1e6},
  };
}

}  // namespace faultline
