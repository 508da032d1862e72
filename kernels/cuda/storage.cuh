// Internal to kernels/cuda/: device kernels templated on the storage type T of their matrices (float, or
// BFloat16: bf16 storage, f32 arithmetic). load widens exactly, put rounds once to nearest even
// (kernels/bf16.h), so a bf16 kernel written with them computes what the CPU's emulation computes
// (kernels/bf16_emulation.h: widen, the f32 kernel, one rounding per stored value).
#pragma once
#include "kernels/bf16.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/layout.h"

namespace kernels::cuda::detail {

__device__ inline float load(const float* p) { return *p; }
__device__ inline float load(const BFloat16* p) { return f32_from_bf16_bits(p->bits); }
// *p = value, or *p + value (read widened) when accumulating; rounded once for bf16.
__device__ inline void put(float* p, float value, bool accumulate) { store(p, value, accumulate); }
__device__ inline void put(BFloat16* p, float value, bool accumulate) {
  *p = BFloat16(accumulate ? load(p) + value : value);
}

// Every view bf16 with data: the native bf16 kernels run; a call mixing f32 and bf16 goes through the
// emulation (kernels/cuda/bf16_widen.h).
template <typename... Views>
bool all_bf16(const Views&... views) {
  return ((views.dtype == DType::bf16 && views.data != nullptr) && ...);
}

}  // namespace kernels::cuda::detail
