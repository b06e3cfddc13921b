// Reads the v2 frames a client sends, checking each header (type, length)
// before a byte of its body is allocated or read: a client cannot make the
// server hold more than the largest body of a type it may send.
#pragma once

#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <span>
#include <vector>

#include "faultline/status.h"
#include "net/stream.h"
#include "protocol/frames.h"

namespace faultline {

class FrameReader {
 public:
  explicit FrameReader(net::Stream& stream) : stream_(stream) {}

  struct Frame {
    v2::FrameType type = v2::FrameType::kHello;
    std::span<const std::byte> body;  // valid until the next read
  };

  // Waits until `start_by` for a frame to begin: kTimeout, with nothing
  // consumed, if none has. The rest must follow within `rest_within`. A frame
  // of a type not in `expected` is kProtocol before its body is read.
  Result<Frame> read(std::initializer_list<v2::FrameType> expected, net::Deadline start_by,
                     std::chrono::milliseconds rest_within);

 private:
  net::Stream& stream_;
  std::vector<std::byte> body_;  // as large as the largest body read so far
};

}  // namespace faultline
