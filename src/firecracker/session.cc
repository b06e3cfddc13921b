#include "firecracker/session.h"

#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include "core/log.h"
#include "core/prefetch_stats_json.h"

namespace faultline::firecracker {

std::string session_label(uint64_t id, const std::string& name, int pid) {
  if (name.empty()) return fmt::format("session {} (pid {})", id, pid);
  return fmt::format("session {} \"{}\" (pid {})", id, name, pid);
}

Result<std::unique_ptr<Session>> Session::start(uint64_t id, int peer_pid,
                                                ReceivedHandshake handshake,
                                                const SessionConfig& config, std::string name) {
  Status is_uffd = check_is_userfaultfd(handshake.uffd.get());
  if (!is_uffd.is_ok()) return is_uffd;
  Result<std::vector<RegionMapping>> regions = parse_region_mappings(handshake.json, config.limits);
  if (!regions.is_ok()) return regions.status();

  Result<std::unique_ptr<PageSource>> source = config.open_source();
  if (!source.is_ok()) return source.status();
  PageSource& opened = **source;  // the pager owns it from here on
  PagerConfig pager_config;
  pager_config.source_retry.deadline = config.source_deadline;
  // Guest-physical addresses here are offsets into the memory file.
  PagerHandle pager = Pager::create(std::move(source).value(), pager_config);
  for (const RegionMapping& r : *regions) {
    Status s = pager->register_region(r.offset, r.size);
    if (!s.is_ok()) return s;
  }
  FaultServerOptions options;
  options.threads = config.threads;
  options.name = session_label(id, name, peer_pid);
  options.max_page_size = config.limits.max_page_size;
  options.prefetch = config.prefetch;
  std::vector<GuestRange> ranges;
  for (const RegionMapping& r : *regions) ranges.push_back({r.offset, r.size});
  PreparedWorkingSets working_sets =
      prepare_working_sets(config.working_sets, opened, 0, config.limits.mem_file_size.value_or(0),
                           ranges, options.prefetch, options.name);
  auto server = FaultServer::adopt(pager, std::move(handshake.uffd), options);
  if (!server.is_ok()) return server.status();
  for (const RegionMapping& r : *regions) {
    Status s = (*server)->adopt_mapping(
        {r.offset, reinterpret_cast<void*>(r.base_host_virt_addr), r.size, r.page_size});
    if (!s.is_ok()) return s;
  }
  Status started = (*server)->start();
  if (!started.is_ok()) return started;
  std::unique_ptr<Session> session(new Session(id, peer_pid, std::move(name),
                                               std::move(regions).value(), std::move(pager),
                                               std::move(server).value()));
  session->policy_ = config.prefetch.policy;
  session->working_sets_ = std::move(working_sets);
  if (config.start_push) {
    auto push = config.start_push(opened, *session->server_, session->regions_);
    if (!push.is_ok()) return push.status();
    session->push_ = std::move(push).value();
  }
  return session;
}

Session::Session(uint64_t id, int pid, std::string name, std::vector<RegionMapping> regions,
                 PagerHandle pager, std::unique_ptr<FaultServer> server)
    : id_(id),
      pid_(pid),
      name_(std::move(name)),
      label_(session_label(id, name_, pid)),
      regions_(std::move(regions)),
      pager_(std::move(pager)),
      server_(std::move(server)),
      started_(std::chrono::steady_clock::now()) {}

std::string Session::serve_until_done(int connection, int stop_fd) {
  pollfd fds[2] = {{connection, POLLIN, 0}, {stop_fd, POLLIN, 0}};
  char discard[256];
  std::string how = "the VM disconnected";
  while (server_->running()) {
    int ready = ::poll(fds, 2, 200);
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    if (fds[1].revents != 0) {
      how = "the handler stopped";
      break;
    }
    if ((fds[0].revents & (POLLHUP | POLLERR)) != 0) break;
    if ((fds[0].revents & POLLIN) != 0 && ::read(connection, discard, sizeof discard) <= 0) break;
  }
  const bool server_ended_first = !server_->running();
  push_.reset();
  server_->request_shutdown();
  Status stopped = server_->wait();
  // However it ended, what the guest touched first is worth keeping.
  if (working_sets_.recording) working_sets_.recording->finish();
  if (!stopped.is_ok() && stopped.code() != ErrorCode::kUnavailable) {
    log().error("{}: stopped: {}", label_, stopped.to_string());
    return "serving failed: " + stopped.message();
  }
  if (server_ended_first) return "the VM exited (its userfaultfd hung up)";
  return how;
}

nlohmann::ordered_json Session::stats() const {
  const PagerStats p = pager_->stats();
  const FaultServerStats s = server_->stats();
  uint64_t mapped = 0;
  for (const RegionMapping& r : regions_) mapped += r.size;
  return {
      {"id", id_},
      {"name", name_},
      {"pid", pid_},
      {"regions", regions_.size()},
      {"mapped_bytes", mapped},
      {"page_size", regions_.front().page_size},
      {"seconds",
       std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count()},
      {"faults", p.faults},
      {"bytes_served", p.bytes_served},
      {"zero_pages", p.zero_pages + s.removed_zero_installs},
      {"removed_ranges", s.removed_ranges},
      {"removed_pages", s.removed_pages},
      {"source_errors", p.source_errors},
      {"already_present", s.already_present},
      {"poisoned", s.poisoned},
      {"can_poison", server_->can_poison()},
      {"fault_around_pages", p.fault_around_pages},
      {"background_pages", s.filled_pages + s.pushed_pages},
      {"pushed_pages", s.pushed_pages},
      {"working_set", working_set_json(working_sets_, s)},
      {"fully_resident_ms", static_cast<double>(s.fully_resident_ns) / 1e6},
      {"prefetch", prefetch_stats_json(policy_, s)},
      {"latency_us",
       {{"p50", p.fault_latency.p50_ns / 1e3},
        {"p99", p.fault_latency.p99_ns / 1e3},
        {"max", p.fault_latency.max_ns / 1e3}}},
  };
}

std::string Session::summary(const std::string& how_it_ended) const {
  const auto j = stats();
  return fmt::format(
      "{} ended after {:.1f} s ({}): {} faults, {:.1f} MiB served, {} zero pages, "
      "{} removed ranges, {} source errors, fetch latency p50 {:.1f} us p99 {:.1f} us",
      label_, j["seconds"].get<double>(), how_it_ended, j["faults"].get<uint64_t>(),
      static_cast<double>(j["bytes_served"].get<uint64_t>()) / (1 << 20),
      j["zero_pages"].get<uint64_t>(), j["removed_ranges"].get<uint64_t>(),
      j["source_errors"].get<uint64_t>(), j["latency_us"]["p50"].get<double>(),
      j["latency_us"]["p99"].get<double>());
}

}  // namespace faultline::firecracker
