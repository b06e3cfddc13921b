// A v2 page-protocol client written by hand over a raw socket, for tests that
// misbehave on purpose: requests sent without reading replies, requests
// outside the image, silence after the handshake.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "faultline/status.h"
#include "faultline/unique_fd.h"
#include "protocol/frames.h"

namespace faultline::testing {

class RawV2Client {
 public:
  // Connects; with `handshake`, sends the magic and a HELLO (raw encoding,
  // no push) and reads the WELCOME.
  explicit RawV2Client(const std::string& address, bool handshake = true);

  bool connected() const { return static_cast<bool>(fd_); }
  int fd() const { return fd_.get(); }
  const v2::Welcome& welcome() const { return welcome_; }

  Status send_request(uint64_t id, Gpa gpa, uint32_t length);
  Status send_bytes(std::span<const std::byte> bytes);

  struct Frame {
    v2::FrameType type = v2::FrameType::kHello;
    std::vector<std::byte> body;
  };
  // The next frame from the server (kUnavailable once it has closed).
  Result<Frame> read_frame(std::chrono::milliseconds patience = std::chrono::seconds(20));
  // True once the server has closed the connection (a reset counts too).
  bool sees_hang_up(std::chrono::milliseconds patience = std::chrono::seconds(20));

 private:
  UniqueFd fd_;
  v2::Welcome welcome_;
};

}  // namespace faultline::testing
