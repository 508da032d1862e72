// The message of the engine::Error that `f` throws, or "" when it throws none (any other exception
// escapes, so a test sees it fail): for tests that check what an error says.
#pragma once
#include <string>

#include "engine/check.h"

namespace test_support {

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const engine::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace test_support
