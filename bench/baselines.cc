#include "baselines.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <stdexcept>

#include "os_linux/anonymous_memory.h"

namespace faultline::bench {
namespace {

uint64_t minor_and_major_faults() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<uint64_t>(usage.ru_minflt + usage.ru_majflt);
}

}  // namespace

Outcome eager_copy(int image, uint64_t size, const Workload& w) {
  const auto start = Clock::now();
  AnonymousMemory memory = guest_memory(size);
  constexpr uint64_t kChunk = 1 << 20;
  for (uint64_t off = 0; off < size; off += kChunk) {
    const uint64_t n = std::min(kChunk, size - off);
    if (::pread(image, memory.data() + off, n, static_cast<off_t>(off)) !=
        static_cast<ssize_t>(n)) {
      throw std::runtime_error("eager copy: pread of the image failed");
    }
  }
  const double copy_ms = ms(Clock::now() - start);
  Outcome o = outcome_since(start, run_workload(w, memory.data()));
  o.resident_ms = copy_ms;
  return o;
}

Outcome kernel_private_mapping(int image, uint64_t size, const Workload& w) {
  const uint64_t faults_before = minor_and_major_faults();
  const auto start = Clock::now();
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, image, 0);
  if (p == MAP_FAILED) throw std::runtime_error("kernel MAP_PRIVATE: mmap of the image failed");
  ::madvise(p, size, MADV_NOHUGEPAGE);
  Outcome o = outcome_since(start, run_workload(w, static_cast<std::byte*>(p)));
  ::munmap(p, size);
  o.faults = minor_and_major_faults() - faults_before;
  return o;
}

}  // namespace faultline::bench
