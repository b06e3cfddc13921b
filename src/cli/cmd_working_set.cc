// `faultline working-set merge | inspect`: recorded working sets, offline.
#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/log.h"
#include "faultline/working_set.h"

namespace faultline::cli {
namespace {

[[noreturn]] void fail(const std::string& command, const std::string& message) {
  log().error("working-set {}: {}", command, message);
  throw CLI::RuntimeError(1);
}

WorkingSet load_or_fail(const std::string& command, const std::string& path) {
  auto set = WorkingSet::load(path);
  if (!set.is_ok()) fail(command, set.status().message());
  return std::move(set).value();
}

struct MergeArgs {
  std::string out;
  std::vector<std::string> in;
};

void merge(const MergeArgs& a) {
  std::vector<WorkingSet> sets;
  for (const std::string& path : a.in) {
    sets.push_back(load_or_fail("merge", path));
    const ImageIdentity& first = sets.front().image();
    const ImageIdentity& image = sets.back().image();
    if (image != first) {
      fail("merge",
           fmt::format("{} was recorded on another image (size {} bytes, fingerprint {:#018x}) "
                       "than {} (size {} bytes, fingerprint {:#018x})",
                       path, image.size, image.fingerprint, a.in.front(), first.size,
                       first.fingerprint));
    }
  }
  auto merged = WorkingSet::merge(sets);
  if (!merged.is_ok()) fail("merge", merged.status().message());
  if (Status s = merged->save(a.out); !s.is_ok()) fail("merge", s.message());
  fmt::print("merged {} recording(s) from {} file(s) into {}: {} pages ({:.1f} MiB)\n",
             merged->recordings(), a.in.size(), a.out, merged->touches().size(),
             static_cast<double>(merged->bytes()) / (1 << 20));
}

struct InspectArgs {
  std::string file;
  bool json = false;
};

void inspect(const InspectArgs& a) {
  const WorkingSet set = load_or_fail("inspect", a.file);
  const auto touches = set.touches();
  uint64_t writes = 0;
  uint64_t first_us = touches.empty() ? 0 : UINT64_MAX;
  uint64_t last_us = 0;
  for (const WorkingSetTouch& t : touches) {
    writes += t.write ? 1 : 0;
    first_us = std::min(first_us, t.since_resume_us);
    last_us = std::max(last_us, t.since_resume_us);
  }
  const double write_percent =
      touches.empty() ? 0.0 : 100.0 * static_cast<double>(writes) / touches.size();
  if (a.json) {
    const nlohmann::ordered_json j = {
        {"file", a.file},
        {"image_size", set.image().size},
        {"fingerprint", fmt::format("{:#018x}", set.image().fingerprint)},
        {"recordings", set.recordings()},
        {"pages", touches.size()},
        {"bytes", set.bytes()},
        {"write_percent", write_percent},
        {"first_touch_us", first_us},
        {"last_touch_us", last_us},
    };
    fmt::print("{}\n", j.dump(2));
    return;
  }
  fmt::print("working set {}\n", a.file);
  fmt::print("  image        {} bytes ({:.1f} MiB), fingerprint {:#018x}\n", set.image().size,
             static_cast<double>(set.image().size) / (1 << 20), set.image().fingerprint);
  fmt::print("  recordings   {}\n", set.recordings());
  fmt::print("  pages        {} ({:.1f} MiB), {:.1f}% first touched by a write\n", touches.size(),
             static_cast<double>(set.bytes()) / (1 << 20), write_percent);
  fmt::print("  first touch  {:.3f} s after resume\n", static_cast<double>(first_us) / 1e6);
  fmt::print("  last touch   {:.3f} s after resume\n", static_cast<double>(last_us) / 1e6);
}

}  // namespace

void add_working_set_command(CLI::App& app) {
  CLI::App* ws = app.add_subcommand(
      "working-set", "recorded working sets (handle/vm restore --record-working-set)");
  ws->require_subcommand(1);

  auto m = std::make_shared<MergeArgs>();
  CLI::App* merge_cmd = ws->add_subcommand(
      "merge",
      "merge recordings of one image: pages touched in most recordings first, ties by their "
      "mean first-touch time");
  merge_cmd->add_option("--out", m->out, "the merged working set (written atomically)")
      ->type_name("FILE")
      ->required();
  merge_cmd->add_option("in", m->in, "working-set files recorded on the same image")
      ->type_name("IN")
      ->required();
  merge_cmd->callback([m] { merge(*m); });

  auto i = std::make_shared<InspectArgs>();
  CLI::App* inspect_cmd =
      ws->add_subcommand("inspect", "print what a working-set file holds (checking it whole)");
  inspect_cmd->add_option("file", i->file, "a working-set file")->type_name("FILE")->required();
  inspect_cmd->add_flag("--json", i->json, "print it as JSON");
  inspect_cmd->callback([i] { inspect(*i); });
}

}  // namespace faultline::cli
