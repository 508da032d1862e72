// Pooling on the GPU over NHWC activations (contract in pool.h), the same arithmetic and summation
// order as kernels/cpu/pool.cpp.
//
// The window of output (oh, ow) covers input rows [oh*sh - pad_top, oh*sh - pad_top + kh) and columns
// [ow*sw - pad_left, ow*sw - pad_left + kw); only its part inside the input is read.
//   max forward:  one thread per output element: the first maximum of the window in row-major order
//                 (padded cells never win), and optionally its cell ih * in_w + iw (the arg-max, int32).
//   max backward: one thread per INPUT element gathers (no atomics, deterministic): for every output
//                 whose window contains the cell, in (oh, ow) order, it adds dy when that output's
//                 saved arg-max is this cell (one int32 read per window instead of recomputing the
//                 window's maximum: kh*kw loads of x). The additions happen in the CPU's order, so the
//                 result is bitwise the CPU's. Without saved indices (max_pool2d_backward) the arg-max
//                 pass runs first into scratch.
//   avg forward:  sum over the window in row-major order, times 1 / count, count = kh*kw (clipped to
//                 the padded input) with count_include_pad, else the inside cells.
//   avg backward: gather: dx = sum over the windows containing the cell of dy / count, in (oh, ow)
//                 order (products rounded before the add, as on the CPU).
//   global avg:   y[n, c] = float(sum_hw x (double) / hw);  backward: dx (+)= dy[n, c] * (1 / hw).
// The input cell (ih, iw) lies in the windows of outputs oh in [oh0, oh1] with
//   oh0 = ceil((ih + pad_top - kh + 1) / sh) (at least 0),  oh1 = min(out_h - 1, (ih + pad_top) / sh)
// and the same for ow.
// Every kernel is templated on the storage type (storage.cuh): all-bf16 calls run natively (loads widen,
// f32 arithmetic, one rounding per stored value, the CPU emulation's results); calls mixing f32 and bf16
// go through kernels/cuda/bf16_widen.h.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/bf16_widen.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/storage.cuh"
#include "kernels/pool.h"

