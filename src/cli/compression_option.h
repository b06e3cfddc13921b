// --compression for the commands that speak protocol v2: none, lz4 or zstd,
// parsed into the library's enum; any other value is refused by the parser.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "faultline/compression.h"

namespace faultline::cli {

inline CLI::Option* add_compression_option(CLI::App* cmd, Compression& value,
                                           const std::string& help) {
  // A name becomes the enum's number, which CLI11 then stores; numbers given
  // on the command line are names of nothing, so they are refused too.
  const CLI::Validator by_name(
      [](std::string& input) -> std::string {
        for (Compression c : {Compression::kNone, Compression::kLz4, Compression::kZstd}) {
          if (input == compression_name(c)) {
            input = std::to_string(static_cast<int>(c));
            return {};
          }
        }
        return "unknown compression '" + input + "' (none, lz4 or zstd)";
      },
      "", "compression");
  return cmd->add_option("--compression", value, help)
      ->transform(by_name)
      ->type_name("none|lz4|zstd")
      ->default_str(std::string(compression_name(value)));
}

}  // namespace faultline::cli
