#include "core/durable_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>

#include "faultline/unique_fd.h"

namespace faultline {

Status pwrite_all(int fd, const void* data, size_t len, uint64_t offset, const std::string& what) {
  const auto* p = static_cast<const char*>(data);
  while (len > 0) {
    const ssize_t n = ::pwrite(fd, p, len, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return io_error(fmt::format("write {}", what), n < 0 ? errno : EIO);
    p += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return Status::ok();
}

Status write_file_durably(const std::string& path, const std::function<Status(int fd)>& fill) {
  // Unique per process and call: several threads may write the same path at
  // once (sessions recording one working set); the last rename wins whole.
  static std::atomic<uint64_t> writes{0};
  const std::string temp = fmt::format("{}.tmp.{}.{}", path, ::getpid(), writes.fetch_add(1));
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return io_error(fmt::format("create {}", temp), errno);
  Status s = fill(fd.get());
  if (s.is_ok() && ::fsync(fd.get()) != 0) s = io_error(fmt::format("fsync {}", temp), errno);
  if (s.is_ok() && ::close(fd.release()) != 0) s = io_error(fmt::format("close {}", temp), errno);
  if (s.is_ok() && ::rename(temp.c_str(), path.c_str()) != 0) {
    s = io_error(fmt::format("rename {} to {}", temp, path), errno);
  }
  if (!s.is_ok()) {
    ::unlink(temp.c_str());
    return s;
  }
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = std::filesystem::current_path();
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd || ::fsync(dir_fd.get()) != 0)
    return io_error(fmt::format("fsync {}", dir.string()), errno);
  return Status::ok();
}

}  // namespace faultline
