// The per-session "prefetch" stats of `faultline stats` as a table: how the
// pages of a bench row's session arrived.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace faultline::bench {

struct PrefetchRow {
  std::string label;
  nlohmann::json prefetch;  // sessions[0].prefetch; null if the handler has none
};

// One line per row under a heading; says so if no row has the object.
void print_prefetch_stats(const std::string& label_heading, const std::vector<PrefetchRow>& rows);

}  // namespace faultline::bench
