// The KVM VMM end to end: a real guest under real KVM, snapshotted mid-way and
// resumed in a fresh `faultline vm restore` process whose guest memory arrives
// through real userfaultfd faults. Every restored run must finish with exactly
// the result of an uninterrupted one, and that result must be what a model of
// the guest program computes. Skips where /dev/kvm cannot run our guest.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bit>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "faultline/page_server.h"
#include "support/temp_dir.h"
#include "support/vm_cli.h"
#include "vm/crc32.h"
#include "vm/probe.h"
#include "vm/snapshot.h"
#include "vm/state_file.h"
#include "vm/workload.h"

extern char** environ;

namespace faultline::vm {
namespace {

using testing::TempDir;

// Runs the workload to report kMidWay and snapshots it into DIR/vm.state, DIR/vm.mem.
// Fails fatally: call it in ASSERT_NO_FATAL_FAILURE, so a test stops without a snapshot.
void snapshot_mid_way(const TempDir& dir) {
  Cli run = faultline(
      dir, with({"vm", "run", "--json", "--snapshot-after-progress", std::to_string(kMidWay),
                 "--state", dir.file("vm.state"), "--mem", dir.file("vm.mem")},
                kWorkload));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto j = run.json();
  ASSERT_FALSE(j.is_discarded()) << run.out;
  ASSERT_EQ(j["finished"], false);
  ASSERT_EQ(j["snapshot"]["after_progress"], kMidWay);
}

TEST(VmRun, UninterruptedRunComputesWhatTheModelComputes) {
  SKIP_WITHOUT_KVM();
  TempDir dir;
  Cli run = faultline(dir, with({"vm", "run", "--json"}, kWorkload));
  ASSERT_NO_FATAL_FAILURE(expect_uninterrupted_result(run));
  EXPECT_EQ(run.json()["progress"], 21);
}

TEST(VmRun, SnapshotMemoryFileHoldsEveryPageAndHolesForZeroPages) {
  SKIP_WITHOUT_KVM();
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(snapshot_mid_way(dir));
  struct stat st {};
  ASSERT_EQ(::stat(dir.file("vm.mem").c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kRam);
  // The first MiB is mostly zero: tables, program and parameters use a few pages.
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, kRam);
  auto state = read_vm_state(dir.file("vm.state"));
  ASSERT_TRUE(state.is_ok()) << state.status().to_string();
  EXPECT_EQ(state->ram_size, kRam);
  ASSERT_EQ(state->vcpus.size(), 1u);
  EXPECT_FALSE(state->prewarm.empty());
  // The page at RIP is among the pages prewarmed.
  const uint64_t rip_page = state->vcpus[0].regs.rip & ~uint64_t{4095};
  bool found = false;
  for (const auto& r : state->prewarm) found = found || r.base == rip_page;
  EXPECT_TRUE(found);
}

TEST(VmRestore, LazyFromTheFileFinishesWithTheUninterruptedResult) {
  SKIP_WITHOUT_KVM();
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(snapshot_mid_way(dir));
  Cli restored = faultline(dir, {"vm", "restore", "--lazy", "--json", "--state",
                                 dir.file("vm.state"), "--mem", dir.file("vm.mem")});
  ASSERT_NO_FATAL_FAILURE(expect_uninterrupted_result(restored));
  const auto j = restored.json();
  EXPECT_EQ(j["mode"], "lazy");
  // Pass 2's second half and pass 3 touch every workload page: each arrives by a
  // fault, around one, from the background fill, or was prewarmed (the fill
  // skips those, so when it wins most races they are the difference).
  EXPECT_GT(j["faults"].get<uint64_t>(), 0u);
  EXPECT_GE(j["faults"].get<uint64_t>() + j["fault_around_pages"].get<uint64_t>() +
                j["background_pages"].get<uint64_t>() + j["prewarmed"].get<uint64_t>(),
            kPages);
  EXPECT_GT(j["prewarmed"].get<uint64_t>(), 0u);
}

TEST(VmRestore, LazyFromThePageServerFinishesWithTheUninterruptedResult) {
  SKIP_WITHOUT_KVM();
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(snapshot_mid_way(dir));
  auto server = PageServer::start({"unix:" + dir.file("pages.sock"), dir.file("vm.mem"), 0});
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  Cli restored = faultline(dir, {"vm", "restore", "--lazy", "--json", "--state",
                                 dir.file("vm.state"), "--page-server", (*server)->address()});
  ASSERT_NO_FATAL_FAILURE(expect_uninterrupted_result(restored));
  // Every workload page came across the socket, over protocol v2: asked for
  // (requests carry up to 2 MiB) or pushed (the background fill).
  const PageServerStats stats = (*server)->stats();
  EXPECT_EQ(stats.v2_sessions, 1u);
  EXPECT_GE(stats.demand_bytes + stats.pushed_bytes, kPages * 4096);
  EXPECT_GT(stats.pushed_bytes, 0u);
}

TEST(VmRestore, EagerFinishesWithTheUninterruptedResult) {
  SKIP_WITHOUT_KVM();
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(snapshot_mid_way(dir));
  Cli restored = faultline(dir, {"vm", "restore", "--eager", "--json", "--state",
                                 dir.file("vm.state"), "--mem", dir.file("vm.mem")});
  ASSERT_NO_FATAL_FAILURE(expect_uninterrupted_result(restored));
  EXPECT_EQ(restored.json()["mode"], "eager");
  EXPECT_EQ(restored.json()["faults"], 0);
}

TEST(VmSnapshot, SignalledRunSnapshotsAndItsRestoreFinishesWithTheUninterruptedResult) {
  SKIP_WITHOUT_KVM();
  TempDir dir;
  // Reports every 64 KiB: the run is under way once the first appears.
  CliProcess run(
      dir, {"vm", "run", "--ram", "32M", "--seed", "7", "--words-per-page", "2", "--progress-every",
            "64K", "--state", dir.file("vm.state"), "--mem", dir.file("vm.mem")});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (run.out_so_far().find("progress 1/") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  Cli snap = faultline(dir, {"vm", "snapshot", "--pid", std::to_string(run.pid())});
  EXPECT_EQ(snap.exit_code, 0) << snap.err;
  Cli ran = run.wait();
  ASSERT_EQ(ran.exit_code, 0) << ran.err;
  ASSERT_NE(ran.out.find("snapshot after progress"), std::string::npos) << ran.out;
  ASSERT_EQ(ran.out.find("result:"), std::string::npos) << "the run finished before the signal";

  Cli restored = faultline(dir, {"vm", "restore", "--json", "--state", dir.file("vm.state"),
                                 "--mem", dir.file("vm.mem")});
  ASSERT_NO_FATAL_FAILURE(expect_uninterrupted_result(restored));
}

class CorruptStateFile : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_KVM();
    ASSERT_NO_FATAL_FAILURE(snapshot_mid_way(dir_));
  }
  Cli restore() {
    return faultline(
        dir_, {"vm", "restore", "--state", dir_.file("vm.state"), "--mem", dir_.file("vm.mem")});
  }
  TempDir dir_;
};

TEST_F(CorruptStateFile, AFlippedByteIsRefusedAsAChecksumMismatch) {
  auto bytes = read_bytes(dir_.file("vm.state"));
  bytes[bytes.size() / 2] ^= std::byte{0x01};
  testing::write_file(dir_.file("vm.state"), bytes);
  Cli restored = restore();
  EXPECT_EQ(restored.exit_code, 1);
  EXPECT_NE(restored.err.find("checksum mismatch"), std::string::npos) << restored.err;
  EXPECT_NE(restored.err.find("vm.state"), std::string::npos) << restored.err;
}

TEST_F(CorruptStateFile, ATruncatedFileIsRefusedAsTruncated) {
  ASSERT_EQ(::truncate(dir_.file("vm.state").c_str(), 1000), 0);
  Cli restored = restore();
  EXPECT_EQ(restored.exit_code, 1);
  EXPECT_NE(restored.err.find("truncated"), std::string::npos) << restored.err;
}

// The state file format without KVM: a synthetic state.
VmState synthetic_state() {
  VmState s;
  s.ram_size = 8 << 20;
  s.prewarm = {{0x10000, 4096}, {0x7f000, 4096}};
  VcpuState v;
  v.regs.rip = 0x10042;
  v.regs.rsp = 0x7fff8;
  v.sregs.cr3 = 0x2000;
  v.msrs.push_back({0x10, 0, 123456});
  v.fpu.emplace();
  v.events.emplace();
  s.vcpus.push_back(v);
  return s;
}

TEST(StateFile, RoundTripsEverySection) {
  const VmState in = synthetic_state();
  auto out = decode_vm_state(encode_vm_state(in), "synthetic");
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->ram_size, in.ram_size);
  ASSERT_EQ(out->prewarm.size(), 2u);
  EXPECT_EQ(out->prewarm[1].base, 0x7f000u);
  ASSERT_EQ(out->vcpus.size(), 1u);
  EXPECT_EQ(out->vcpus[0].regs.rip, 0x10042u);
  EXPECT_EQ(out->vcpus[0].sregs.cr3, 0x2000u);
  ASSERT_EQ(out->vcpus[0].msrs.size(), 1u);
  EXPECT_EQ(out->vcpus[0].msrs[0].data, 123456u);
  EXPECT_TRUE(out->vcpus[0].fpu.has_value());
  EXPECT_TRUE(out->vcpus[0].events.has_value());
  EXPECT_FALSE(out->vcpus[0].xcrs.has_value());
}

