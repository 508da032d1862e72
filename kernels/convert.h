// Element-type conversion of row-strided matrices [rows, cols] (see layout.h), between any two of
// the element types (f32, bf16):
//   f32 -> bf16:  round to nearest, ties to even (kernels/bf16.h: NaN stays a quiet NaN, overflow
//                 past the largest finite bf16 becomes Inf as IEEE rounding says)
//   bf16 -> f32:  exact
//   same type:    a copy
// Both backends convert each element with the one function of kernels/bf16.h, so the CPU and the
// GPU agree bit for bit. Like every kernel, a conversion touches the first cols elements of each row
// only, never the gap up to the row stride. src and dst must not overlap (a conversion changes the
// element size, so it cannot run in place).
#pragma once
#include <cstdint>

#include "kernels/layout.h"

namespace kernels {

// The operands of a conversion, checked (src has dst's shape) and unpacked, with their element
// types; one check for both backends:
//   const auto [rows, cols, src, ld_src, src_type, dst, ld_dst, dst_type] = convert_operands(...);
struct ConvertOperands {
  int64_t rows, cols;
  const void* in;
  int64_t ld_in;
  DType in_type;
  void* out;
  int64_t ld_out;
  DType out_type;
};

inline ConvertOperands convert_operands(const char* kernel, ConstMatrixView src, MatrixView dst) {
  check_same_shape(kernel, src, dst);
  return {dst.rows, dst.cols, src.data, src.ld, src.dtype, dst.data, dst.ld, dst.dtype};
}

// Calls fn(in, out) with o's pointers cast to their element types (const float* or const BFloat16*,
// float* or BFloat16*): each backend's one switch over the four pairs of types.
template <typename Fn>
void with_typed_pointers(const ConvertOperands& o, Fn fn) {
  const bool in_f32 = o.in_type == DType::f32, out_f32 = o.out_type == DType::f32;
  if (in_f32 && out_f32) return fn(static_cast<const float*>(o.in), static_cast<float*>(o.out));
  if (in_f32) return fn(static_cast<const float*>(o.in), static_cast<BFloat16*>(o.out));
  if (out_f32) return fn(static_cast<const BFloat16*>(o.in), static_cast<float*>(o.out));
  return fn(static_cast<const BFloat16*>(o.in), static_cast<BFloat16*>(o.out));
}

// One element: rounded where the destination is narrower, copied where the types agree (a bf16 copy
// keeps every bit, a signalling NaN's too).
KERNELS_HOST_DEVICE inline void convert_element(float in, float& out) { out = in; }
KERNELS_HOST_DEVICE inline void convert_element(float in, BFloat16& out) { out = BFloat16(in); }
KERNELS_HOST_DEVICE inline void convert_element(BFloat16 in, float& out) { out = static_cast<float>(in); }
KERNELS_HOST_DEVICE inline void convert_element(BFloat16 in, BFloat16& out) { out = in; }

}  // namespace kernels

namespace kernels::cpu {
#include "kernels/convert_api.inc"
}  // namespace kernels::cpu

// The CUDA versions (kernels/cuda/convert.cu) take the same arguments, device pointers, and run on
// the current stream of the CUDA context (kernels/cuda/context.h), asynchronously.
namespace kernels::cuda {
#include "kernels/convert_api.inc"
}  // namespace kernels::cuda
