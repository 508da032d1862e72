// Checks that throw engine::Error with file:line and the failing expression, so a failure says where and
// what: ENGINE_CHECK(cond) << "context " << value; builds the message only on failure, and the
// context says what to do about it.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace engine {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
// Collects the message of a failed check and throws from its destructor's caller (see ENGINE_CHECK).
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* what) {
    stream_ << file << ":" << line << ": " << what;
  }
  template <typename T>
  CheckFailure& operator<<(const T& value) {
    if (!has_context_) {
      stream_ << ": ";
      has_context_ = true;
    }
    stream_ << value;
    return *this;
  }
  [[noreturn]] void raise() const { throw Error(stream_.str()); }

 private:
  std::ostringstream stream_;
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
