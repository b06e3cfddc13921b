#include "net/socket_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <utility>

namespace faultline::net {

SocketFile SocketFile::claim(std::string path) {
  SocketFile file;
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return file;  // gone already: nothing to own
  file.path_ = std::move(path);
  file.dev_ = st.st_dev;
  file.ino_ = st.st_ino;
  return file;
}

SocketFile::SocketFile(SocketFile&& other) noexcept
    : path_(std::exchange(other.path_, {})), dev_(other.dev_), ino_(other.ino_) {}

SocketFile& SocketFile::operator=(SocketFile&& other) noexcept {
  if (this != &other) {
    remove();
    path_ = std::exchange(other.path_, {});
    dev_ = other.dev_;
    ino_ = other.ino_;
  }
  return *this;
}

SocketFile::~SocketFile() {
  remove();
}

void SocketFile::remove() {
  if (path_.empty()) return;
  struct stat st {};
  // A small window remains between lstat and unlink; POSIX offers no
  // unlink-if-same-inode, and only a process that can write the directory can
  // use it.
  if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) {
    ::unlink(path_.c_str());
  }
  path_.clear();
}

}  // namespace faultline::net
