// Errors are values: a code and a sentence that names what failed.
// Nothing on the fault path throws; an OK Status carries no allocation.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace faultline {

enum class ErrorCode {
  kOk = 0,
  kInvalidArgument,  // the caller passed something malformed (bad size, overlap, ...)
  kOutOfRegion,      // a guest-physical address outside every registered region
  kOutOfRange,       // an address the page source does not hold (permanent)
  kSource,           // the page source failed after every retry
  kUnavailable,      // a transient failure (dead peer, refused connection); worth retrying
  kTimeout,          // a peer did not answer in time; worth retrying
  kProtocol,         // a peer sent bytes that break the wire protocol
  kIo,               // a local system call failed
  kUnsupported,      // the kernel or platform lacks a needed feature
  kShutdown,         // the operation was abandoned because shutdown was requested
};

std::string_view error_code_name(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return {}; }

  bool is_ok() const { return code_ == ErrorCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // Transient failures a caller may retry: the same request can succeed later.
  bool is_retryable() const;
  // "<code name>: <message>", or "ok".
  std::string to_string() const;

  // Prefixes the message with where it happened: "file page source: " + message.
  Status with_context(std::string_view context) const;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

Status invalid_argument(std::string message);
Status io_error(std::string_view what, int errno_value);

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}          // NOLINT(google-explicit-constructor)
  Result(Status status) : status_(std::move(status)) {}  // NOLINT(google-explicit-constructor)

  bool is_ok() const { return value_.has_value(); }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const { return status_; }

  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace faultline
