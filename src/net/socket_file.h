// The file a Unix listener bound, owned: removed when its owner goes, and only
// while the path still names that very file (same device and inode), never a
// socket or a file another process has put there since.
#pragma once

#include <sys/types.h>

#include <string>

namespace faultline::net {

class SocketFile {
 public:
  SocketFile() = default;  // owns nothing
  // Takes ownership of the file now at `path` (the caller has just bound it).
  static SocketFile claim(std::string path);

  SocketFile(SocketFile&& other) noexcept;
  SocketFile& operator=(SocketFile&& other) noexcept;
  SocketFile(const SocketFile&) = delete;
  SocketFile& operator=(const SocketFile&) = delete;
  ~SocketFile();  // remove()

  // Unlinks the file if the path still names it; then owns nothing. Idempotent.
  void remove();
  bool owns() const { return !path_.empty(); }

 private:
  std::string path_;  // empty: owns nothing
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

}  // namespace faultline::net
