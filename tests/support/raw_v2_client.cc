#include "support/raw_v2_client.h"

#include <gtest/gtest.h>

#include "net/socket_address.h"
#include "net/socket_io.h"

namespace faultline::testing {

RawV2Client::RawV2Client(const std::string& address, bool handshake) {
  auto parsed = net::parse_socket_address(address);
  if (!parsed) {
    ADD_FAILURE() << parsed.status().to_string();
    return;
  }
  auto fd = net::connect_socket(*parsed, std::chrono::seconds(5));
  if (!fd) {
    ADD_FAILURE() << "connect " << address << ": " << fd.status().to_string();
    return;
  }
  fd_ = std::move(*fd);
  if (!handshake) return;
  Status s = send_bytes(v2::kMagic);
  if (s) s = send_bytes(v2::encode(v2::Hello{}));
  auto frame = s ? read_frame() : Result<Frame>(s);
  if (!frame || frame->type != v2::FrameType::kWelcome) {
    ADD_FAILURE() << "no WELCOME from " << address
                  << (frame ? std::string() : ": " + frame.status().to_string());
    fd_.reset();
    return;
  }
  auto welcome = v2::decode_welcome(frame->body);
  if (!welcome) {
    ADD_FAILURE() << welcome.status().to_string();
    fd_.reset();
    return;
  }
  welcome_ = std::move(*welcome);
}

Status RawV2Client::send_bytes(std::span<const std::byte> bytes) {
  return net::write_full(fd_.get(), bytes, net::deadline_after(std::chrono::seconds(20)));
}

Status RawV2Client::send_request(uint64_t id, Gpa gpa, uint32_t length) {
  return send_bytes(v2::encode(v2::Request{id, gpa, length}));
}

Result<RawV2Client::Frame> RawV2Client::read_frame(std::chrono::milliseconds patience) {
  const auto deadline = net::deadline_after(patience);
  v2::FrameHeaderBytes header_bytes;
  if (Status s = net::read_full(fd_.get(), header_bytes, deadline); !s) return s;
  auto header = v2::decode_frame_header(header_bytes);
  if (!header) return header.status();
  Frame frame{header->type, std::vector<std::byte>(header->body_length)};
  if (Status s = net::read_full(fd_.get(), frame.body, deadline); !s) return s;
  return frame;
}

bool RawV2Client::sees_hang_up(std::chrono::milliseconds patience) {
  std::byte byte[1];
  Status s = net::read_full(fd_.get(), byte, net::deadline_after(patience));
  return !s && s.code() != ErrorCode::kTimeout;
}

}  // namespace faultline::testing
