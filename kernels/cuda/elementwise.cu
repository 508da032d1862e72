// Elementwise kernels on the GPU over row-strided matrices [rows, cols] (see elementwise.h), the same
// arithmetic as kernels/cpu/elementwise.cpp:
//   fill: dst = value      copy: dst (+)= src     add: dst = a + b     scale: dst (+)= alpha * src
//   relu: y = max(x, 0) (NaN stays NaN),  dx (+)= dy * [y > 0]
//   sigmoid: y = 1 / (1 + exp(-x)) without overflow,  dx (+)= dy * y * (1 - y)
//   sum: all elements, in double, deterministic (reduce.cuh);  column_sums: out[c] (+)= sum_r x[r, c],
//        in double, deterministic, written as float(sum + old) like the CPU bias gradient
//   strided_copy: dst[i] (+)= src[i] over an N-d index space (N <= 8) with arbitrary strides (bf16: a
//                 plain copy of the bits)
// fill, copy (accumulating), add, scale, relu and sigmoid are one map, dst (+)= f(inputs), on a
// grid-stride launch (launch.cuh, no division per element) that touches only the first `cols` elements
// of every row, never the gap up to the row stride: a dense call (every row stride == cols) runs as one
// long row; 16-byte loads and stores (4 f32 or 8 bf16 a thread) where every row stride is a multiple of
// the pack and every pointer 16-byte aligned (a dense call's last partial pack element by element), one
// element a thread otherwise. A plain copy is cudaMemcpy2DAsync (every bit kept).
// In-place calls (dst == src with the same stride) are allowed.
// bf16: the maps are templated on the storage type and run on all-bf16 operands directly (load widens,
// f32 arithmetic, one rounding per stored value: the CPU emulation's results); sum and column_sums, and
// calls that mix f32 and bf16, go through kernels/cuda/bf16_widen.h.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

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

// --- The maps: dst (+)= f(in_0, ..., in_{K-1}) elementwise, K = 0, 1 or 2 ---------------------------

// The functions (f32 arithmetic on widened values).
struct Constant {
  float value;
  __device__ float operator()() const { return value; }
};
struct Identity {
  __device__ float operator()(float v) const { return v; }
};
struct Sum {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct Times {  // rounded on its own, so that an accumulating store adds it as the CPU does (no FMA)
  float alpha;
  __device__ float operator()(float v) const { return __fmul_rn(alpha, v); }
};
struct Relu {
  __device__ float operator()(float v) const { return v < 0.0f ? 0.0f : v; }  // NaN stays NaN, as on the CPU
};
struct ReluGrad {  // (y, dy)
  __device__ float operator()(float y, float dy) const { return y > 0.0f ? dy : 0.0f; }
};
struct Sigmoid {
  __device__ float operator()(float v) const { return stable_sigmoid(v); }
};
struct ScaledResidual {  // (x, up): the product and the sum rounded separately (no FMA), as on the CPU
  float scale;
  bool relu;
  __device__ float operator()(float x, float up) const {
    const float v = __fadd_rn(x, __fmul_rn(scale, up));
    return relu && v < 0.0f ? 0.0f : v;
  }
};
// dx = g, dup = scale * g from (y, dy): two outputs, so its own element op instead of a map.
template <typename T>
struct ScaledResidualGradOp {
  const T* y;
  const T* dy;
  T* dx;
  T* dup;
  int64_t ld_y, ld_dy, ld_dx, ld_dup;
  float scale;
  bool relu;
  __device__ void operator()(int64_t r, int64_t c) const {
    const float d = load(dy + r * ld_dy + c);
    const float g = relu ? (load(y + r * ld_y + c) > 0.0f ? d : 0.0f) : d;
    put(dx + r * ld_dx + c, g, false);
    put(dup + r * ld_dup + c, __fmul_rn(scale, g), false);
  }
};
struct SigmoidGrad {  // (y, dy)
  __device__ float operator()(float s, float dy) const {  // each product rounded, as on the CPU (no FMA)
    return __fmul_rn(__fmul_rn(dy, s), 1.0f - s);
  }
};

template <typename T, int K>
struct MapOperands {
  const T* in[K > 0 ? K : 1];
  int64_t ld_in[K > 0 ? K : 1];
  T* dst;
  int64_t ld_dst;
  bool accumulate;
};

template <int K, typename F>
__device__ inline float apply(const F& f, const float (&v)[K > 0 ? K : 1]) {
  if constexpr (K == 0)
    return f();
  else if constexpr (K == 1)
    return f(v[0]);
  else
    return f(v[0], v[1]);
}

// One element (r, c).
template <typename T, int K, typename F>
struct MapOp {
  MapOperands<T, K> m;
  F f;
  __device__ void operator()(int64_t r, int64_t c) const {
    float v[K > 0 ? K : 1];
#pragma unroll
    for (int k = 0; k < K; ++k) v[k] = load(m.in[k] + r * m.ld_in[k] + c);
    put(m.dst + r * m.ld_dst + c, apply<K>(f, v), m.accumulate);
  }
};

// One 16-byte pack: elements (r, p * N) .. (r, p * N + N - 1), N = kPack<T>; every row start and
// pointer 16-byte aligned.
template <typename T, int K, typename F>
struct MapPackOp {
  MapOperands<T, K> m;
  F f;
  __device__ void operator()(int64_t r, int64_t p) const {
    constexpr int N = kPack<T>;
    float in[K > 0 ? K : 1][N];
#pragma unroll
    for (int k = 0; k < K; ++k) load_pack(m.in[k] + r * m.ld_in[k] + p * N, in[k]);
    T* dst = m.dst + r * m.ld_dst + p * N;
    float out[N];
    if (m.accumulate) load_pack(dst, out);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      float v[K > 0 ? K : 1];
#pragma unroll
      for (int k = 0; k < K; ++k) v[k] = in[k][j];
      const float value = apply<K>(f, v);
      out[j] = m.accumulate ? out[j] + value : value;
    }
    store_pack(dst, out);
  }
};

