#include "server/frame_reader.h"

#include <fmt/format.h>

#include <algorithm>

namespace faultline {
namespace {

// A frame that began and stopped: the stream cannot be read on from there.
Status incomplete(const Status& why, std::chrono::milliseconds rest_within) {
  if (why.code() != ErrorCode::kTimeout) return why;
  return {ErrorCode::kProtocol, fmt::format("a frame began but did not arrive in full within {} ms",
                                            rest_within.count())};
}

}  // namespace

Result<FrameReader::Frame> FrameReader::read(std::initializer_list<v2::FrameType> expected,
                                             net::Deadline start_by,
                                             std::chrono::milliseconds rest_within) {
  v2::FrameHeaderBytes header_bytes;
  // One byte first: a timeout then leaves the stream where it was.
  if (Status s = stream_.read_full(std::span(header_bytes).first(1), start_by); !s) return s;
  const net::Deadline rest_by = net::deadline_after(rest_within);
  if (Status s = stream_.read_full(std::span(header_bytes).subspan(1), rest_by); !s) {
    return incomplete(s, rest_within);
  }
  auto header = v2::decode_frame_header(header_bytes);
  if (!header) return header.status();
  if (std::find(expected.begin(), expected.end(), header->type) == expected.end()) {
    return Status(ErrorCode::kProtocol,
                  fmt::format("unexpected frame type {} ({} body bytes announced)",
                              static_cast<int>(header->type), header->body_length));
  }
  if (body_.size() < header->body_length) body_.resize(header->body_length);
  auto body = std::span(body_).first(header->body_length);
  if (Status s = stream_.read_full(body, rest_by); !s) return incomplete(s, rest_within);
  return Frame{header->type, body};
}

}  // namespace faultline
