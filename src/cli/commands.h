// Each subcommand of the `faultline` binary registers itself here.
#pragma once

#include <CLI/CLI.hpp>

namespace faultline::cli {

void add_serve_pages_command(CLI::App& app);
void add_demo_command(CLI::App& app);
void add_handle_command(CLI::App& app);
void add_vm_command(CLI::App& app);
void add_working_set_command(CLI::App& app);
// `faultline migrate`, and `faultline vm receive` under the vm command.
void add_migrate_commands(CLI::App& app, CLI::App& vm);

}  // namespace faultline::cli