namespace kernels::cuda {
namespace detail {
namespace {

// a / b with 32-bit division when both fit (64-bit division is slow on the GPU); a >= 0, b > 0.
__device__ inline int64_t divide(int64_t a, int64_t b) {
  return ((a | b) >> 31) == 0 ? int64_t(uint32_t(a) / uint32_t(b)) : a / b;
}

// The device-side copy of the geometry (Pool2dGeometry's members, plus the output size).
struct Geometry {
  int64_t batch, in_h, in_w, channels, kernel_h, kernel_w, stride_h, stride_w;
  int64_t pad_top, pad_bottom, pad_left, pad_right, out_h, out_w;
};

Geometry device_geometry(const Pool2dGeometry& g) {
  return {g.batch,    g.in_h,     g.in_w,    g.channels, g.kernel_h,  g.kernel_w, g.stride_h,
          g.stride_w, g.pad_top,  g.pad_bottom, g.pad_left, g.pad_right, g.out_h(), g.out_w()};
}

// The part of one window inside the input: rows [h0, h1), columns [w0, w1).
struct Window {
  int64_t h0, h1, w0, w1;
};

__device__ inline Window window_of(const Geometry& g, int64_t oh, int64_t ow) {
  const int64_t top = oh * g.stride_h - g.pad_top, left = ow * g.stride_w - g.pad_left;
  Window w;
  w.h0 = top > 0 ? top : 0;
  w.h1 = top + g.kernel_h < g.in_h ? top + g.kernel_h : g.in_h;
  w.w0 = left > 0 ? left : 0;
  w.w1 = left + g.kernel_w < g.in_w ? left + g.kernel_w : g.in_w;
  return w;
}

// 1 / (the divisor of an average window), 0 for an empty count (see kernels/cpu/pool.cpp).
__device__ inline float average_scale(const Geometry& g, bool count_include_pad, int64_t oh,
                                      int64_t ow) {
  int64_t count;
  if (count_include_pad) {
    const int64_t top = oh * g.stride_h - g.pad_top, left = ow * g.stride_w - g.pad_left;
    const int64_t bottom_limit = g.in_h + g.pad_bottom, right_limit = g.in_w + g.pad_right;
    const int64_t bottom = top + g.kernel_h < bottom_limit ? top + g.kernel_h : bottom_limit;
    const int64_t right = left + g.kernel_w < right_limit ? left + g.kernel_w : right_limit;
    count = (bottom - top) * (right - left);
  } else {
    const Window w = window_of(g, oh, ow);
    const int64_t rows = w.h1 > w.h0 ? w.h1 - w.h0 : 0, cols = w.w1 > w.w0 ? w.w1 - w.w0 : 0;
    count = rows * cols;
  }
  return count > 0 ? 1.0f / float(count) : 0.0f;
}

// The outputs whose windows contain input index i along one axis: [first, last] (maybe empty).
__device__ inline int64_t first_window(int64_t i, int64_t pad, int64_t kernel, int64_t stride) {
  const int64_t num = i + pad - kernel + 1;  // smallest o with o * stride >= num
  return num <= 0 ? 0 : divide(num + stride - 1, stride);
}
__device__ inline int64_t last_window(int64_t i, int64_t pad, int64_t stride, int64_t out) {
  const int64_t o = divide(i + pad, stride);
  return o < out - 1 ? o : out - 1;
}

// The first maximum of the window in row-major order (strictly greater replaces, as on the CPU) and,
// with argmax non-null, its cell ih * in_w + iw; -inf and -1 for a window of padding only.
template <typename T>
struct MaxForwardOp {
  Geometry g;
  const T* x;
  int64_t ldx;
  T* y;
  int64_t ldy;
  int32_t* argmax;  // nullable: [rows, channels] dense
  __device__ void operator()(int64_t row, int64_t c) const {  // row = (n, oh, ow)
    const int64_t image_row = divide(row, g.out_w), ow = row - image_row * g.out_w;
    const int64_t n = divide(image_row, g.out_h), oh = image_row - n * g.out_h;
    const Window win = window_of(g, oh, ow);
    const T* x_image = x + n * g.in_h * g.in_w * ldx + c;
    float best = -INFINITY;
    int32_t best_cell = -1;
    if (win.h0 < win.h1 && win.w0 < win.w1) {
      best_cell = int32_t(win.h0 * g.in_w + win.w0);
      best = load(x_image + best_cell * ldx);
      for (int64_t h = win.h0; h < win.h1; ++h)
        for (int64_t w = win.w0; w < win.w1; ++w) {
          const int32_t cell = int32_t(h * g.in_w + w);
          const float v = load(x_image + cell * ldx);
          if (v > best) {
            best = v;
            best_cell = cell;
          }
        }
    }
    put(y + row * ldy + c, best, false);
    if (argmax) argmax[row * g.channels + c] = best_cell;
  }
};

// One thread per INPUT element: dx (+)= the dy of every output whose saved arg-max is this cell, in
// (oh, ow) order (the CPU's order of additions, no atomics).
template <typename T>
struct MaxBackwardOp {
  Geometry g;
  const int32_t* argmax;
  const T* dy;
  int64_t ldy;
  T* dx;
  int64_t ldx;
  bool accumulate;
  __device__ void operator()(int64_t row, int64_t c) const {  // row = (n, ih, iw): an input cell
    const int64_t image_row = divide(row, g.in_w), iw = row - image_row * g.in_w;
    const int64_t n = divide(image_row, g.in_h), ih = image_row - n * g.in_h;
    const int32_t cell = int32_t(ih * g.in_w + iw);
    float acc = accumulate ? load(dx + row * ldx + c) : 0.0f;
    const int64_t oh0 = first_window(ih, g.pad_top, g.kernel_h, g.stride_h);
    const int64_t oh1 = last_window(ih, g.pad_top, g.stride_h, g.out_h);
    const int64_t ow0 = first_window(iw, g.pad_left, g.kernel_w, g.stride_w);
    const int64_t ow1 = last_window(iw, g.pad_left, g.stride_w, g.out_w);
    for (int64_t oh = oh0; oh <= oh1; ++oh)
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const int64_t o = (n * g.out_h + oh) * g.out_w + ow;
        if (argmax[o * g.channels + c] == cell) acc += load(dy + o * ldy + c);
      }
    put(dx + row * ldx + c, acc, false);
  }
};

template <typename T>
struct AvgForwardOp {
  Geometry g;
  bool count_include_pad;
  const T* x;
  int64_t ldx;
  T* y;
  int64_t ldy;
  __device__ void operator()(int64_t row, int64_t c) const {  // row = (n, oh, ow)
    const int64_t image_row = divide(row, g.out_w), ow = row - image_row * g.out_w;
    const int64_t n = divide(image_row, g.out_h), oh = image_row - n * g.out_h;
    const Window win = window_of(g, oh, ow);
    float sum = 0.0f;
    for (int64_t h = win.h0; h < win.h1; ++h)
      for (int64_t w = win.w0; w < win.w1; ++w) sum += load(x + ((n * g.in_h + h) * g.in_w + w) * ldx + c);
    put(y + row * ldy + c, sum * average_scale(g, count_include_pad, oh, ow), false);
  }
};

template <typename T>
struct AvgBackwardOp {
  Geometry g;
  bool count_include_pad;
  const T* dy;
  int64_t ldy;
  T* dx;
  int64_t ldx;
  bool accumulate;
  __device__ void operator()(int64_t row, int64_t c) const {  // row = (n, ih, iw)
    const int64_t image_row = divide(row, g.in_w), iw = row - image_row * g.in_w;
    const int64_t n = divide(image_row, g.in_h), ih = image_row - n * g.in_h;
    float acc = accumulate ? load(dx + row * ldx + c) : 0.0f;
    const int64_t oh0 = first_window(ih, g.pad_top, g.kernel_h, g.stride_h);
    const int64_t oh1 = last_window(ih, g.pad_top, g.stride_h, g.out_h);
    const int64_t ow0 = first_window(iw, g.pad_left, g.kernel_w, g.stride_w);
    const int64_t ow1 = last_window(iw, g.pad_left, g.stride_w, g.out_w);
    for (int64_t oh = oh0; oh <= oh1; ++oh)
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const float grad = load(dy + ((n * g.out_h + oh) * g.out_w + ow) * ldy + c);
        acc += __fmul_rn(grad, average_scale(g, count_include_pad, oh, ow));  // no FMA: as the CPU
      }
    put(dx + row * ldx + c, acc, false);
  }
};

template <typename T>
struct GlobalAvgForwardOp {
  int64_t hw;
  int64_t channels;
  const T* x;
  int64_t ldx;
  T* y;
  __device__ void operator()(int64_t n, int64_t c) const {
    const double scale = hw > 0 ? 1.0 / double(hw) : 0.0;
    double sum = 0.0;
    for (int64_t p = 0; p < hw; ++p) sum += double(load(x + (n * hw + p) * ldx + c));
    put(y + n * channels + c, float(sum * scale), false);
  }
};

template <typename T>
struct GlobalAvgBackwardOp {
  int64_t hw;
  int64_t channels;
  const T* dy;
  T* dx;
  int64_t ldx;
  bool accumulate;
  __device__ void operator()(int64_t row, int64_t c) const {  // row = (n, p)
    const float scale = hw > 0 ? 1.0f / float(hw) : 0.0f;
    const float g = __fmul_rn(load(dy + divide(row, hw) * channels + c), scale);
    put(dx + row * ldx + c, g, accumulate);
  }
};

}  // namespace
}  // namespace detail

