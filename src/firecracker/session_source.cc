#include "firecracker/session_source.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include "faultline/network_page_source.h"
#include "firecracker/session_push.h"

namespace faultline::firecracker {
namespace {

Status configure_file(const std::string& path, SessionConfig& config) {
  // Check the file now: a missing file is the operator's error, not a VM's.
  auto probe = open_file_page_source(path, 0);
  if (!probe.is_ok()) return probe.status();
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return io_error(fmt::format("stat {}", path), errno);
  config.limits.mem_file_size = static_cast<uint64_t>(st.st_size);
  config.open_source = [path] { return open_file_page_source(path, 0); };
  return Status::ok();
}

// One connection a session; the image it serves must still be the one
// checked at startup, the one the session's regions were checked against.
Result<std::unique_ptr<PageSource>> open_network(const std::string& address,
                                                 const NetworkSourceOptions& options,
                                                 const RemoteImage& expected) {
  auto source = NetworkPageSource::connect(address, options);
  if (!source.is_ok()) return source.status();
  const RemoteImage& image = (*source)->image();
  if (image.image_id != expected.image_id || image.size != expected.size) {
    return Status(
        ErrorCode::kUnavailable,
        fmt::format("page server {} now serves another image ({} bytes, id {:#x}) "
                    "than when the handler started ({} bytes, id {:#x})",
                    address, image.size, image.image_id, expected.size, expected.image_id));
  }
  return std::unique_ptr<PageSource>(std::move(source).value());
}

Status configure_network(const UffdHandlerOptions& options, SessionConfig& config) {
  NetworkSourceOptions network = options.network;
  network.push = false;
  auto probe = NetworkPageSource::connect(options.page_server, network);
  if (!probe.is_ok()) {
    return probe.status().with_context(fmt::format("page server {}", options.page_server));
  }
  const RemoteImage image = (*probe)->image();
  if (image.ram_start != 0) {
    return invalid_argument(fmt::format(
        "page server {} serves its image from guest-physical {:#x}; the handler asks for "
        "offsets into the memory file: serve it with --ram-start 0",
        options.page_server, image.ram_start));
  }
  config.limits.mem_file_size = image.size;
  config.limits.mem_file_name = fmt::format("the image of page server {}", options.page_server);
  // Recording sees every first touch only if nothing arrives untouched.
  network.push = options.prefetch.policy == PrefetchPolicy::kFull && options.prefetch.fill &&
                 options.working_sets.record.empty();
  config.open_source = [address = options.page_server, network, image] {
    return open_network(address, network, image);
  };
  if (network.push) {
    // The server's push is the background fill.
    config.prefetch.fill = false;
    // Every source this config opens is a NetworkPageSource (open_network).
    config.start_push = [](PageSource& source, FaultServer& server,
                           std::span<const RegionMapping> regions) {
      return SessionPush::start(static_cast<NetworkPageSource&>(source), server, regions);
    };
  }
  return Status::ok();
}

}  // namespace

Status configure_session_source(const UffdHandlerOptions& options, SessionConfig& config) {
  if (options.mem_file.empty() == options.page_server.empty()) {
    return invalid_argument("give exactly one of a memory file or a page server");
  }
  return options.mem_file.empty() ? configure_network(options, config)
                                  : configure_file(options.mem_file, config);
}

}  // namespace faultline::firecracker
