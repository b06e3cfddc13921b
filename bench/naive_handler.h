// The baseline most example handlers implement: one thread waiting in poll(),
// one 4 KiB page per fault, read with pread and installed with UFFDIO_COPY.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

#include "faultline/status.h"
#include "faultline/unique_fd.h"

namespace faultline::bench {

class NaiveHandler {
 public:
  // Serves [memory, memory + size) from `file` (byte 0 = memory[0]).
  NaiveHandler(int file, std::byte* memory, uint64_t size);
  // Serves a userfaultfd someone else opened and registered over the memory
  // (a VMM's, as handed over in a Firecracker handshake).
  NaiveHandler(int file, std::byte* memory, uint64_t size, UniqueFd registered_uffd);
  ~NaiveHandler();
  Status start();
  uint64_t faults() const { return faults_.load(); }

 private:
  void loop();
  int file_;
  std::byte* memory_;
  uint64_t size_;
  UniqueFd uffd_;
  UniqueFd stop_;
  std::thread thread_;
  std::atomic<uint64_t> faults_{0};
};

}  // namespace faultline::bench
