#include "cli/socket_directory.h"

#include <fmt/format.h>

#include <filesystem>
#include <system_error>

namespace faultline::cli {

Status check_socket_directory(const std::string& flag, const std::string& path) {
  if (path.empty()) return Status::ok();
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) return Status::ok();
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) return Status::ok();
  if (std::filesystem::exists(dir, ec)) {
    return invalid_argument(fmt::format("{} {}: {} is not a directory", flag, path, dir.string()));
  }
  return invalid_argument(
      fmt::format("{} {}: directory {} does not exist", flag, path, dir.string()));
}

Status check_listen_directory(const std::string& flag, const std::string& address) {
  constexpr std::string_view kUnix = "unix:";
  if (!address.starts_with(kUnix)) return Status::ok();
  return check_socket_directory(flag, address.substr(kUnix.size()));
}

}  // namespace faultline::cli
