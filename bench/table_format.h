// Medians of repeated runs and the cells of the benchmark tables.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "workloads.h"

namespace faultline::bench {

// Each figure's median over the runs; wrong is the largest, aborted if any was.
Outcome median(const std::vector<Outcome>& runs);

std::string fmt_ms(double ms);          // "-" if negative
std::string fmt_us(uint64_t ns);        // in microseconds
std::string ratio(double a, double b);  // "0.42x", "-" if either is unknown
// "met" or "NOT met" for value <= limit, "-" if the value is unknown.
std::string verdict(double value, double limit);

}  // namespace faultline::bench
