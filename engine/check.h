// Checks that throw engine::Error. Two kinds, chosen by who can cause the failure:
//
//   ENGINE_USER_CHECK(cond) << "--epochs must be at least 1, got " << epochs;
//   ENGINE_USER_FAIL() << "unknown flag " << name << " (see --help)";
//     A condition a user can cause: a flag value, an unknown choice, a missing or corrupt input file, bad data,
//     a path that breaks the path rule, an image over the limits, weights that do not fit a net, a device that
//     is not there. Throws engine::UserError whose what() is only the message (no file, line or expression):
//     the user did nothing wrong in our source, so the message must say what to change and nothing else.
//
//   ENGINE_CHECK(cond) << "context " << value;
//   ENGINE_FAIL() << "...";
//     A broken invariant of our own code (shapes inside ops, kernels, autograd, a caller passing nonsense).
//     Throws engine::Error with "file:line: check failed: cond: context", so the report says where to look.
//
// When in doubt: if a user following --help could trigger it, it is a USER check. Both build the message only
// on failure, and UserError derives from Error, so `catch (const engine::Error&)` catches both kinds.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace engine {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A user's mistake (flags, files, data): what() is a plain message meant to be printed as is.
class UserError : public Error {
 public:
  using Error::Error;
};

// A device allocator ran out of memory for a tensor (what() names the tensor and the allocator's error);
// is_device_out_of_memory (engine/runtime.h) recognises it, so callers can free caches and retry.
class DeviceOutOfMemory : public Error {
 public:
  using Error::Error;
};

namespace detail {
struct UserMistake {};

// Collects the message of a failed check and throws from its destructor's caller (see ENGINE_CHECK).
class CheckFailure {
 public:
  // An internal check: "file:line: what: context".
  CheckFailure(const char* file, int line, const char* what) {
    stream_ << file << ":" << line << ": " << what;
  }
  // A user check: the context alone.
  explicit CheckFailure(UserMistake) : user_(true), has_context_(true) {}

  template <typename T>
  CheckFailure& operator<<(const T& value) {
    if (!has_context_) {
      stream_ << ": ";
      has_context_ = true;
    }
    stream_ << value;
    return *this;
  }
  [[noreturn]] void raise() const {
    if (user_) throw UserError(stream_.str());
    throw Error(stream_.str());
  }

 private:
  std::ostringstream stream_;
  bool user_ = false;
  bool has_context_ = false;
};
// operator& binds looser than <<, so `Raiser() & CheckFailure(...) << a << b` throws after the message is built.
struct Raiser {
  [[noreturn]] void operator&(const CheckFailure& failure) const { failure.raise(); }
};
}  // namespace detail

}  // namespace engine

#define ENGINE_CHECK(condition)                 \
  (condition) ? (void)0                         \
              : ::engine::detail::Raiser() &    \
                    ::engine::detail::CheckFailure(__FILE__, __LINE__, "check failed: " #condition)

// ENGINE_FAIL() << "..." throws unconditionally (the compiler knows it does not return).
#define ENGINE_FAIL() ::engine::detail::Raiser() & ::engine::detail::CheckFailure(__FILE__, __LINE__, "error")

// The user-facing pair: throw engine::UserError with the streamed message only (see the top of this file).
#define ENGINE_USER_CHECK(condition) \
  (condition) ? (void)0              \
              : ::engine::detail::Raiser() & ::engine::detail::CheckFailure(::engine::detail::UserMistake{})

#define ENGINE_USER_FAIL() ::engine::detail::Raiser() & ::engine::detail::CheckFailure(::engine::detail::UserMistake{})