// dst (+)= f(in...) over [rows, cols]. A dense call (every row stride == cols) is one long row; 16-byte
// packs where every row stride is a multiple of the pack and every pointer 16-byte aligned (a dense
// call's tail that does not fill a pack runs element by element), else one element per thread.
template <typename T, int K, typename F>
void map(int64_t rows, int64_t cols, MapOperands<T, K> m, F f, const char* name) {
  if (rows <= 0 || cols <= 0) return;
  constexpr int N = kPack<T>;
  bool dense = m.ld_dst == cols, aligned = pack_aligned(m.dst), packed_rows = m.ld_dst % N == 0;
  for (int k = 0; k < K; ++k) {
    dense = dense && m.ld_in[k] == cols;
    aligned = aligned && pack_aligned(m.in[k]);
    packed_rows = packed_rows && m.ld_in[k] % N == 0;
  }
  if (dense && rows > 1) {
    cols *= rows;
    rows = 1;
  }
  if (!aligned || (rows > 1 && (!packed_rows || cols % N != 0)))
    return for_each_element(rows, cols, MapOp<T, K, F>{m, f}, name);
  const int64_t packs = cols / N;
  for_each_element(rows, packs, MapPackOp<T, K, F>{m, f}, name);
  if (cols % N == 0) return;
  // rows == 1: the tail
  MapOperands<T, K> tail = m;
  for (int k = 0; k < K; ++k) tail.in[k] += packs * N;
  tail.dst += packs * N;
  for_each_element(1, cols - packs * N, MapOp<T, K, F>{tail, f}, name);
}

// The all-bf16 call or the all-f32 call of a map over dst's shape (shapes checked by the caller).
template <int K, typename F>
void map_views(const ConstMatrixView (&in)[K > 0 ? K : 1], MatrixView dst, bool accumulate, F f,
               const char* name) {
  if (dst.dtype == DType::bf16) {
    MapOperands<BFloat16, K> m{};
    for (int k = 0; k < K; ++k) m.in[k] = in[k].bf16(), m.ld_in[k] = in[k].ld;
    m.dst = dst.bf16(), m.ld_dst = dst.ld, m.accumulate = accumulate;
    map(dst.rows, dst.cols, m, f, name);
  } else {
    MapOperands<float, K> m{};
    for (int k = 0; k < K; ++k) m.in[k] = in[k].f32(), m.ld_in[k] = in[k].ld;
    m.dst = dst.f32(), m.ld_dst = dst.ld, m.accumulate = accumulate;
    map(dst.rows, dst.cols, m, f, name);
  }
}

