// Which image a working set belongs to: its size and a hash of pages sampled
// across it. Cheap (16 fetches), so it can run at every session start.
#include <fmt/format.h>
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <memory>

#include "core/little_endian.h"
#include "faultline/working_set.h"

namespace faultline {
namespace {

constexpr uint64_t kSamples = 16;

struct HashState {
  void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
};

}  // namespace

Result<ImageIdentity> identify_image(PageSource& source, Gpa start, uint64_t size) {
  if (size < kMinPageSize || size % kMinPageSize != 0) {
    return invalid_argument(fmt::format(
        "cannot identify an image of {} bytes: not a whole number of 4 KiB pages", size));
  }
  std::unique_ptr<XXH3_state_t, HashState> state(XXH3_createState());
  if (!state || XXH3_64bits_reset(state.get()) != XXH_OK) {
    return Status(ErrorCode::kIo, "cannot allocate a hash state");
  }
  std::array<std::byte, 8> word{};
  le::put_u64(word, size);
  XXH3_64bits_update(state.get(), word.data(), word.size());
  const uint64_t pages = size / kMinPageSize;
  const uint64_t samples = std::min(kSamples, pages);
  std::array<std::byte, kMinPageSize> page{};
  for (uint64_t i = 0; i < samples; ++i) {
    // Spread evenly, the first and the last page included.
    const uint64_t index = samples == 1 ? 0 : i * (pages - 1) / (samples - 1);
    const Gpa gpa = start + index * kMinPageSize;
    Result<PageKind> kind = source.fetch(gpa, page);
    if (!kind.is_ok()) {
      return kind.status().with_context(
          fmt::format("identifying the image of {}: page {:#x}", source.describe(), gpa));
    }
    if (*kind == PageKind::kZero) page.fill(std::byte{0});
    le::put_u64(word, index);
    XXH3_64bits_update(state.get(), word.data(), word.size());
    XXH3_64bits_update(state.get(), page.data(), page.size());
  }
  return ImageIdentity{.size = size, .fingerprint = XXH3_64bits_digest(state.get())};
}

}  // namespace faultline
