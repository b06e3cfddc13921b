// Sizes and addresses as users type them: "256M", "1G", "0x80000000", "4096".
#pragma once

#include <cstdint>
#include <string_view>

#include "faultline/status.h"

namespace faultline::cli {

// A byte count with an optional K/M/G/T suffix (powers of 1024).
Result<uint64_t> parse_size(std::string_view text);

}  // namespace faultline::cli
