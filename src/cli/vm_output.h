// What the VM commands print, shared by `vm run|restore|receive` and `migrate`.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "vm/machine.h"

namespace faultline::cli {

double ms_since(vm::Clock::time_point start, std::optional<vm::Clock::time_point> at);
// Logs "vm COMMAND: MESSAGE" (option fields in it named by their flags) and
// exits the command with status 1.
[[noreturn]] void fail(const std::string& command, const std::string& message);
const char* pass_name(uint32_t pass, vm::WorkloadKind kind);
// What the guest reported.
nlohmann::ordered_json guest_json(vm::Machine& m, vm::RunEnd end);
void print_results(vm::Machine& m);
// Prints progress lines unless quiet; pauses at report `pause_at` (0: never).
vm::RunHooks progress_hooks(vm::Machine& m, bool quiet, uint64_t pause_at);

}  // namespace faultline::cli
