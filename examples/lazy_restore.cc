// The library example of the README, whole: restore a guest's RAM lazily from
// its snapshot memory file, with only the public headers.
//
//   lazy_restore SNAPSHOT_FILE
//
// The snapshot file holds guest RAM byte for byte (Firecracker's and
// `faultline vm snapshot`'s memory file); here the RAM starts at
// guest-physical 0x80000000, as on an arm64 "virt" machine, and is as large as
// the file. In a VMM the guest's vCPUs touch the memory; here one thread reads
// every page and compares it with the file, which is what a wrong byte would
// fail. Prints the pager's statistics as JSON; exits 0 when every byte matched.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "faultline/fault_server.h"

namespace {

constexpr faultline::Gpa kRamBase = 0x8000'0000;
constexpr uint64_t kPage = 4096;

int fail(const char* what, const faultline::Status& status) {
  (void)std::fprintf(stderr, "lazy_restore: %s: %s\n", what, status.to_string().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    (void)std::fprintf(stderr, "usage: %s SNAPSHOT_FILE\n", argv[0]);
    return 2;
  }
  const char* snapshot = argv[1];
  struct stat st {};
  if (::stat(snapshot, &st) != 0 || st.st_size == 0 || st.st_size % kPage != 0) {
    (void)std::fprintf(stderr, "lazy_restore: %s is missing, empty or not whole 4 KiB pages\n",
                       snapshot);
    return 2;
  }
  const auto ram_size = static_cast<uint64_t>(st.st_size);

  // The guest's RAM in this process: anonymous memory nobody has touched yet.
  void* guest_ram_host_addr =
      ::mmap(nullptr, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (guest_ram_host_addr == MAP_FAILED) {
    std::perror("lazy_restore: mmap");
    return 1;
  }

  // What the guest touches first once it resumes, fetched before it runs: its
  // kernel text at the start of RAM, vCPU 0's stack and the device tree,
  // wherever the VMM put them (here: the first 64 KiB, the last page, and the
  // 64 KiB below it).
  const faultline::GuestRange kernel_text{kRamBase, 16 * kPage};
  const faultline::GuestRange vcpu0_stack{kRamBase + ram_size - kPage, kPage};
  const faultline::GuestRange fdt{kRamBase + ram_size - 17 * kPage, 16 * kPage};

  auto source = faultline::open_file_page_source(snapshot, /*ram_start=*/kRamBase);
  if (!source.is_ok()) return fail("open the snapshot", source.status());
  faultline::PagerConfig config;
  config.prewarm = faultline::PrewarmList::from_boot_critical(kernel_text, vcpu0_stack, fdt);
  auto pager = faultline::Pager::create(std::move(source).value(), config);
  if (auto s = pager->register_region(kRamBase, ram_size); !s.is_ok()) return fail("region", s);

  auto server = faultline::FaultServer::create(pager);  // opens the userfaultfd
  if (!server.is_ok()) return fail("userfaultfd", server.status());
  faultline::Status s = (*server)->map({kRamBase, guest_ram_host_addr, ram_size, kPage});
  if (s.is_ok()) s = (*server)->prewarm();  // before vCPU 0 runs
  if (s.is_ok()) s = (*server)->start();
  if (!s.is_ok()) return fail("start", s);

  // "Run the VM": every first touch of a page faults and is served.
  const int fd = ::open(snapshot, O_RDONLY | O_CLOEXEC);
  std::vector<char> expected(kPage);
  uint64_t wrong = 0;
  const auto* ram = static_cast<const char*>(guest_ram_host_addr);
  for (uint64_t off = 0; off < ram_size; off += kPage) {
    if (::pread(fd, expected.data(), kPage, static_cast<off_t>(off)) != kPage ||
        std::memcmp(ram + off, expected.data(), kPage) != 0) {
      ++wrong;
    }
  }
  ::close(fd);

  (*server)->request_shutdown();
  if (auto stopped = (*server)->wait(); !stopped.is_ok()) return fail("fault server", stopped);
  (void)std::printf("%s\n", pager->stats().to_json().c_str());
  (void)std::fprintf(stderr, "lazy_restore: %llu pages, %llu wrong\n",
                     static_cast<unsigned long long>(ram_size / kPage),
                     static_cast<unsigned long long>(wrong));
  ::munmap(guest_ram_host_addr, ram_size);
  return wrong == 0 ? 0 : 1;
}