// This file's helpers and the backend's shared ones (kernels/cuda/internal.h).
using namespace detail;  // NOLINT(google-build-using-namespace)

namespace {

// max_pool2d_forward(_argmax) on typed operands (argmax nullable).
template <typename T>
void max_forward(const Pool2dGeometry& g, const T* x, int64_t ldx, T* y, int64_t ldy, int32_t* argmax,
                 const char* name) {
  const Geometry d = device_geometry(g);
  if (d.out_h <= 0 || d.out_w <= 0) return;
  detail::for_each_element(g.batch * d.out_h * d.out_w, g.channels, MaxForwardOp<T>{d, x, ldx, y, ldy, argmax},
                           name);
}

template <typename T>
void max_backward(const Pool2dGeometry& g, const int32_t* argmax, const T* dy, int64_t ldy, T* dx, int64_t ldx,
                  bool accumulate, const char* name) {
  detail::for_each_element(g.batch * g.in_h * g.in_w, g.channels,
                           MaxBackwardOp<T>{device_geometry(g), argmax, dy, ldy, dx, ldx, accumulate}, name);
}

}  // namespace

void max_pool2d_forward(const Pool2dGeometry& g, ConstMatrixView x_view, MatrixView y_view) {
  max_pool2d_forward_argmax(g, x_view, y_view, nullptr);
}

