// Internal to kernels/cuda/: device kernels templated on the storage type T of their matrices (float, or
// BFloat16: bf16 storage, f32 arithmetic). load widens exactly, put rounds once to nearest even
// (kernels/bf16.h), so a bf16 kernel written with them computes what the CPU's emulation computes
// (kernels/bf16_emulation.h: widen, the f32 kernel, one rounding per stored value).
#pragma once
#include <cstdint>

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

// 16 bytes of storage as floats: a pack of 4 f32 (float4) or 8 bf16 (uint4). load_pack widens, store_pack
// rounds each value once (as put). p must be 16-byte aligned.
template <typename T>
constexpr int kPack = int(16 / sizeof(T));

__device__ inline void load_pack(const float* p, float (&v)[4]) {
  const float4 q = *reinterpret_cast<const float4*>(p);
  v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
}
__device__ inline void store_pack(float* p, const float (&v)[4]) {
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ inline void load_pack(const BFloat16* p, float (&v)[8]) {
  const uint4 q = *reinterpret_cast<const uint4*>(p);
  const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[2 * i] = f32_from_bits(words[i] << 16);  // the lower address holds the lower half
    v[2 * i + 1] = f32_from_bits(words[i] & 0xFFFF0000u);
  }
}
__device__ inline void store_pack(BFloat16* p, const float (&v)[8]) {
  uint32_t words[4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
    words[i] = uint32_t(bf16_bits_from_f32(v[2 * i])) | (uint32_t(bf16_bits_from_f32(v[2 * i + 1])) << 16);
  *reinterpret_cast<uint4*>(p) = make_uint4(words[0], words[1], words[2], words[3]);
}

// True when p is 16-byte aligned (a pack may be loaded from it).
inline bool pack_aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Every view with data is bf16 and at least one has data (an optional output left null, a missing
// weight, is no operand): the native bf16 kernels run.
template <typename... Views>
bool bf16_or_absent(const Views&... views) {
  return ((views.data == nullptr || views.dtype == DType::bf16) && ...) && ((views.data != nullptr) || ...);
}

// Every view bf16 with data: the native bf16 kernels run; a call mixing f32 and bf16 goes through the
// emulation (kernels/cuda/bf16_widen.h).
template <typename... Views>
bool all_bf16(const Views&... views) {
  return ((views.dtype == DType::bf16 && views.data != nullptr) && ...);
}

}  // namespace kernels::cuda::detail
