// Sizes and addresses as users type them: "256M", "1G", "0x80000000", "4096".
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <string_view>

#include "faultline/status.h"

namespace faultline::cli {

// A byte count with an optional K/M/G/T suffix (powers of 1024).
Result<uint64_t> parse_size(std::string_view text);

// A power of two and a multiple of the 4 KiB page (a fault-around window), or
// a sentence saying which of the two `value` is not.
Status check_page_power_of_two(uint64_t value);

// An option taking a size as parse_size reads it ("1M", "4096"); anything
// else is refused by the parser, naming the option.
CLI::Option* add_size_option(CLI::App* cmd, const std::string& name, uint64_t& value,
                             const std::string& help);

}  // namespace faultline::cli