void max_pool2d_forward_argmax(const Pool2dGeometry& g, ConstMatrixView x_view, MatrixView y_view,
                               int32_t* argmax) {
  const char* name = argmax ? "max_pool2d_forward_argmax" : "max_pool2d_forward";
  if (argmax) check_argmax_fits(name, g);
  if (all_bf16(x_view, y_view)) {
    check_input(name, g, x_view);
    check_output(name, g, y_view);
    return max_forward(g, x_view.bf16(), x_view.ld, y_view.bf16(), y_view.ld, argmax, name);
  }
  if (any_bf16(x_view, y_view)) return run_widened(&max_pool2d_forward_argmax, g, x_view, y_view, argmax);
  const auto [x, ldx, y, ldy] = window_forward_operands(name, g, x_view, y_view);
  max_forward(g, x, ldx, y, ldy, argmax, name);
}

void max_pool2d_backward_argmax(const Pool2dGeometry& g, const int32_t* argmax, ConstMatrixView dy_view,
                                MatrixView dx_view, bool accumulate) {
  constexpr const char* name = "max_pool2d_backward_argmax";
  if (all_bf16(dy_view, dx_view)) {
    check_output(name, g, dy_view);
    check_input(name, g, dx_view);
    return max_backward(g, argmax, dy_view.bf16(), dy_view.ld, dx_view.bf16(), dx_view.ld, accumulate, name);
  }
  if (any_bf16(dy_view, dx_view)) return run_widened(&max_pool2d_backward_argmax, g, argmax, dy_view, dx_view, accumulate);
  const auto [dy, ldy, dx, ldx] = pool_backward_operands(name, g, dy_view, dx_view);
  max_backward(g, argmax, dy, ldy, dx, ldx, accumulate, name);
}

// The arg-max again, into scratch (with a scratch y of x's type), then the gather.
void max_pool2d_backward(const Pool2dGeometry& g, ConstMatrixView x_view, ConstMatrixView dy_view,
                         MatrixView dx_view, bool accumulate) {
  constexpr const char* name = "max_pool2d_backward";
  check_input(name, g, x_view);
  check_output(name, g, dy_view);
  check_input(name, g, dx_view);
  check_argmax_fits(name, g);
  const int64_t outputs = g.output_rows() > 0 ? g.output_rows() * g.channels : 0;
  detail::ScopedBuffer argmax(size_t(outputs) * sizeof(int32_t), "max_pool2d_backward arg-max");
  detail::ScopedBuffer y(size_t(outputs) * dtype_size(x_view.dtype), "max_pool2d_backward scratch y");
  max_pool2d_forward_argmax(g, x_view, MatrixView(y.as<float>(), g.output_rows(), g.channels, g.channels, x_view.dtype),
                            argmax.as<int32_t>());
  max_pool2d_backward_argmax(g, argmax.as<int32_t>(), dy_view, dx_view, accumulate);
}

void avg_pool2d_forward(const Pool2dGeometry& g, bool count_include_pad, ConstMatrixView x_view,
                        MatrixView y_view) {
  if (all_bf16(x_view, y_view)) {
    check_input("avg_pool2d_forward", g, x_view);
    check_output("avg_pool2d_forward", g, y_view);
    const Geometry d = device_geometry(g);
    if (d.out_h <= 0 || d.out_w <= 0) return;
    return detail::for_each_element(
        g.batch * d.out_h * d.out_w, g.channels,
        AvgForwardOp<BFloat16>{d, count_include_pad, x_view.bf16(), x_view.ld, y_view.bf16(), y_view.ld},
        "avg_pool2d_forward_bf16");
  }
  if (any_bf16(x_view, y_view)) return run_widened(&avg_pool2d_forward, g, count_include_pad, x_view, y_view);
  const auto [x, ldx, y, ldy] = window_forward_operands("avg_pool2d_forward", g, x_view, y_view);
  const Geometry d = device_geometry(g);
  if (d.out_h <= 0 || d.out_w <= 0) return;
  detail::for_each_element(g.batch * d.out_h * d.out_w, g.channels,
                           AvgForwardOp<float>{d, count_include_pad, x, ldx, y, ldy}, "avg_pool2d_forward");
}

