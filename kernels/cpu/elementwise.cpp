// Elementwise kernels on the CPU over row-strided matrices [rows, cols] (see elementwise.h):
//   fill: dst = value      copy: dst (+)= src     add: dst = a + b     scale: dst (+)= alpha * src
//   relu: y = max(x, 0),  dx (+)= dy * [y > 0]
//   sigmoid: y = 1 / (1 + exp(-x)),  dx (+)= dy * y * (1 - y)
//   sum: sum of all elements, in double
// Every loop walks rows (threaded) and touches the first `cols` elements of each row only, never
// the gap up to the row stride. In-place calls (dst == src with the same stride) are allowed.
#include "kernels/elementwise.h"
#include "kernels/cpu/bf16_widen.h"
#include "kernels/with_flag.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace kernels::cpu {
namespace {

// Below this many elements a loop runs on one thread (starting OpenMP would cost more).
constexpr int64_t kParallelMinElements = 1 << 15;

// Calls row_op(r) for every row, rows threaded. Each kernel's row_op walks one row with plain pointers
// in an `omp simd` loop: the columns of a row are independent (an in-place call reads and writes the
// same element in one iteration), and the select-style bodies (relu's mask, the accumulate choice
// hoisted out of the loop) compile to branch-free vector code. A per-element lambda with a branch on
// random signs ran relu's backward scalar and mispredicted, at ~10x the time of its forward.
template <typename RowOp>
void for_each_row(int64_t rows, int64_t cols, RowOp row_op) {
  if (rows <= 0 || cols <= 0) return;
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) row_op(r);
}

// Overflow-free logistic: exp is only ever taken of a non-positive number.
inline float stable_sigmoid(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + std::exp(-x));
  const float e = std::exp(x);
  return e / (1.0f + e);
}

}  // namespace

void fill(MatrixView dst_view, float value) {
  if (any_bf16(dst_view)) return run_widened(&fill, dst_view, value);
  const int64_t rows = dst_view.rows, cols = dst_view.cols, ld_dst = dst_view.ld;
  float* dst = dst_view.f32();
  for_each_row(rows, cols, [=](int64_t r) {
    float* d = dst + r * ld_dst;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) d[c] = value;
  });
}

void copy(ConstMatrixView src_view, MatrixView dst_view, bool accumulate) {
  if (any_bf16(src_view, dst_view)) return run_widened(&copy, src_view, dst_view, accumulate);
  const auto [rows, cols, src, ld_src, dst, ld_dst] =
      unary_operands("copy", src_view, dst_view);
  for_each_row(rows, cols, [=](int64_t r) {
    const float* s = src + r * ld_src;
    float* d = dst + r * ld_dst;
    if (accumulate) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) d[c] += s[c];
    } else if (s != d) {
      std::memcpy(d, s, size_t(cols) * sizeof(float));
    }
  });
}

void add(ConstMatrixView a_view, ConstMatrixView b_view, MatrixView dst_view) {
  if (any_bf16(a_view, b_view, dst_view)) return run_widened(&add, a_view, b_view, dst_view);
  const auto [rows, cols, a, lda, b, ldb, dst, ld_dst] =
      binary_operands("add", a_view, b_view, dst_view);
  for_each_row(rows, cols, [=](int64_t r) {
    const float* ar = a + r * lda;
    const float* br = b + r * ldb;
    float* d = dst + r * ld_dst;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) d[c] = ar[c] + br[c];
  });
}

void scale(float alpha, ConstMatrixView src_view, MatrixView dst_view, bool accumulate) {
  if (any_bf16(src_view, dst_view)) return run_widened(&scale, alpha, src_view, dst_view, accumulate);
  const auto [rows, cols, src, ld_src, dst, ld_dst] =
      unary_operands("scale", src_view, dst_view);
  for_each_row(rows, cols, [=](int64_t r) {
    const float* s = src + r * ld_src;
    float* d = dst + r * ld_dst;
    if (accumulate) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) d[c] += alpha * s[c];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) d[c] = alpha * s[c];
    }
  });
}

void relu_forward(ConstMatrixView x_view, MatrixView y_view) {
  if (any_bf16(x_view, y_view)) return run_widened(&relu_forward, x_view, y_view);
  const auto [rows, cols, x, ldx, y, ldy] =
      unary_operands("relu_forward", x_view, y_view);
  for_each_row(rows, cols, [=](int64_t r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * ldy;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) {
      const float v = xr[c];
      yr[c] = v < 0.0f ? 0.0f : v;  // NaN stays NaN (as PyTorch), so a diverged run shows it
    }
  });
}

void relu_backward(ConstMatrixView y_view, ConstMatrixView dy_view, MatrixView dx_view,
                   bool accumulate) {
  if (any_bf16(y_view, dy_view, dx_view)) return run_widened(&relu_backward, y_view, dy_view, dx_view, accumulate);
  const auto [rows, cols, y, ldy, dy, ld_dy, dx, ldx] =
      binary_operands("relu_backward", y_view, dy_view, dx_view);
  for_each_row(rows, cols, [=](int64_t r) {
    const float* yr = y + r * ldy;
    const float* dyr = dy + r * ld_dy;
    float* dxr = dx + r * ldx;
    if (accumulate) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) {
        const float g = dyr[c];  // read unconditionally: the select is then a mask, not a branch
        dxr[c] += yr[c] > 0.0f ? g : 0.0f;
      }
    } else {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) {
        const float g = dyr[c];
        dxr[c] = yr[c] > 0.0f ? g : 0.0f;
      }
    }
  });
}

