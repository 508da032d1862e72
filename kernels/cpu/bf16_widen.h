// The CPU's run_widened (kernels/bf16_emulation.h): f32 scratch copies in host vectors, converted by
// the CPU conversion kernel. This is the bf16 reference every GPU bf16 kernel is checked against.
#pragma once
#include <utility>
#include <vector>

#include "kernels/bf16_emulation.h"
#include "kernels/convert.h"

namespace kernels::cpu {

template <typename R, typename... Params, typename... Args>
R run_widened(R (*kernel)(Params...), Args&&... args) {
  return widened_call<std::vector<float>, &convert>(kernel, std::forward<Args>(args)...);
}

}  // namespace kernels::cpu
