// The GPU's run_widened (kernels/bf16_emulation.h): f32 scratch copies in device memory from the
// context's caching allocator, converted by the CUDA conversion kernel, all on the current stream. It
// makes every CUDA kernel take bf16 views with the CPU reference's arithmetic (widen, f32, one rounding),
// at the cost of the extra conversions; bf16 kernels that load bf16 directly are the faster path.
#pragma once
#include <algorithm>
#include <memory>
#include <utility>

#include "kernels/bf16_emulation.h"
#include "kernels/convert.h"
#include "kernels/cuda/check.h"

namespace kernels::cuda::detail {

// n floats of device memory, released (stream-ordered) with the call's scratch.
class DeviceScratch {
 public:
  explicit DeviceScratch(size_t floats)
      : buffer_(std::make_unique<ScopedBuffer>(std::max<size_t>(floats, 1) * sizeof(float), "bf16 widening")) {}
  float* data() const { return buffer_->as<float>(); }

 private:
  std::unique_ptr<ScopedBuffer> buffer_;
};

template <typename R, typename... Params, typename... Args>
R run_widened(R (*kernel)(Params...), Args&&... args) {
  return widened_call<DeviceScratch, &::kernels::cuda::convert>(kernel, std::forward<Args>(args)...);
}

}  // namespace kernels::cuda::detail
