// with_flag(flag, body): runs body(std::true_type{}) or body(std::false_type{}), so that a per-call switch
// (accumulate, a fused ReLU) becomes a compile-time constant, decltype(tag)::value, in the body: one loop or
// kernel instantiation for each value instead of a select inside a vectorised loop (GCC does not vectorise
// some of those) or a branch per element. Host code; usable from .cpp and .cu files.
#pragma once
#include <type_traits>

namespace kernels {

template <typename Body>
void with_flag(bool flag, Body&& body) {
  if (flag)
    body(std::true_type{});
  else
    body(std::false_type{});
}

}  // namespace kernels
