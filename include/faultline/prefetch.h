// What the fault backend installs besides the page a fault asked for.
//
// One scheduler in the fault server decides it for every front end (handle,
// vm restore, vm receive, the demo, the library). Demand faults always come
// first. Under the default policy, how much a fault installs around itself
// and how the background fill proceeds follow a cost model of the source
// measured while it runs: the fixed cost of one fault round trip against the
// cost per byte fetched and installed. A page-cached file gets large windows
// on any fault; a slow remote source gets windows sized to its round trip.
//
// Memory cost, for platforms that overcommit:
//   kFull        every page of guest memory becomes resident soon after the
//                restore (the whole image is allocated);
//   kWorkingSet  the working set's pages plus the pages the guest touches;
//   kDemand      only the pages the guest touches, one page per fault.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "faultline/working_set.h"

namespace faultline {

enum class PrefetchPolicy {
  kFull,        // working set (if any) first, then adaptive fault-around and background fill
  kWorkingSet,  // the working set ahead of the guest, then one page per fault
  kDemand,      // one page per fault, nothing else
};

std::string_view prefetch_policy_name(PrefetchPolicy policy);  // "full", "working-set", "demand"
std::optional<PrefetchPolicy> parse_prefetch_policy(std::string_view name);

struct PrefetchOptions {
  PrefetchPolicy policy = PrefetchPolicy::kFull;
  // kFull: the largest window one fault installs (a power of two; the page
  // size turns fault-around off).
  uint64_t max_window = 2ull << 20;
  // kFull: install untouched memory in the background until all is resident.
  bool fill = true;
  // Nonzero: every fault installs this many bytes (clipped to max page
  // buffer and mapping), with no cost model: for comparisons and tests.
  uint64_t fixed_window = 0;
  // Replayed first, in recorded order, ahead of the guest (kFull, kWorkingSet).
  std::shared_ptr<const WorkingSet> working_set;
  // Records every page's first touch. While recording, the server installs
  // only what the guest touches (one page per fault, no fill), so that every
  // first touch is seen; replay of an older working set is skipped.
  std::shared_ptr<WorkingSetRecorder> record;
};

}  // namespace faultline
