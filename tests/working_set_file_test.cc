// Working-set files: what is written is read back the same; every kind of
// damage, another image and pages outside the regions are refused with a
// message naming the file and what is wrong.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <filesystem>
#include <fstream>

#include "core/little_endian.h"
#include "core/working_set_format.h"
#include "faultline/working_set.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

namespace format = working_set_format;

// Whether `text` holds `part`, showing both when it does not.
::testing::AssertionResult Holds(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not hold \"" << part << "\"";
}

constexpr ImageIdentity kImage{.size = 64 << 20, .fingerprint = 0x1234'5678'9abc'def0};

WorkingSet ThreeTouches() {
  return WorkingSet(kImage, {{.gpa = 0x5000, .write = true, .since_resume_us = 10},
                             {.gpa = 0x200000, .page_size = 2 << 20, .since_resume_us = 250},
                             {.gpa = 0x1000, .since_resume_us = 3'000'000}});
}

std::vector<std::byte> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), {});
  std::vector<std::byte> bytes(chars.size());
  std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

// A file from raw header fields and touch bytes, with a correct checksum:
// damage the checksum cannot catch, as a buggy writer would make it.
std::vector<std::byte> Signed(uint32_t version, uint32_t recordings, uint64_t count,
                              std::vector<uint8_t> payload, ImageIdentity image = kImage) {
  std::vector<std::byte> out(format::kHeaderSize);
  const char magic[] = "FLWSET\r\n";
  std::memcpy(out.data(), magic, 8);
  le::put_u32(std::span(out).subspan(8), version);
  le::put_u32(std::span(out).subspan(12), recordings);
  le::put_u64(std::span(out).subspan(16), image.size);
  le::put_u64(std::span(out).subspan(24), image.fingerprint);
  le::put_u64(std::span(out).subspan(32), count);
  le::put_u64(std::span(out).subspan(40), payload.size());
  for (uint8_t b : payload) out.push_back(std::byte{b});
  le::append_u64(out, XXH3_64bits(out.data(), out.size()));
  return out;
}

