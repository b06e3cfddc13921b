// A client that acts as Firecracker does when it restores a snapshot with the
// Uffd memory backend: guest memory mapped anonymous and private (optionally
// on 2 MiB huge pages) as non-contiguous regions, a userfaultfd registered
// over it in missing mode, then one message to the handler's socket: the JSON
// region mappings with the userfaultfd attached (SCM_RIGHTS).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "faultline/status.h"
#include "faultline/unique_fd.h"
#include "os_linux/anonymous_memory.h"

namespace faultline::testing {

struct FirecrackerRegion {
  uint64_t size = 0;
  uint64_t offset = 0;  // in the snapshot memory file
};

// Which era's JSON to send.
enum class PageSizeField { kBoth, kPageSizeKibOnly, kNone };

struct FirecrackerOptions {
  std::vector<FirecrackerRegion> regions;
  uint64_t page_size = 4096;
  bool huge_pages = false;  // MAP_HUGETLB, 2 MiB pages
  uint64_t uffd_features = 0;
  PageSizeField page_size_field = PageSizeField::kBoth;
};

class FirecrackerClient {
 public:
  explicit FirecrackerClient(FirecrackerOptions options);
  ~FirecrackerClient();
  FirecrackerClient(const FirecrackerClient&) = delete;
  FirecrackerClient& operator=(const FirecrackerClient&) = delete;

  // False (with a reason) if the memory or the userfaultfd could not be set up.
  const Status& setup() const { return setup_; }

  std::string mappings_json() const;
  // Connects to the handler and sends the mappings with the userfaultfd.
  Status connect_and_send(const std::string& socket_path);

  std::byte* region(size_t i) const { return regions_[i]; }
  uint64_t region_size(size_t i) const { return options_.regions[i].size; }
  uint64_t region_offset(size_t i) const { return options_.regions[i].offset; }
  int uffd() const { return uffd_.get(); }

  // Closes this side's userfaultfd, leaving the memory mapped: once the
  // handler's copy is closed too, blocked faults resume on zero pages.
  void close_uffd() { uffd_.reset(); }

  // The VM exits: its connection and userfaultfd close, its memory goes.
  void exit_vm();

 private:
  FirecrackerOptions options_;
  Status setup_;
  AnonymousMemory reservation_;  // the regions are mapped inside it
  std::vector<std::byte*> regions_;
  UniqueFd uffd_;
  UniqueFd connection_;
};

// Connects to the handler at `socket_path` and sends `bytes` with `fd`
// attached unless it is negative; returns the connection, left open.
Result<UniqueFd> send_handshake(const std::string& socket_path, std::string_view bytes, int fd);

// Sends `bytes` to the handler at `socket_path`, with `fd` attached unless it
// is negative, then waits (up to 10 s) for the handler to close the
// connection. Returns true if it did.
bool send_and_expect_hang_up(const std::string& socket_path, std::string_view bytes, int fd,
                             bool close_after_sending = false);

}  // namespace faultline::testing
