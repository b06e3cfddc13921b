#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "core/log.h"

int main(int argc, char** argv) {
  CLI::App app{"faultline: a postcopy / lazy-restore memory pager for virtual machines"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->capture_default_str();
  app.parse_complete_callback(
      [&] { faultline::log().set_level(spdlog::level::from_str(log_level)); });

  faultline::cli::add_serve_pages_command(app);
  faultline::cli::add_demo_command(app);
  faultline::cli::add_handle_command(app);
  faultline::cli::add_vm_command(app);

  CLI11_PARSE(app, argc, argv);
  return 0;
}
