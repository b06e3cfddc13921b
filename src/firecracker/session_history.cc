#include "firecracker/session_history.h"

namespace faultline::firecracker {

void SessionHistory::add(nlohmann::ordered_json summary, const std::string& how_it_ended) {
  summary["ended"] = how_it_ended;
  std::lock_guard lock(mu_);
  ended_.push_back(std::move(summary));
  while (ended_.size() > limit_) {
    ended_.pop_front();
    ++forgotten_;
  }
}

nlohmann::ordered_json SessionHistory::to_json() const {
  std::lock_guard lock(mu_);
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const auto& entry : ended_) list.push_back(entry);
  return list;
}

uint64_t SessionHistory::forgotten() const {
  std::lock_guard lock(mu_);
  return forgotten_;
}

}  // namespace faultline::firecracker
