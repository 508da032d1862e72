// Strict numbers for the kernel benchmarks' flags (they sit below experiment/, so they cannot use its
// FlagParser): the whole text is decimal digits and the value lies in [1, max]; anything else ("abc", "",
// "-5", "1e9", "12x", a value past max) is refused with a message naming the flag.
#pragma once
#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace kernels::bench {

inline long parse_positive(const std::string& flag, const char* text, long max) {
  const std::string s = text ? text : "";
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
    throw std::invalid_argument(flag + ": '" + s + "' is not a positive whole number");
  errno = 0;
  const long v = std::strtol(s.c_str(), nullptr, 10);
  if (errno == ERANGE || v < 1 || v > max)
    throw std::invalid_argument(flag + " must be between 1 and " + std::to_string(max) + ", got " + s);
  return v;
}

}  // namespace kernels::bench
