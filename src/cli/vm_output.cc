// What the VM commands print, shared by `vm run|restore|receive` and `migrate`.
#include "cli/vm_output.h"

#include <fmt/format.h>

#include <cstdio>

#include "cli/flag_names.h"
#include "core/log.h"

namespace faultline::cli {

using vm::Clock;

double ms_since(Clock::time_point start, std::optional<Clock::time_point> at) {
  if (!at) return -1;
  return std::chrono::duration<double, std::milli>(*at - start).count();
}

[[noreturn]] void fail(const std::string& command, const std::string& message) {
  log().error("vm {}: {}", command, with_flag_names(message));
  throw CLI::RuntimeError(1);
}

const char* pass_name(uint32_t pass, vm::WorkloadKind kind) {
  if (kind == vm::WorkloadKind::kInvocation && pass == 2) return "ready";
  switch (pass) {
    case 1:
      return "fill";
    case 2:
      return "walk";
    case 3:
      return "stamps";
  }
  return "?";
}

// What the guest reported, for both run and restore.
nlohmann::ordered_json guest_json(vm::Machine& m, vm::RunEnd end) {
  nlohmann::ordered_json j;
  j["finished"] = end == vm::RunEnd::kFinished;
  j["progress"] = m.last_progress() ? m.last_progress()->index : 0;
  j["progress_total"] = m.workload().total_reports();
  if (const auto& r = m.results()) {
    j["checksum"] = fmt::format("{:#018x}", r->checksum);
    j["mismatches"] = r->mismatches;
    j["pages"] = r->pages;
  }
  return j;
}

void print_results(vm::Machine& m) {
  const auto& r = m.results();
  if (!r) return;
  fmt::print("result: checksum {:#018x}, {} pages, {} mismatched words{}\n", r->checksum, r->pages,
             r->mismatches, r->mismatches == 0 ? "" : "  MEMORY CORRUPTED");
}

vm::RunHooks progress_hooks(vm::Machine& m, bool quiet, uint64_t pause_at) {
  vm::RunHooks hooks;
  hooks.on_progress = [&m, quiet, pause_at](const vm::Progress& p) {
    if (!quiet) {
      fmt::print("progress {}/{}: pass {} ({}), {} MiB\n", p.index, m.workload().total_reports(),
                 p.pass, pass_name(p.pass, m.workload().kind), p.pages * 4096 >> 20);
      std::fflush(stdout);
    }
    return pause_at != 0 && p.index == pause_at;
  };
  return hooks;
}

}  // namespace faultline::cli
