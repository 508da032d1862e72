// bfloat16: the storage type of the GPU's mixed-precision path, for CPU and CUDA code alike.
//
// A bf16 is the upper 16 bits of an IEEE f32: 1 sign bit, the same 8 exponent bits, 7 mantissa bits.
// Its range is f32's (largest finite 0x7F7F = 3.3895314e38), its precision 8 significant bits.
//   bf16 -> f32: exact (the 16 bits become the upper half, the lower half is zero).
//   f32 -> bf16: round to nearest, ties to even, on the bit pattern, which is IEEE rounding because
//     bf16 shares f32's exponent field:
//       bits + 0x7FFF + (bit 16 of bits), then the upper half.
//     A carry out of the mantissa moves to the next binade, which is the correctly rounded result
//     (the largest subnormal rounds up to the smallest normal, 0x7F7FFFFF up to +Inf: every f32
//     at or above 0x7F7F8000, the midpoint between the largest finite bf16 and 2^128, is Inf by RNE;
//     0x7F7F7FFF and below stay finite). Subnormals round as any other value; zeros keep their sign;
//     +-Inf stay +-Inf.
//     NaN: stays a NaN of the same sign, never Inf. Rounding could carry a NaN's low payload bits into
//     the exponent (0x7F800001 would become Inf), so a NaN is truncated instead and its quiet bit
//     (bit 6 of the bf16) is set: the sign and the upper 6 payload bits survive. (The GPU's
//     __float2bfloat16_rn returns a canonical NaN instead; our conversion kernels use this function on
//     both backends, so they agree bit for bit.)
//
// In CUDA code (__CUDACC__) the functions are __host__ __device__ and BFloat16 converts to and from
// __nv_bfloat16 by its bits; plain .cpp files see no CUDA header.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#define KERNELS_HOST_DEVICE __host__ __device__
#else
#define KERNELS_HOST_DEVICE
#endif

namespace kernels {

// The bits of an f32 and back.
KERNELS_HOST_DEVICE inline uint32_t f32_bits(float value) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(value);
#else
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
#endif
}

KERNELS_HOST_DEVICE inline float f32_from_bits(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
#endif
}

// f32 -> the bits of the nearest bf16, ties to even (see the file comment for NaN).
KERNELS_HOST_DEVICE inline uint16_t bf16_bits_from_f32(float value) {
  const uint32_t bits = f32_bits(value);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u)  // NaN: truncate, keep the sign, force the quiet bit
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  const uint32_t lowest_kept_bit = (bits >> 16) & 1u;
  return static_cast<uint16_t>((bits + 0x7FFFu + lowest_kept_bit) >> 16);
}

// bf16 bits -> f32, exact.
KERNELS_HOST_DEVICE inline float f32_from_bf16_bits(uint16_t bits) {
  return f32_from_bits(static_cast<uint32_t>(bits) << 16);
}

// One bf16 value: 2 bytes, trivially copyable, so that a buffer of bf16 elements is an array of it.
// Conversions are explicit: every f32 -> bf16 rounding is visible in the code.
struct BFloat16 {
  uint16_t bits;

  BFloat16() = default;
  KERNELS_HOST_DEVICE explicit BFloat16(float value) : bits(bf16_bits_from_f32(value)) {}
  KERNELS_HOST_DEVICE static BFloat16 from_bits(uint16_t bits) {
    BFloat16 b;
    b.bits = bits;
    return b;
  }
  KERNELS_HOST_DEVICE explicit operator float() const { return f32_from_bf16_bits(bits); }

#if defined(__CUDACC__)
  // The CUDA type, bit for bit (no rounding either way).
  KERNELS_HOST_DEVICE explicit BFloat16(__nv_bfloat16 value)
      : bits(static_cast<__nv_bfloat16_raw>(value).x) {}
  KERNELS_HOST_DEVICE explicit operator __nv_bfloat16() const {
    __nv_bfloat16_raw raw;
    raw.x = bits;
    return __nv_bfloat16(raw);
  }
#endif
};

static_assert(sizeof(BFloat16) == 2, "BFloat16 must be 2 bytes: buffers of bf16 are arrays of it");
static_assert(std::is_trivially_copyable<BFloat16>::value && std::is_standard_layout<BFloat16>::value,
              "BFloat16 must be a plain 16-bit value");

// The element conversions the kernels share, for templates over the element type: to f32 (exact) and
// from f32 (rounded to T: exact for f32, nearest-even for bf16).
KERNELS_HOST_DEVICE inline float to_f32(float value) { return value; }
KERNELS_HOST_DEVICE inline float to_f32(BFloat16 value) { return static_cast<float>(value); }
template <typename T>
KERNELS_HOST_DEVICE inline T from_f32(float value) {
  return T(value);
}

}  // namespace kernels
