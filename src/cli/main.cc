#include <CLI/CLI.hpp>
#include <exception>

#include "cli/commands.h"
#include "core/log.h"
#include "faultline/version.h"

int main(int argc, char** argv) {
  CLI::App app{"faultline: a postcopy / lazy-restore memory pager for virtual machines"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "faultline " FAULTLINE_VERSION_STRING);
  // Options of the whole program are taken after the subcommand too
  // (`faultline handle ... --log-level debug`).
  app.fallthrough();
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical, off")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.parse_complete_callback(
      [&] { faultline::log().set_level(spdlog::level::from_str(log_level)); });

  faultline::cli::add_serve_pages_command(app);
  faultline::cli::add_demo_command(app);
  faultline::cli::add_handle_command(app);
  faultline::cli::add_vm_command(app);

  try {
    CLI11_PARSE(app, argc, argv);
  } catch (const std::exception& e) {
    // Nothing a command throws leaves the process without saying what.
    faultline::log().error("{}", e.what());
    return 1;
  }
  return 0;
}
