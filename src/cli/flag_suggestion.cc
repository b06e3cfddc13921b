#include "cli/flag_suggestion.h"

#include <algorithm>
#include <vector>

namespace faultline::cli {
namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The long flag of `apps` closest to `name` (without dashes): one it begins
// or ends, or one within a third of its length in edits.
std::string closest_flag(const std::string& name, const std::vector<const CLI::App*>& apps) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, name.size() / 3) + 1;
  for (const CLI::App* app : apps) {
    for (const CLI::Option* option : app->get_options()) {
      for (const std::string& flag : option->get_lnames()) {
        const bool part = flag.size() > name.size() && name.size() >= 3 &&
                          (flag.starts_with(name) || flag.ends_with(name));
        const size_t distance = part ? 1 : edit_distance(name, flag);
        if (distance < best_distance) {
          best_distance = distance;
          best = flag;
        }
      }
    }
  }
  return best;
}

}  // namespace

std::string suggest_flags(const CLI::App& app) {
  std::string text;
  std::vector<const CLI::App*> chain = {&app};
  for (;;) {
    const std::vector<CLI::App*> subs = chain.back()->get_subcommands();
    if (subs.empty()) break;
    chain.push_back(subs.front());
  }
  for (const CLI::App* at : chain) {
    for (const std::string& arg : at->remaining()) {
      if (!arg.starts_with("--") || arg.size() == 2) continue;
      const std::string name = arg.substr(2, arg.find('=') - 2);
      // Options fall through from a subcommand to the program: any of the chain's.
      const std::string flag = closest_flag(name, chain);
      if (!flag.empty()) text += " " + arg + ": did you mean --" + flag + "?";
    }
  }
  return text;
}

}  // namespace faultline::cli
