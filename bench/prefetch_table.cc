#include "prefetch_table.h"

#include <fmt/format.h>

#include <iterator>

namespace faultline::bench {
namespace {

constexpr const char* kKeys[] = {"policy",         "demand_pages",   "around_pages",
                                 "filled_pages",   "replayed_pages", "pushed_pages",
                                 "already_coming", "window_bytes",   "fully_resident_ms"};

// A stats value as a table cell: text unquoted, fractions to 0.1.
std::string cell(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_float()) return fmt::format("{:.1f}", value.get<double>());
  return value.dump();
}

}  // namespace

void print_prefetch_stats(const std::string& label_heading, const std::vector<PrefetchRow>& rows) {
  fmt::print(
      "\nPrefetch stats of the default row (its last run, `faultline stats` "
      "sessions[0].prefetch):\n\n");
  bool any = false;
  for (const PrefetchRow& row : rows) any = any || row.prefetch.is_object();
  if (!any) {
    fmt::print("(this handler's stats have no \"prefetch\" object)\n");
    return;
  }
  fmt::print("| {} | {} |\n|---|", label_heading, fmt::join(kKeys, " | "));
  for (size_t i = 0; i < std::size(kKeys); ++i) fmt::print("---:|");
  fmt::print("\n");
  for (const PrefetchRow& row : rows) {
    fmt::print("| {} |", row.label);
    for (const char* key : kKeys) {
      const bool has = row.prefetch.is_object() && row.prefetch.contains(key);
      fmt::print(" {} |", has ? cell(row.prefetch[key]) : "-");
    }
    fmt::print("\n");
  }
}

}  // namespace faultline::bench
