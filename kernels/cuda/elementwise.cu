// Elementwise kernels on the GPU over row-strided matrices [rows, cols] (see elementwise.h), the same
// arithmetic as kernels/cpu/elementwise.cpp:
//   fill: dst = value      copy: dst (+)= src     add: dst = a + b     scale: dst (+)= alpha * src
//   relu: y = max(x, 0) (NaN stays NaN),  dx (+)= dy * [y > 0]
//   sigmoid: y = 1 / (1 + exp(-x)) without overflow,  dx (+)= dy * y * (1 - y)
//   sum: all elements, in double, deterministic (reduce.cuh);  column_sums: out[c] (+)= sum_r x[r, c],
//        in double, deterministic, written as float(sum + old) like the CPU bias gradient
//   strided_copy: dst[i] (+)= src[i] over an N-d index space (N <= 8) with arbitrary strides
// One grid-stride kernel per operation (launch.cuh): thread i handles element (i / cols, i % cols) and
// touches only the first `cols` elements of every row, never the gap up to the row stride.
// In-place calls (dst == src with the same stride) are allowed.
// bf16: copy, add, scale, relu and sigmoid are templated on the storage type and run on all-bf16 operands
// directly (load widens, f32 arithmetic, one rounding per stored value: the CPU emulation's results);
// the other kernels, and calls that mix f32 and bf16, go through kernels/cuda/bf16_widen.h.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/bf16_widen.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/internal.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/storage.cuh"
#include "kernels/elementwise.h"