void scaled_residual_forward(float scale, ConstMatrixView x_view, ConstMatrixView up_view, MatrixView y_view,
                             bool relu) {
  if (any_bf16(x_view, up_view, y_view))
    return run_widened(&scaled_residual_forward, scale, x_view, up_view, y_view, relu);
  const auto [rows, cols, x, ldx, up, ld_up, y, ldy] =
      binary_operands("scaled_residual_forward", x_view, up_view, y_view);
  with_flag(relu, [=](auto relu_tag) {
    constexpr bool kRelu = decltype(relu_tag)::value;
    for_each_row(rows, cols, [=](int64_t r) {
      const float* xr = x + r * ldx;
      const float* ur = up + r * ld_up;
      float* yr = y + r * ldy;
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) {
        const float product = scale * ur[c];  // rounded, as scale() rounds it
        const float v = xr[c] + product;
        yr[c] = kRelu && v < 0.0f ? 0.0f : v;  // NaN stays NaN, as relu_forward
      }
    });
  });
}

void scaled_residual_backward(float scale, ConstMatrixView y_view, ConstMatrixView dy_view, MatrixView dx_view,
                              MatrixView dup_view, bool relu) {
  if (any_bf16(y_view, dy_view, dx_view, dup_view))
    return run_widened(&scaled_residual_backward, scale, y_view, dy_view, dx_view, dup_view, relu);
  check_same_shape("scaled_residual_backward", dx_view, dup_view);
  const auto [rows, cols, y, ldy, dy, ld_dy, dx, ldx] =
      binary_operands("scaled_residual_backward", y_view, dy_view, dx_view);
  float* const dup = dup_view.f32();
  const int64_t ld_up = dup_view.ld;
  with_flag(relu, [=](auto relu_tag) {
    constexpr bool kRelu = decltype(relu_tag)::value;
    for_each_row(rows, cols, [=](int64_t r) {
      const float* yr = y + r * ldy;  // read only with the ReLU
      const float* dyr = dy + r * ld_dy;
      float* dxr = dx + r * ldx;
      float* dur = dup + r * ld_up;
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) {
        const float d = dyr[c];  // read unconditionally: the ReLU's select is a mask, not a branch
        const float g = kRelu ? (yr[c] > 0.0f ? d : 0.0f) : d;
        dxr[c] = g;
        dur[c] = scale * g;
      }
    });
  });
}

void sigmoid_forward(ConstMatrixView x_view, MatrixView y_view) {
  if (any_bf16(x_view, y_view)) return run_widened(&sigmoid_forward, x_view, y_view);
  const auto [rows, cols, x, ldx, y, ldy] =
      unary_operands("sigmoid_forward", x_view, y_view);
  for_each_row(rows, cols, [=](int64_t r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * ldy;
    for (int64_t c = 0; c < cols; ++c) yr[c] = stable_sigmoid(xr[c]);
  });
}

void sigmoid_backward(ConstMatrixView y_view, ConstMatrixView dy_view, MatrixView dx_view,
                      bool accumulate) {
  if (any_bf16(y_view, dy_view, dx_view)) return run_widened(&sigmoid_backward, y_view, dy_view, dx_view, accumulate);
  const auto [rows, cols, y, ldy, dy, ld_dy, dx, ldx] =
      binary_operands("sigmoid_backward", y_view, dy_view, dx_view);
  for_each_row(rows, cols, [=](int64_t r) {
    const float* yr = y + r * ldy;
    const float* dyr = dy + r * ld_dy;
    float* dxr = dx + r * ldx;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) {
      const float s = yr[c];
      const float g = dyr[c] * s * (1.0f - s);
      dxr[c] = accumulate ? dxr[c] + g : g;
    }
  });
}

double sum(ConstMatrixView x_view) {
  if (any_bf16(x_view)) return run_widened(&sum, x_view);
  const int64_t rows = x_view.rows, cols = x_view.cols, ldx = x_view.ld;
  const float* x = x_view.f32();
  if (rows <= 0 || cols <= 0) return 0.0;
  // Fixed blocks of rows (their size depends on `rows` only), each summed in double, then added in
  // block order: the same result for any thread count.
  constexpr int64_t kMaxBlocks = 256;
  const int64_t block = std::max<int64_t>(1, (rows + kMaxBlocks - 1) / kMaxBlocks);
  const int64_t blocks = (rows + block - 1) / block;
  std::vector<double> partials(static_cast<size_t>(blocks), 0.0);
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
  for (int64_t b = 0; b < blocks; ++b) {
    double acc = 0.0;
    const int64_t end = std::min(rows, (b + 1) * block);
    for (int64_t r = b * block; r < end; ++r) {
      const float* xr = x + r * ldx;
      for (int64_t c = 0; c < cols; ++c) acc += xr[c];
    }
    partials[b] = acc;
  }
  double total = 0.0;
  for (double p : partials) total += p;
  return total;
}

}  // namespace kernels::cpu
