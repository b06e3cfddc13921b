#include "faultline/status.h"

#include <cstring>

namespace faultline {

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return "ok";
    case ErrorCode::kInvalidArgument:
      return "invalid argument";
    case ErrorCode::kOutOfRegion:
      return "out of region";
    case ErrorCode::kOutOfRange:
      return "out of range";
    case ErrorCode::kSource:
      return "page source error";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kTimeout:
      return "timeout";
    case ErrorCode::kProtocol:
      return "protocol error";
    case ErrorCode::kIo:
      return "I/O error";
    case ErrorCode::kUnsupported:
      return "unsupported";
    case ErrorCode::kShutdown:
      return "shut down";
  }
  return "unknown error";
}

bool Status::is_retryable() const {
  switch (code_) {
    case ErrorCode::kUnavailable:
    case ErrorCode::kTimeout:
    case ErrorCode::kProtocol:
    case ErrorCode::kIo:
      return true;
    default:
      return false;
  }
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  std::string out(error_code_name(code_));
  out += ": ";
  out += message_;
  return out;
}

Status Status::with_context(std::string_view context) const {
  if (is_ok()) return *this;
  std::string message(context);
  message += ": ";
  message += message_;
  return {code_, std::move(message)};
}

Status invalid_argument(std::string message) {
  return {ErrorCode::kInvalidArgument, std::move(message)};
}

Status io_error(std::string_view what, int errno_value) {
  std::string message(what);
  message += ": ";
  message += std::strerror(errno_value);
  return {ErrorCode::kIo, std::move(message)};
}

}  // namespace faultline
