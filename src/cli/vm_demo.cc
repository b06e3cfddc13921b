// The KVM half of `faultline demo`: a real guest, run uninterrupted for its
// result, snapshotted mid-workload, then resumed in fresh processes lazily
// (from the memory file and from a page server) and eagerly, side by side.
#include "cli/vm_demo.h"

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/progress_line.h"
#include "core/log.h"
#include "faultline/page_server.h"
#include "os_linux/child_process.h"

namespace faultline::cli {
namespace {

// Runs `faultline ARGS --json` as a fresh process and parses what it prints.
Result<nlohmann::json> run_json(const std::string& dir, std::vector<std::string> args) {
  const std::string out = dir + "/step.json";
  args.insert(args.begin(), "faultline");
  args.emplace_back("--json");
  auto child = ChildProcess::spawn(args, {.program = "/proc/self/exe", .stdout_file = out});
  if (!child.is_ok()) return child.status();
  if (child->wait().code() != 0) {
    return Status(ErrorCode::kIo,
                  fmt::format("`faultline {} {}` failed (see above)", args[1], args[2]));
  }
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  auto j = nlohmann::json::parse(text.str(), nullptr, false);
  if (j.is_discarded()) return Status(ErrorCode::kProtocol, "unreadable JSON from " + args[2]);
  return j;
}

// run_json with a progress line saying what runs.
Result<nlohmann::json> run_json_showing(const std::string& what, const std::string& dir,
                                        std::vector<std::string> args) {
  ProgressLine progress(what);
  return run_json(dir, std::move(args));
}

std::string cell_ms(const nlohmann::json& j, const char* key) {
  return fmt::format("{:.1f} ms", j[key].get<double>());
}

}  // namespace

int run_vm_demo(const VmDemoOptions& o) {
  std::string pattern = std::filesystem::temp_directory_path() / "faultline-vm-demo-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    log().error("cannot create a temporary folder: {}", std::strerror(errno));
    return 1;
  }
  const std::string dir = pattern;
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{dir};
  const std::string state = dir + "/vm.state", mem = dir + "/vm.mem";
  auto fail = [](const Status& s) {
    log().error("demo: {}", s.to_string());
    return 1;
  };

  fmt::print(
      "faultline demo: a {} KVM guest runs a memory workload; it is snapshotted mid-way\n"
      "and resumed in fresh processes, lazily and eagerly\n\n",
      o.ram);
  (void)std::fflush(stdout);
  auto base = run_json_showing("the guest runs uninterrupted, for the reference result", dir,
                               {"vm", "run", "--ram", o.ram, "--quiet"});
  if (!base.is_ok()) return fail(base.status());
  const uint64_t total = (*base)["progress_total"];
  fmt::print("  uninterrupted run   checksum {}  {} pages  {:.0f} ms\n",
             (*base)["checksum"].get<std::string>(), (*base)["pages"].get<uint64_t>(),
             (*base)["total_ms"].get<double>());
  (void)std::fflush(stdout);

  const uint64_t mid = total / 2;
  auto snap = run_json_showing("the guest runs again and is snapshotted half-way", dir,
                               {"vm", "run", "--ram", o.ram, "--snapshot-after-progress",
                                std::to_string(mid), "--state", state, "--mem", mem});
  if (!snap.is_ok()) return fail(snap.status());
  const auto& sj = (*snap)["snapshot"];
  fmt::print(
      "  snapshot            at progress report {}/{} (mid pass 2): {} MiB of data in the\n"
      "                      sparse memory file, {} bytes of state, written in {:.0f} ms\n\n",
      mid, total, sj["data_bytes"].get<uint64_t>() >> 20, sj["state_bytes"].get<uint64_t>(),
      sj["ms"].get<double>());
  (void)std::fflush(stdout);

  // The page server's routine lines would land in the table; its warnings still show.
  const spdlog::level::level_enum level = log().level();
  log().set_level(std::max(level, spdlog::level::warn));
  struct RestoreLevel {
    spdlog::level::level_enum level;
    ~RestoreLevel() { log().set_level(level); }
  } restore_level{level};
  auto server = PageServer::start({"unix:" + dir + "/pages.sock", mem, 0});
  if (!server.is_ok()) return fail(server.status());
  struct Column {
    const char* name;
    std::vector<std::string> args;
    nlohmann::json j;
  };
  std::vector<Column> columns = {
      {"lazy, file", {"vm", "restore", "--lazy", "--mem", mem}, {}},
      {"lazy, page server", {"vm", "restore", "--lazy", "--page-server", (*server)->address()}, {}},
      {"eager, file", {"vm", "restore", "--eager", "--mem", mem}, {}},
  };
  for (Column& c : columns) {
    c.args.insert(c.args.end(), {"--state", state, "--quiet"});
    auto j = run_json_showing(fmt::format("the snapshot is restored: {}", c.name), dir, c.args);
    if (!j.is_ok()) return fail(j.status());
    c.j = std::move(j).value();
  }
  (*server)->stop();

  bool all_same = true;
  auto row = [&](const char* label, auto cell) {
    fmt::print("  {:<22}", label);
    for (const Column& c : columns) fmt::print("{:>20}", cell(c.j));
    fmt::print("\n");
  };
  fmt::print("  {:<22}", "restore");
  for (const Column& c : columns) fmt::print("{:>20}", c.name);
  fmt::print("\n");
  row("memory ready", [](const auto& j) { return cell_ms(j, "memory_ready_ms"); });
  row("first instruction", [](const auto& j) { return cell_ms(j, "first_entry_ms"); });
  row("faults",
      [](const auto& j) { return fmt::format("{}", j["faults"].template get<uint64_t>()); });
  row("prewarmed pages",
      [](const auto& j) { return fmt::format("{}", j["prewarmed"].template get<uint64_t>()); });
  row("MiB served / copied",
      [](const auto& j) { return fmt::format("{:.1f}", j["mib_served"].template get<double>()); });
  row("fault p50 / p99", [](const auto& j) {
    if (j["faults"].template get<uint64_t>() == 0) return std::string("-");
    return fmt::format("{:.0f} / {:.0f} us", j["fault_p50_us"].template get<double>(),
                       j["fault_p99_us"].template get<double>());
  });
  row("total to the result", [](const auto& j) { return cell_ms(j, "total_ms"); });
  row("guest's result", [&](const auto& j) {
    const bool same = j["checksum"] == (*base)["checksum"] && j["mismatches"] == 0;
    all_same = all_same && same;
    return std::string(same ? "identical" : "DIFFERENT");
  });
  fmt::print(
      "\n  first instruction: from restore start to the first KVM_RUN; total: to the guest's\n"
      "  result. Where KVM emulates guest instructions (software nested virtualisation),\n"
      "  the totals are mostly guest time.\n");
  fmt::print("  {}\n", all_same ? "OK: every restored guest finished with the uninterrupted "
                                  "run's result"
                                : "FAILED: a restored guest's result differs");
  return all_same ? 0 : 1;
}

}  // namespace faultline::cli