namespace kernels::cuda {
namespace detail {
namespace {

// Overflow-free logistic: exp is only ever taken of a non-positive number.
__device__ inline float stable_sigmoid(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  const float e = expf(x);
  return e / (1.0f + e);
}

struct FillOp {
  float value;
  float* dst;
  int64_t ld;
  __device__ void operator()(int64_t r, int64_t c) const { dst[r * ld + c] = value; }
};

template <typename T>
struct CopyOp {
  const T* src;
  int64_t ld_src;
  T* dst;
  int64_t ld_dst;
  bool accumulate;
  __device__ void operator()(int64_t r, int64_t c) const {
    if constexpr (sizeof(T) == 2) {
      if (!accumulate) {  // a bf16 copy keeps every bit, as the conversion kernel's
        dst[r * ld_dst + c] = src[r * ld_src + c];
        return;
      }
    }
    put(dst + r * ld_dst + c, load(src + r * ld_src + c), accumulate);
  }
};

template <typename T>
struct AddOp {
  const T* a;
  int64_t lda;
  const T* b;
  int64_t ldb;
  T* dst;
  int64_t ld_dst;
  __device__ void operator()(int64_t r, int64_t c) const {
    put(dst + r * ld_dst + c, load(a + r * lda + c) + load(b + r * ldb + c), false);
  }
};

template <typename T>
struct ScaleOp {
  float alpha;
  const T* src;
  int64_t ld_src;
  T* dst;
  int64_t ld_dst;
  bool accumulate;
  __device__ void operator()(int64_t r, int64_t c) const {
    put(dst + r * ld_dst + c, alpha * load(src + r * ld_src + c), accumulate);
  }
};

template <typename T>
struct ReluForwardOp {
  const T* x;
  int64_t ldx;
  T* y;
  int64_t ldy;
  __device__ void operator()(int64_t r, int64_t c) const {
    const float v = load(x + r * ldx + c);
    put(y + r * ldy + c, v < 0.0f ? 0.0f : v, false);  // NaN stays NaN, as on the CPU
  }
};

template <typename T>
struct ReluBackwardOp {
  const T* y;
  int64_t ldy;
  const T* dy;
  int64_t ld_dy;
  T* dx;
  int64_t ldx;
  bool accumulate;
  __device__ void operator()(int64_t r, int64_t c) const {
    const float g = load(y + r * ldy + c) > 0.0f ? load(dy + r * ld_dy + c) : 0.0f;
    put(dx + r * ldx + c, g, accumulate);
  }
};



template <typename T>
struct SigmoidForwardOp {
  const T* x;
  int64_t ldx;
  T* y;
  int64_t ldy;
  __device__ void operator()(int64_t r, int64_t c) const {
    put(y + r * ldy + c, stable_sigmoid(load(x + r * ldx + c)), false);
  }
};

template <typename T>
struct SigmoidBackwardOp {
  const T* y;
  int64_t ldy;
  const T* dy;
  int64_t ld_dy;
  T* dx;
  int64_t ldx;
  bool accumulate;
  __device__ void operator()(int64_t r, int64_t c) const {
    const float s = load(y + r * ldy + c);
    put(dx + r * ldx + c, load(dy + r * ld_dy + c) * s * (1.0f - s), accumulate);
  }
};

struct AddRowVectorOp {
  const float* v;
  float* dst;
  int64_t ld;
  __device__ void operator()(int64_t r, int64_t c) const { dst[r * ld + c] += v[c]; }
};

// Element i of a [rows, cols] row-strided matrix, as a double (for sum).
struct MatrixElement {
  const float* x;
  int64_t cols;
  int64_t ld;
  template <typename Index>
  __device__ double operator()(Index i) const {
    const Index r = i / Index(cols);
    return double(x[int64_t(r) * ld + int64_t(i - r * Index(cols))]);
  }
};

struct ColumnLoad {
  const float* x;
  int64_t ld;
  __device__ void operator()(int64_t r, int64_t c, double (&acc)[1]) const {
    acc[0] += double(x[r * ld + c]);
  }
};

struct ColumnStore {
  float* out;
  bool accumulate;
  __device__ void operator()(int64_t c, const double (&s)[1]) const {
    out[c] = float(s[0] + (accumulate ? double(out[c]) : 0.0));
  }
};

constexpr int kMaxCopyDims = 8;

struct StridedCopyParams {
  int ndim;
  int64_t shape[kMaxCopyDims];
  int64_t src_strides[kMaxCopyDims];
  int64_t dst_strides[kMaxCopyDims];
  bool accumulate;
};

struct StridedCopyOp {
  StridedCopyParams p;
  const float* src;
  float* dst;
  __device__ void operator()(int64_t i) const {
    int64_t rest = i, src_offset = 0, dst_offset = 0;
    for (int d = p.ndim - 1; d >= 0; --d) {  // row-major: the last dimension is the fastest
      const int64_t index = rest % p.shape[d];
      rest /= p.shape[d];
      src_offset += index * p.src_strides[d];
      dst_offset += index * p.dst_strides[d];
    }
    store(dst + dst_offset, src[src_offset], p.accumulate);
  }
};

}  // namespace
}  // namespace detail

// This file's helpers and the backend's shared ones (kernels/cuda/internal.h).
using namespace detail;  // NOLINT(google-build-using-namespace)

void fill(MatrixView dst_view, float value) {
  if (any_bf16(dst_view)) return run_widened(&fill, dst_view, value);
  const int64_t rows = dst_view.rows, cols = dst_view.cols, ld_dst = dst_view.ld;
  float* dst = dst_view.f32();
  for_each_element(rows, cols, FillOp{value, dst, ld_dst}, "fill");
}

void copy(ConstMatrixView src_view, MatrixView dst_view, bool accumulate) {
  if (all_bf16(src_view, dst_view)) {
    check_same_shape("copy", src_view, dst_view);
    return for_each_element(dst_view.rows, dst_view.cols,
                            CopyOp<BFloat16>{src_view.bf16(), src_view.ld, dst_view.bf16(), dst_view.ld, accumulate},
                            "copy_bf16");
  }
  if (any_bf16(src_view, dst_view)) return run_widened(&copy, src_view, dst_view, accumulate);
  const auto [rows, cols, src, ld_src, dst, ld_dst] =
      unary_operands("copy", src_view, dst_view);
  for_each_element(rows, cols, CopyOp<float>{src, ld_src, dst, ld_dst, accumulate}, "copy");
}

void add(ConstMatrixView a_view, ConstMatrixView b_view, MatrixView dst_view) {
  if (all_bf16(a_view, b_view, dst_view)) {
    check_same_shape("add", a_view, dst_view);
    check_same_shape("add", b_view, dst_view);
    return for_each_element(dst_view.rows, dst_view.cols,
                            AddOp<BFloat16>{a_view.bf16(), a_view.ld, b_view.bf16(), b_view.ld, dst_view.bf16(),
                                            dst_view.ld},
                            "add_bf16");
  }
  if (any_bf16(a_view, b_view, dst_view)) return run_widened(&add, a_view, b_view, dst_view);
  const auto [rows, cols, a, lda, b, ldb, dst, ld_dst] =
      binary_operands("add", a_view, b_view, dst_view);
  for_each_element(rows, cols, AddOp<float>{a, lda, b, ldb, dst, ld_dst}, "add");
}

void scale(float alpha, ConstMatrixView src_view, MatrixView dst_view, bool accumulate) {
  if (all_bf16(src_view, dst_view)) {
    check_same_shape("scale", src_view, dst_view);
    return for_each_element(
        dst_view.rows, dst_view.cols,
        ScaleOp<BFloat16>{alpha, src_view.bf16(), src_view.ld, dst_view.bf16(), dst_view.ld, accumulate}, "scale_bf16");
  }
  if (any_bf16(src_view, dst_view)) return run_widened(&scale, alpha, src_view, dst_view, accumulate);
  const auto [rows, cols, src, ld_src, dst, ld_dst] =
      unary_operands("scale", src_view, dst_view);
  for_each_element(rows, cols, ScaleOp<float>{alpha, src, ld_src, dst, ld_dst, accumulate}, "scale");
}

void relu_forward(ConstMatrixView x_view, MatrixView y_view) {
  if (all_bf16(x_view, y_view)) {
    check_same_shape("relu_forward", x_view, y_view);
    return for_each_element(y_view.rows, y_view.cols,
                            ReluForwardOp<BFloat16>{x_view.bf16(), x_view.ld, y_view.bf16(), y_view.ld},
                            "relu_forward_bf16");
  }
  if (any_bf16(x_view, y_view)) return run_widened(&relu_forward, x_view, y_view);
  const auto [rows, cols, x, ldx, y, ldy] =
      unary_operands("relu_forward", x_view, y_view);
  for_each_element(rows, cols, ReluForwardOp<float>{x, ldx, y, ldy}, "relu_forward");
}

void relu_backward(ConstMatrixView y_view, ConstMatrixView dy_view, MatrixView dx_view,
                   bool accumulate) {
  if (all_bf16(y_view, dy_view, dx_view)) {
    check_same_shape("relu_backward", y_view, dx_view);
    check_same_shape("relu_backward", dy_view, dx_view);
    return for_each_element(dx_view.rows, dx_view.cols,
                            ReluBackwardOp<BFloat16>{y_view.bf16(), y_view.ld, dy_view.bf16(), dy_view.ld,
                                                     dx_view.bf16(), dx_view.ld, accumulate},
                            "relu_backward_bf16");
  }
  if (any_bf16(y_view, dy_view, dx_view)) return run_widened(&relu_backward, y_view, dy_view, dx_view, accumulate);
  const auto [rows, cols, y, ldy, dy, ld_dy, dx, ldx] =
      binary_operands("relu_backward", y_view, dy_view, dx_view);
  for_each_element(rows, cols, ReluBackwardOp<float>{y, ldy, dy, ld_dy, dx, ldx, accumulate},
                   "relu_backward");
}

void sigmoid_forward(ConstMatrixView x_view, MatrixView y_view) {
  if (all_bf16(x_view, y_view)) {
    check_same_shape("sigmoid_forward", x_view, y_view);
    return for_each_element(y_view.rows, y_view.cols,
                            SigmoidForwardOp<BFloat16>{x_view.bf16(), x_view.ld, y_view.bf16(), y_view.ld},
                            "sigmoid_forward_bf16");
  }
  if (any_bf16(x_view, y_view)) return run_widened(&sigmoid_forward, x_view, y_view);
  const auto [rows, cols, x, ldx, y, ldy] =
      unary_operands("sigmoid_forward", x_view, y_view);
  for_each_element(rows, cols, SigmoidForwardOp<float>{x, ldx, y, ldy}, "sigmoid_forward");
}

void sigmoid_backward(ConstMatrixView y_view, ConstMatrixView dy_view, MatrixView dx_view,
                      bool accumulate) {
  if (all_bf16(y_view, dy_view, dx_view)) {
    check_same_shape("sigmoid_backward", y_view, dx_view);
    check_same_shape("sigmoid_backward", dy_view, dx_view);
    return for_each_element(dx_view.rows, dx_view.cols,
                            SigmoidBackwardOp<BFloat16>{y_view.bf16(), y_view.ld, dy_view.bf16(), dy_view.ld,
                                                        dx_view.bf16(), dx_view.ld, accumulate},
                            "sigmoid_backward_bf16");
  }
  if (any_bf16(y_view, dy_view, dx_view)) return run_widened(&sigmoid_backward, y_view, dy_view, dx_view, accumulate);
  const auto [rows, cols, y, ldy, dy, ld_dy, dx, ldx] =
      binary_operands("sigmoid_backward", y_view, dy_view, dx_view);
  for_each_element(rows, cols, SigmoidBackwardOp<float>{y, ldy, dy, ld_dy, dx, ldx, accumulate},
                   "sigmoid_backward");
}

double sum(ConstMatrixView x_view) {
  if (any_bf16(x_view)) return run_widened(&sum, x_view);
  const int64_t rows = x_view.rows, cols = x_view.cols, ldx = x_view.ld;
  const float* x = x_view.f32();
  if (rows <= 0 || cols <= 0) return 0.0;
  return detail::reduce_to_host(rows * cols, MatrixElement{x, cols, ldx}, "sum");
}

void column_sums(ConstMatrixView x_view, float* out, bool accumulate) {
  if (any_bf16(x_view)) return run_widened(&column_sums, x_view, out, accumulate);
  int64_t rows = x_view.rows;
  const int64_t cols = x_view.cols, ldx = x_view.ld;
  const float* x = x_view.f32();
  if (rows < 0) rows = 0;
  detail::column_reduce<1>(rows, cols, ColumnLoad{x, ldx}, ColumnStore{out, accumulate},
                           "column_sums");
}

void strided_copy(int ndim, const int64_t* shape, const float* src, const int64_t* src_strides,
                  float* dst, const int64_t* dst_strides) {
  detail::strided_copy(ndim, shape, src, src_strides, dst, dst_strides, false);
}

namespace detail {

void add_row_vector(int64_t rows, int64_t cols, const float* v, float* dst, int64_t ld_dst) {
  for_each_element(rows, cols, AddRowVectorOp{v, dst, ld_dst}, "add_row_vector");
}

void strided_copy(int ndim, const int64_t* shape, const float* src, const int64_t* src_strides,
                  float* dst, const int64_t* dst_strides, bool accumulate) {
  if (ndim < 0 || ndim > kMaxCopyDims)
    detail::throw_error("strided_copy: at most 8 dimensions are supported", __FILE__, __LINE__);
  StridedCopyParams params{};
  params.ndim = ndim;
  params.accumulate = accumulate;
  int64_t total = 1;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] < 0)
      detail::throw_error("strided_copy: negative dimension in the shape", __FILE__, __LINE__);
    params.shape[d] = shape[d];
    params.src_strides[d] = src_strides[d];
    params.dst_strides[d] = dst_strides[d];
    total *= shape[d];
  }
  detail::for_each_index(total, StridedCopyOp{params, src, dst}, "strided_copy");
}

}  // namespace detail

}  // namespace kernels::cuda