TEST(StateFile, EveryFlippedBitAnywhereIsRefused) {
  const std::vector<std::byte> good = encode_vm_state(synthetic_state());
  for (size_t i = 0; i < good.size(); ++i) {
    std::vector<std::byte> bad = good;
    bad[i] ^= std::byte{0x10};
    EXPECT_FALSE(decode_vm_state(bad, "x").is_ok()) << "byte " << i;
  }
}

TEST(StateFile, EveryTruncationIsRefused) {
  const std::vector<std::byte> good = encode_vm_state(synthetic_state());
  for (size_t len = 0; len < good.size(); ++len) {
    auto r = decode_vm_state(std::span(good).first(len), "x");
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument) << len;
    if (len >= kStateHeaderSize) {
      EXPECT_NE(r.status().message().find("truncated"), std::string::npos);
    }
  }
}

TEST(StateFile, OtherFilesAndVersionsAreRefusedByName) {
  std::vector<std::byte> bytes = encode_vm_state(synthetic_state());
  std::vector<std::byte> other = bytes;
  other[0] = std::byte{'X'};
  EXPECT_EQ(decode_vm_state(other, "x").status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(decode_vm_state(other, "x").status().message().find("not a faultline VM state file"),
            std::string::npos);
  std::vector<std::byte> newer = bytes;
  newer[8] = std::byte{2};
  EXPECT_EQ(decode_vm_state(newer, "x").status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(decode_vm_state(newer, "x").status().message().find("version 2"), std::string::npos);
}

// A section this reader does not know, in a file whose checksum is right.
TEST(StateFile, AnUnknownSectionIsRefusedEvenWithAGoodChecksum) {
  std::vector<std::byte> bytes = encode_vm_state(synthetic_state());
  const uint32_t tag = 99, vcpu = 0;
  const uint64_t len = 8, body = 0;
  auto append = [&](const void* p, size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    bytes.insert(bytes.end(), b, b + n);
  };
  append(&tag, 4);
  append(&vcpu, 4);
  append(&len, 8);
  append(&body, 8);
  const uint64_t length = bytes.size() - kStateHeaderSize;
  std::memcpy(&bytes[16], &length, 8);
  std::memset(&bytes[24], 0, 4);
  const uint32_t crc = crc32(bytes);
  std::memcpy(&bytes[24], &crc, 4);
  auto r = decode_vm_state(bytes, "x");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("unknown (99)"), std::string::npos) << r.status().message();
}

TEST(MemoryFile, ZeroPagesAreHolesAndDataPagesAreWhereTheyLie) {
  TempDir dir;
  std::vector<std::byte> ram(64 * 4096);
  for (size_t page : {1, 2, 40}) std::memset(ram.data() + page * 4096, 0xA5, 4096);
  ram[63 * 4096 + 7] = std::byte{1};
  uint64_t data = 0;
  ASSERT_TRUE(write_memory_file(dir.file("mem"), ram, &data).is_ok());
  EXPECT_EQ(data, 4u * 4096);
  EXPECT_EQ(read_bytes(dir.file("mem")), ram);
  const int fd = ::open(dir.file("mem").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::lseek(fd, 0, SEEK_DATA), 4096);
  EXPECT_EQ(::lseek(fd, 4096, SEEK_HOLE), 3 * 4096);
  ::close(fd);
}

}  // namespace
}  // namespace faultline::vm
