// What the prefetch scheduler did, as JSON: pages by how they arrived, the
// faults that found their page already coming, the current window, and the
// time until everything was resident. One shape for `faultline stats`
// (per session) and `vm restore --json`.
#pragma once

#include <nlohmann/json.hpp>

#include "faultline/fault_server.h"
#include "faultline/prefetch.h"

namespace faultline {

nlohmann::ordered_json prefetch_stats_json(PrefetchPolicy policy, const FaultServerStats& s);

}  // namespace faultline
