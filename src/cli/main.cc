#include <CLI/CLI.hpp>
#include <exception>

#include "cli/commands.h"
#include "cli/flag_suggestion.h"
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
  faultline::cli::add_working_set_command(app);

  try {
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      // CLI11's own words, with the flag that was probably meant when an
      // argument was not expected (or a required flag seemed missing).
      const bool from_a_command = dynamic_cast<const CLI::RuntimeError*>(&e) != nullptr;
      const std::string hint = from_a_command ? "" : faultline::cli::suggest_flags(app);
      if (hint.empty() || e.get_exit_code() == 0) return app.exit(e);
      return app.exit(CLI::ParseError(std::string(e.what()) + ";" + hint, e.get_exit_code()));
    }
  } catch (const std::exception& e) {
    // Nothing a command throws leaves the process without saying what.
    faultline::log().error("{}", e.what());
    return 1;
  }
  return 0;
}
