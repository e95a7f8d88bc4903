// status.h: the error values of xent's public API.
//
// Every public function that a caller can misuse returns a [[nodiscard]] Status (or a Result<T>).
// A non-ok Status carries a code and one human sentence that says what was expected and what was
// found ("target 7 at position 3 is outside [0, 5)"). No exception crosses the library boundary.
// This is not a logging facility and carries no stack traces.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace xent {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,    // bad shape, dtype, option or value in caller-supplied data
  kOutOfRange,         // an index (target, dim) outside its valid range
  kIoError,            // a file could not be opened, read or written
  kDataLoss,           // a file's bytes are malformed, truncated or lie about their size
  kResourceExhausted,  // a declared size exceeds a configured limit or available memory
  kUnimplemented,      // valid request that this build does not support
  kInternal,           // a bug in xent
};

// Short lower-case name of a code, e.g. "invalid argument".
const char* status_code_name(StatusCode code) noexcept;

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  // Old spelling of ok_status(), kept so that code written against it still builds; one style
  // (snake_case) is ok_status().
  [[deprecated("use xent::ok_status()")]] static Status Ok() { return Status(); }

  bool ok() const noexcept { return code_ == StatusCode::kOk; }
  StatusCode code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

  // "invalid argument: <message>"; "ok" for an ok status.
  std::string to_string() const;

  // Marks a status as deliberately unused (e.g. best-effort cleanup).
  void ignore_error() const noexcept {}

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// The ok Status (the same as Status()), and the helpers that build non-ok ones.
inline Status ok_status() { return Status(); }
inline Status invalid_argument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status out_of_range(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
inline Status io_error(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status data_loss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status resource_exhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
inline Status unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
inline Status internal_error(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// A value or the Status that explains why there is none.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {}   // NOLINT(google-explicit-constructor)

  bool ok() const noexcept { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace xent

// Returns early from the enclosing function if `expr` yields a non-ok Status.
#define XENT_RETURN_IF_ERROR(expr)            \
  do {                                        \
    ::xent::Status xent_status_ = (expr);     \
    if (!xent_status_.ok()) return xent_status_; \
  } while (0)