struct AddRowVectorOp {
  const float* v;
  float* dst;
  int64_t ld;
  __device__ void operator()(int64_t r, int64_t c) const { dst[r * ld + c] += v[c]; }
};

// Element i of a [rows, cols] row-strided matrix (f32, or bf16 widened exactly), as a double (for sum); a
// division only when strided.
template <typename T>
struct MatrixElement {
  const T* x;
  int64_t cols;
  int64_t ld;
  template <typename Index>
  __device__ double operator()(Index i) const {
    if (cols == ld) return double(load(x + int64_t(i)));  // dense: no division
    const Index r = i / Index(cols);
    return double(load(x + int64_t(r) * ld + int64_t(i - r * Index(cols))));
  }
};

template <typename T>
struct ColumnLoad {
  const T* x;
  int64_t ld;
  __device__ void operator()(int64_t r, int64_t c, double (&acc)[1]) const {
    acc[0] += double(load(x + r * ld + c));
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

// T: float (dst (+)= src) or BFloat16 (dst = src, the bits copied).
template <typename T>
struct StridedCopyOp {
  StridedCopyParams p;
  const T* src;
  T* dst;
  __device__ void operator()(int64_t i) const {
    int64_t rest = i, src_offset = 0, dst_offset = 0;
    for (int d = p.ndim - 1; d >= 0; --d) {  // row-major: the last dimension is the fastest
      const int64_t index = rest % p.shape[d];
      rest /= p.shape[d];
      src_offset += index * p.src_strides[d];
      dst_offset += index * p.dst_strides[d];
    }
    if constexpr (std::is_same_v<T, float>)
      store(dst + dst_offset, src[src_offset], p.accumulate);
    else
      dst[dst_offset] = src[src_offset];
  }
};

template <typename T>
void launch_strided_copy(int ndim, const int64_t* shape, const T* src, const int64_t* src_strides, T* dst,
                         const int64_t* dst_strides, bool accumulate) {
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
  detail::for_each_index(total, StridedCopyOp<T>{params, src, dst}, "strided_copy");
}

}  // namespace
}  // namespace detail

// This file's helpers and the backend's shared ones (kernels/cuda/internal.h).
using namespace detail;  // NOLINT(google-build-using-namespace)

void fill(MatrixView dst_view, float value) {
  const ConstMatrixView none[1] = {};
  map_views<0>(none, dst_view, false, Constant{value}, dst_view.dtype == DType::bf16 ? "fill_bf16" : "fill");
}