void avg_pool2d_backward(const Pool2dGeometry& g, bool count_include_pad, ConstMatrixView dy_view,
                         MatrixView dx_view, bool accumulate) {
  if (all_bf16(dy_view, dx_view)) {
    check_output("avg_pool2d_backward", g, dy_view);
    check_input("avg_pool2d_backward", g, dx_view);
    return detail::for_each_element(g.batch * g.in_h * g.in_w, g.channels,
                                    AvgBackwardOp<BFloat16>{device_geometry(g), count_include_pad, dy_view.bf16(),
                                                            dy_view.ld, dx_view.bf16(), dx_view.ld, accumulate},
                                    "avg_pool2d_backward_bf16");
  }
  if (any_bf16(dy_view, dx_view)) return run_widened(&avg_pool2d_backward, g, count_include_pad, dy_view, dx_view, accumulate);
  const auto [dy, ldy, dx, ldx] = pool_backward_operands("avg_pool2d_backward", g, dy_view, dx_view);
  const Geometry d = device_geometry(g);
  detail::for_each_element(g.batch * g.in_h * g.in_w, g.channels,
                           AvgBackwardOp<float>{d, count_include_pad, dy, ldy, dx, ldx, accumulate},
                           "avg_pool2d_backward");
}

void global_avg_pool_forward(int64_t hw, ConstMatrixView x_view, MatrixView y_view) {
  if (all_bf16(x_view, y_view)) {
    check_shape("global_avg_pool_forward", x_view, y_view.rows * hw, y_view.cols);
    check_dense("global_avg_pool_forward", y_view);
    return detail::for_each_element(
        y_view.rows, y_view.cols,
        GlobalAvgForwardOp<BFloat16>{hw, y_view.cols, x_view.bf16(), x_view.ld, y_view.bf16()},
        "global_avg_pool_forward_bf16");
  }
  if (any_bf16(x_view, y_view)) return run_widened(&global_avg_pool_forward, hw, x_view, y_view);
  const auto [batch, channels, x, ldx, y, ldy] =
      global_avg_pool_forward_operands("global_avg_pool_forward", hw, x_view, y_view);
  detail::for_each_element(batch, channels, GlobalAvgForwardOp<float>{hw, channels, x, ldx, y},
                           "global_avg_pool_forward");
}

void global_avg_pool_backward(int64_t hw, ConstMatrixView dy_view, MatrixView dx_view,
                              bool accumulate) {
  if (all_bf16(dy_view, dx_view)) {
    check_shape("global_avg_pool_backward", dx_view, dy_view.rows * hw, dy_view.cols);
    check_dense("global_avg_pool_backward", dy_view);
    if (hw <= 0) return;
    return detail::for_each_element(
        dy_view.rows * hw, dy_view.cols,
        GlobalAvgBackwardOp<BFloat16>{hw, dy_view.cols, dy_view.bf16(), dx_view.bf16(), dx_view.ld, accumulate},
        "global_avg_pool_backward_bf16");
  }
  if (any_bf16(dy_view, dx_view)) return run_widened(&global_avg_pool_backward, hw, dy_view, dx_view, accumulate);
  const auto [batch, channels, dy, ldy, dx, ldx] =
      global_avg_pool_backward_operands("global_avg_pool_backward", hw, dy_view, dx_view);
  if (hw <= 0) return;
  detail::for_each_element(batch * hw, channels,
                           GlobalAvgBackwardOp<float>{hw, channels, dy, dx, ldx, accumulate},
                           "global_avg_pool_backward");
}

}  // namespace kernels::cuda