class WorkingSetFileTest : public ::testing::Test {
 protected:
  // Writes `bytes` and loads them; expects a refusal naming the file and `what`.
  void ExpectRefused(const std::vector<std::byte>& bytes, const std::string& what) {
    testing::write_file(path_, bytes);
    auto loaded = WorkingSet::load(path_);
    ASSERT_FALSE(loaded.is_ok()) << "accepted, expected: " << what;
    EXPECT_EQ(loaded.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_TRUE(Holds(loaded.status().message(), path_));
    EXPECT_TRUE(Holds(loaded.status().message(), what));
  }
  std::vector<std::byte> Good() {
    EXPECT_TRUE(ThreeTouches().save(path_).is_ok());
    return ReadBytes(path_);
  }

  testing::TempDir dir_;
  std::string path_ = dir_.file("ws");
};

TEST_F(WorkingSetFileTest, WhatIsSavedLoadsBackTheSame) {
  const WorkingSet saved = ThreeTouches();
  ASSERT_TRUE(saved.save(path_).is_ok());
  auto loaded = WorkingSet::load(path_);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().to_string();
  EXPECT_EQ(loaded->image(), kImage);
  EXPECT_EQ(loaded->recordings(), 1u);
  ASSERT_EQ(loaded->touches().size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const WorkingSetTouch& a = saved.touches()[i];
    const WorkingSetTouch& b = loaded->touches()[i];
    EXPECT_EQ(a.gpa, b.gpa) << i;
    EXPECT_EQ(a.page_size, b.page_size) << i;
    EXPECT_EQ(a.write, b.write) << i;
    EXPECT_EQ(a.since_resume_us, b.since_resume_us) << i;
    EXPECT_EQ(a.recordings_seen, b.recordings_seen) << i;
  }
  EXPECT_EQ(loaded->bytes(), 2 * 4096u + (2u << 20));
}

TEST_F(WorkingSetFileTest, AFileIsSmall) {
  std::vector<WorkingSetTouch> touches;
  for (uint64_t i = 0; i < 10000; ++i) {
    touches.push_back({.gpa = (i * 7919 % 16384) * 4096, .since_resume_us = i * 37});
  }
  ASSERT_TRUE(WorkingSet(kImage, touches).save(path_).is_ok());
  EXPECT_LT(std::filesystem::file_size(path_), 10000u * 6);
  EXPECT_EQ(WorkingSet::load(path_)->touches().size(), 10000u);
}

TEST_F(WorkingSetFileTest, AnEmptySetRoundTrips) {
  ASSERT_TRUE(WorkingSet(kImage, {}).save(path_).is_ok());
  auto loaded = WorkingSet::load(path_);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().to_string();
  EXPECT_TRUE(loaded->touches().empty());
}

TEST_F(WorkingSetFileTest, BadMagicIsRefused) {
  auto bytes = Good();
  bytes[0] = std::byte{'X'};
  ExpectRefused(bytes, "not a working-set file (bad magic)");
  ExpectRefused(std::vector<std::byte>(100, std::byte{7}), "bad magic");
}

TEST_F(WorkingSetFileTest, AnotherVersionIsRefused) {
  auto bytes = Good();
  le::put_u32(std::span(bytes).subspan(8), 2);
  ExpectRefused(bytes, "format version 2; this faultline reads version 1");
}

TEST_F(WorkingSetFileTest, ABadChecksumIsRefused) {
  auto bytes = Good();
  bytes[format::kHeaderSize + 1] ^= std::byte{0x40};
  ExpectRefused(bytes, "checksum mismatch");
  bytes = Good();
  bytes[20] ^= std::byte{1};  // the image size
  ExpectRefused(bytes, "checksum mismatch");
}

TEST_F(WorkingSetFileTest, ATruncatedFileIsRefused) {
  auto bytes = Good();
  ExpectRefused({}, "truncated: 0 bytes");
  ExpectRefused({bytes.begin(), bytes.begin() + 5}, "truncated: 5 bytes");
  ExpectRefused({bytes.begin(), bytes.begin() + 30}, "truncated: 30 bytes");
  ExpectRefused(
      {bytes.begin(), bytes.end() - 1},
      fmt::format("truncated: {} bytes, its header says {}", bytes.size() - 1, bytes.size()));
}

TEST_F(WorkingSetFileTest, TrailingBytesAreRefused) {
  auto bytes = Good();
  bytes.resize(bytes.size() + 3);
  ExpectRefused(bytes, "3 trailing bytes after its checksum");
}

TEST_F(WorkingSetFileTest, AbsurdCountsAreRefusedBeforeAnythingIsAllocated) {
  // Signed: the checksum is right, the counts are not.
  ExpectRefused(Signed(1, 1, uint64_t{1} << 60, {0, 0, 1}), "claims 1152921504606846976 touches");
  ExpectRefused(Signed(1, 0, 1, {0, 0, 1}), "claims 0 recordings");
  ExpectRefused(Signed(1, 1, 2, {0, 0, 1, 0, 0, 1}, {.size = 4096}), "claims 2 touches");
  std::vector<std::byte> huge_payload = Signed(1, 1, 0, {});
  le::put_u64(std::span(huge_payload).subspan(40), uint64_t{1} << 62);
  ExpectRefused(huge_payload, "its header claims 4611686018427387904 bytes of touches");
}

TEST_F(WorkingSetFileTest, TouchesTheirBytesCannotHoldAreRefused) {
  // Two touches claimed, the bytes of one.
  ExpectRefused(Signed(1, 1, 2, {0, 0, 1, 0x80, 0x80, 0x80}), "touch 1 of 2 runs past the end");
  // A varint longer than 64 bits.
  ExpectRefused(Signed(1, 1, 1, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 1}),
                "touch 0 of 1 runs past the end or beyond 64 bits");
  // One touch claimed, bytes left over.
  ExpectRefused(Signed(1, 1, 1, {0, 0, 1, 9, 9, 9}), "3 bytes left over after its 1 touches");
}

