// "did you mean --mem-file?" for a flag the parser does not know (CLI11 2.1
// only says which arguments it did not expect).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace faultline::cli {

// For each argument of `app`'s parsed subcommands it did not expect that
// looks like a flag, " ARG: did you mean --X?" naming the closest flag of the
// subcommands given (or of the program); empty when none is close.
std::string suggest_flags(const CLI::App& app);

}  // namespace faultline::cli