void copy(ConstMatrixView src_view, MatrixView dst_view, bool accumulate) {
  const bool native = all_bf16(src_view, dst_view) || !any_bf16(src_view, dst_view);
  if (!native) return run_widened(&copy, src_view, dst_view, accumulate);
  check_same_shape("copy", src_view, dst_view);
  if (!accumulate) {  // every bit kept (a bf16 NaN's payload too, as the conversion kernel's copy)
    if (dst_view.rows <= 0 || dst_view.cols <= 0) return;
    if (src_view.data == dst_view.data && src_view.ld == dst_view.ld) return;  // in place
    const size_t element = dtype_size(dst_view.dtype);
    if (dst_view.rows == 1 || (src_view.ld == dst_view.cols && dst_view.ld == dst_view.cols)) {
      // Dense: one plain copy (a 2D copy's pitch may not exceed the device's limit, about 2 GiB).
      CHECK_CUDA(cudaMemcpyAsync(dst_view.data, src_view.data,
                                 size_t(dst_view.rows) * size_t(dst_view.cols) * element, cudaMemcpyDeviceToDevice,
                                 stream()));
      return;
    }
    CHECK_CUDA(cudaMemcpy2DAsync(dst_view.data, size_t(dst_view.ld) * element, src_view.data,
                                 size_t(src_view.ld) * element, size_t(dst_view.cols) * element,
                                 size_t(dst_view.rows), cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  map_views<1>({src_view}, dst_view, true, Identity{}, "copy");
}

void add(ConstMatrixView a_view, ConstMatrixView b_view, MatrixView dst_view) {
  const bool native = all_bf16(a_view, b_view, dst_view) || !any_bf16(a_view, b_view, dst_view);
  if (!native) return run_widened(&add, a_view, b_view, dst_view);
  check_same_shape("add", a_view, dst_view);
  check_same_shape("add", b_view, dst_view);
  map_views<2>({a_view, b_view}, dst_view, false, Sum{}, "add");
}

void scale(float alpha, ConstMatrixView src_view, MatrixView dst_view, bool accumulate) {
  const bool native = all_bf16(src_view, dst_view) || !any_bf16(src_view, dst_view);
  if (!native) return run_widened(&scale, alpha, src_view, dst_view, accumulate);
  check_same_shape("scale", src_view, dst_view);
  map_views<1>({src_view}, dst_view, accumulate, Times{alpha}, "scale");
}

void relu_forward(ConstMatrixView x_view, MatrixView y_view) {
  const bool native = all_bf16(x_view, y_view) || !any_bf16(x_view, y_view);
  if (!native) return run_widened(&relu_forward, x_view, y_view);
  check_same_shape("relu_forward", x_view, y_view);
  map_views<1>({x_view}, y_view, false, Relu{}, "relu_forward");
}

void relu_backward(ConstMatrixView y_view, ConstMatrixView dy_view, MatrixView dx_view,
                   bool accumulate) {
  const bool native = all_bf16(y_view, dy_view, dx_view) || !any_bf16(y_view, dy_view, dx_view);
  if (!native) return run_widened(&relu_backward, y_view, dy_view, dx_view, accumulate);
  check_same_shape("relu_backward", y_view, dx_view);
  check_same_shape("relu_backward", dy_view, dx_view);
  map_views<2>({y_view, dy_view}, dx_view, accumulate, ReluGrad{}, "relu_backward");
}

void scaled_residual_forward(float scale, ConstMatrixView x_view, ConstMatrixView up_view, MatrixView y_view,
                             bool relu) {
  const bool native = all_bf16(x_view, up_view, y_view) || !any_bf16(x_view, up_view, y_view);
  if (!native) return run_widened(&scaled_residual_forward, scale, x_view, up_view, y_view, relu);
  check_same_shape("scaled_residual_forward", x_view, y_view);
  check_same_shape("scaled_residual_forward", up_view, y_view);
  map_views<2>({x_view, up_view}, y_view, false, ScaledResidual{scale, relu}, "scaled_residual_forward");
}

void scaled_residual_backward(float scale, ConstMatrixView y_view, ConstMatrixView dy_view, MatrixView dx_view,
                              MatrixView dup_view, bool relu) {
  const bool all16 = all_bf16(y_view, dy_view, dx_view, dup_view);
  if (!all16 && any_bf16(y_view, dy_view, dx_view, dup_view))
    return run_widened(&scaled_residual_backward, scale, y_view, dy_view, dx_view, dup_view, relu);
  check_same_shape("scaled_residual_backward", y_view, dx_view);
  check_same_shape("scaled_residual_backward", dy_view, dx_view);
  check_same_shape("scaled_residual_backward", dup_view, dx_view);
  const int64_t rows = dx_view.rows, cols = dx_view.cols;
  if (rows <= 0 || cols <= 0) return;
  if (all16) {
    for_each_element(rows, cols,
                     ScaledResidualGradOp<BFloat16>{y_view.bf16(), dy_view.bf16(), dx_view.bf16(), dup_view.bf16(),
                                                    y_view.ld, dy_view.ld, dx_view.ld, dup_view.ld, scale, relu},
                     "scaled_residual_backward_bf16");
  } else {
    for_each_element(rows, cols,
                     ScaledResidualGradOp<float>{y_view.f32(), dy_view.f32(), dx_view.f32(), dup_view.f32(),
                                                 y_view.ld, dy_view.ld, dx_view.ld, dup_view.ld, scale, relu},
                     "scaled_residual_backward");
  }
}

void sigmoid_forward(ConstMatrixView x_view, MatrixView y_view) {
  const bool native = all_bf16(x_view, y_view) || !any_bf16(x_view, y_view);
  if (!native) return run_widened(&sigmoid_forward, x_view, y_view);
  check_same_shape("sigmoid_forward", x_view, y_view);
  map_views<1>({x_view}, y_view, false, Sigmoid{}, "sigmoid_forward");
}

void sigmoid_backward(ConstMatrixView y_view, ConstMatrixView dy_view, MatrixView dx_view,
                      bool accumulate) {
  const bool native = all_bf16(y_view, dy_view, dx_view) || !any_bf16(y_view, dy_view, dx_view);
  if (!native) return run_widened(&sigmoid_backward, y_view, dy_view, dx_view, accumulate);
  check_same_shape("sigmoid_backward", y_view, dx_view);
  check_same_shape("sigmoid_backward", dy_view, dx_view);
  map_views<2>({y_view, dy_view}, dx_view, accumulate, SigmoidGrad{}, "sigmoid_backward");
}

// sum and column_sums read bf16 natively: each element widened exactly and summed in double, in the f32
// kernels' order, so the results are the emulation's (widen into f32, the f32 kernel) bit for bit.
double sum(ConstMatrixView x_view) {
  const int64_t rows = x_view.rows, cols = x_view.cols, ldx = x_view.ld;
  if (rows <= 0 || cols <= 0) return 0.0;
  if (x_view.dtype == DType::bf16)
    return detail::reduce_to_host(rows * cols, MatrixElement<BFloat16>{x_view.bf16(), cols, ldx}, "sum_bf16");
  return detail::reduce_to_host(rows * cols, MatrixElement<float>{x_view.f32(), cols, ldx}, "sum");
}

void column_sums(ConstMatrixView x_view, float* out, bool accumulate) {
  const int64_t rows = std::max<int64_t>(x_view.rows, 0), cols = x_view.cols, ldx = x_view.ld;
  if (x_view.dtype == DType::bf16)
    detail::column_reduce<1>(rows, cols, ColumnLoad<BFloat16>{x_view.bf16(), ldx}, ColumnStore{out, accumulate},
                             "column_sums_bf16");
  else
    detail::column_reduce<1>(rows, cols, ColumnLoad<float>{x_view.f32(), ldx}, ColumnStore{out, accumulate},
                             "column_sums");
}

void strided_copy(int ndim, const int64_t* shape, const float* src, const int64_t* src_strides,
                  float* dst, const int64_t* dst_strides) {
  detail::strided_copy(ndim, shape, src, src_strides, dst, dst_strides, false);
}

void strided_copy(int ndim, const int64_t* shape, const BFloat16* src, const int64_t* src_strides, BFloat16* dst,
                  const int64_t* dst_strides) {
  detail::strided_copy(ndim, shape, src, src_strides, dst, dst_strides);
}

namespace detail {

void add_row_vector(int64_t rows, int64_t cols, const float* v, float* dst, int64_t ld_dst) {
  for_each_element(rows, cols, AddRowVectorOp{v, dst, ld_dst}, "add_row_vector");
}

void strided_copy(int ndim, const int64_t* shape, const float* src, const int64_t* src_strides,
                  float* dst, const int64_t* dst_strides, bool accumulate) {
  launch_strided_copy(ndim, shape, src, src_strides, dst, dst_strides, accumulate);
}

void strided_copy(int ndim, const int64_t* shape, const BFloat16* src, const int64_t* src_strides,
                  BFloat16* dst, const int64_t* dst_strides) {
  launch_strided_copy(ndim, shape, src, src_strides, dst, dst_strides, false);
}

}  // namespace detail

}  // namespace kernels::cuda