TEST_F(WorkingSetFileTest, PagesNamedTwiceOrSeenInMoreRecordingsThanThereAreAreRefused) {
  // Page 5 twice: (zigzag 5 << 6) = 640 = 0x80 0x05, then a delta of 0.
  ExpectRefused(Signed(1, 1, 2, {0x80, 0x05, 0, 1, 0, 0, 1}), "overlap (a page named twice)");
  ExpectRefused(Signed(1, 1, 1, {0, 0, 2}), "seen in 2 of 1 recordings");
  ExpectRefused(Signed(1, 1, 1, {0, 0, 0}), "seen in 0 of 1 recordings");
  // A 2 MiB page (flags 9 << 1) at 4 KiB: not aligned.
  ExpectRefused(Signed(1, 1, 1, {0x92, 0x01, 0, 1}), "is not aligned to its size");
}

TEST_F(WorkingSetFileTest, AMissingFileIsAnIoErrorNamingIt) {
  auto loaded = WorkingSet::load(dir_.file("absent"));
  ASSERT_FALSE(loaded.is_ok());
  EXPECT_EQ(loaded.status().code(), ErrorCode::kIo);
  EXPECT_TRUE(Holds(loaded.status().message(), dir_.file("absent")));
  EXPECT_TRUE(Holds(loaded.status().message(), "No such file"));
}

TEST_F(WorkingSetFileTest, ASetOfAnotherImageIsRefusedSayingWhatDiffers) {
  ASSERT_TRUE(ThreeTouches().save(path_).is_ok());
  const GuestRange all{0, kImage.size};
  ImageIdentity other = kImage;
  other.fingerprint ^= 1;
  auto refused = WorkingSet::load_for(path_, other, {&all, 1});
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(Holds(refused.status().message(), path_ + " was recorded on another image"));
  EXPECT_TRUE(Holds(refused.status().message(), "fingerprint 0x123456789abcdef0 differs"));
  EXPECT_FALSE(Holds(refused.status().message(), "size"));

  other = {.size = 32 << 20, .fingerprint = kImage.fingerprint};
  refused = WorkingSet::load_for(path_, other, {&all, 1});
  ASSERT_FALSE(refused.is_ok());
  EXPECT_TRUE(Holds(refused.status().message(),
                    "its image size 67108864 bytes differs from this image's 33554432 bytes"));

  EXPECT_TRUE(WorkingSet::load_for(path_, kImage, {&all, 1}).is_ok());
}

TEST_F(WorkingSetFileTest, PagesOutsideTheRegionsAreRefusedNamingTheFirst) {
  ASSERT_TRUE(ThreeTouches().save(path_).is_ok());
  // The 2 MiB page at 2 MiB sticks out of [0, 3 MiB).
  const GuestRange regions[] = {{0, 3 << 20}, {16 << 20, 1 << 20}};
  auto refused = WorkingSet::load_for(path_, kImage, regions);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(Holds(refused.status().message(),
                    path_ + ": touch 1 (page [0x200000, +0x200000)) lies outside"));
  const GuestRange fits[] = {{0, 4 << 20}};
  EXPECT_TRUE(WorkingSet::load_for(path_, kImage, fits).is_ok());
}

TEST_F(WorkingSetFileTest, SavingIntoAMissingDirectoryNamesIt) {
  const std::string path = dir_.file("no/such/dir/ws");
  Status s = ThreeTouches().save(path);
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), ErrorCode::kIo);
  EXPECT_TRUE(Holds(s.message(), "writing working set " + path));
  EXPECT_TRUE(Holds(s.message(), "No such file or directory"));
}

TEST_F(WorkingSetFileTest, SavingReplacesTheFileWholeAndLeavesNoTemporaryFile) {
  ASSERT_TRUE(ThreeTouches().save(path_).is_ok());
  ASSERT_TRUE(WorkingSet(kImage, {{.gpa = 0}}).save(path_).is_ok());
  EXPECT_EQ(WorkingSet::load(path_)->touches().size(), 1u);
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_.path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1u);
}

TEST_F(WorkingSetFileTest, ASetThatCannotBeWrittenIsRefusedNamingTheTouch) {
  Status s = WorkingSet(kImage, {{.gpa = 0x1000}, {.gpa = 0x1000}}).save(path_);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(Holds(s.message(), "overlap"));
  s = WorkingSet(kImage, {{.gpa = 0x1000, .page_size = 12288}}).save(path_);
  EXPECT_TRUE(Holds(s.message(), "touch 0: page size 0x3000 is not a power of two"));
  EXPECT_FALSE(std::filesystem::exists(path_));
}

}  // namespace
}  // namespace faultline
