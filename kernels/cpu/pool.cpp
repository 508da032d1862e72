// Pooling on the CPU over NHWC activations (see pool.h).
//
// The window of output (oh, ow) covers input rows [oh*sh - pad_top, oh*sh - pad_top + kh) and
// columns [ow*sw - pad_left, ow*sw - pad_left + kw); only its part inside the input is read (padded
// cells are -inf for max, zero for average).
//   max:      y = max over the window;  backward: dx[first arg-max cell in row-major order] += dy, the
//             cell saved by the forward (argmax, int32 ih * in_w + iw) or found again from x
//   average:  y = sum over the window / count;  backward: dx[cell] += dy / count for every cell,
//             count = kh*kw (count_include_pad) or the number of window cells inside the input
//   global:   y[n, c] = sum_hw x[n, hw, c] / hw;  backward: dx[n, hw, c] += dy[n, c] / hw
// Every parallel loop writes disjoint elements and sums in a fixed order: deterministic results for
// any thread count.
#include "kernels/pool.h"
#include "kernels/cpu/bf16_widen.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

namespace kernels::cpu {
namespace {

// The part of one window inside the input: rows [h0, h1), columns [w0, w1).
struct Window {
  int64_t h0, h1, w0, w1;
};

Window window_of(const Pool2dGeometry& g, int64_t oh, int64_t ow) {
  const int64_t top = oh * g.stride_h - g.pad_top, left = ow * g.stride_w - g.pad_left;
  return {std::max<int64_t>(top, 0), std::min(top + g.kernel_h, g.in_h), std::max<int64_t>(left, 0),
          std::min(left + g.kernel_w, g.in_w)};
}

// The divisor of an average window: the full kernel, clipped to the padded input (the same as
// PyTorch; with floor-mode output sizes it is always kernel_h * kernel_w), or only the inside
// cells.
int64_t window_count(const Pool2dGeometry& g, bool count_include_pad, int64_t oh, int64_t ow) {
  if (count_include_pad) {
    const int64_t top = oh * g.stride_h - g.pad_top, left = ow * g.stride_w - g.pad_left;
    const int64_t bottom = std::min(top + g.kernel_h, g.in_h + g.pad_bottom);
    const int64_t right = std::min(left + g.kernel_w, g.in_w + g.pad_right);
    return (bottom - top) * (right - left);
  }
  const Window win = window_of(g, oh, ow);
  return std::max<int64_t>(0, win.h1 - win.h0) * std::max<int64_t>(0, win.w1 - win.w0);
}

// Channels per task of the scatter-style backward passes.
constexpr int64_t kChannelBlock = 64;

}  // namespace

namespace {

// y = the window maxima and, with argmax non-null, the cell each came from (pool_api.inc). Starts from
// the first inside cell and replaces on strictly greater (the first maximum wins; NaN in the first cell
// stays, a later NaN never wins), in branch-free loops that vectorise.
void max_pool_forward(const Pool2dGeometry& g, const float* x, int64_t ldx, float* y, int64_t ldy,
                      int32_t* argmax) {
  const int64_t out_h = g.out_h(), out_w = g.out_w(), channels = g.channels;
  constexpr float kLowest = -std::numeric_limits<float>::infinity();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < g.batch * out_h; ++row) {  // (image, output row)
    const int64_t n = row / out_h, oh = row % out_h;
    for (int64_t ow = 0; ow < out_w; ++ow) {
      float* out = y + (row * out_w + ow) * ldy;
      int32_t* cells = argmax ? argmax + (row * out_w + ow) * channels : nullptr;
      const Window win = window_of(g, oh, ow);
      if (win.h0 >= win.h1 || win.w0 >= win.w1) {  // only padding: no arg-max
        std::fill(out, out + channels, kLowest);
        if (cells) std::fill(cells, cells + channels, int32_t(-1));
        continue;
      }
      const float* image = x + n * g.in_h * g.in_w * ldx;
      const int32_t first_cell = int32_t(win.h0 * g.in_w + win.w0);
      std::memcpy(out, image + first_cell * ldx, size_t(channels) * sizeof(float));
      if (cells) std::fill(cells, cells + channels, first_cell);
      for (int64_t h = win.h0; h < win.h1; ++h)
        for (int64_t w = win.w0; w < win.w1; ++w) {
          const int32_t cell = int32_t(h * g.in_w + w);
          const float* in = image + cell * ldx;
          if (cells)
            for (int64_t c = 0; c < channels; ++c) {
              const int32_t take = -int32_t(in[c] > out[c]);  // all ones or zero
              cells[c] += (cell - cells[c]) & take;
              out[c] = in[c] > out[c] ? in[c] : out[c];
            }
          else
            for (int64_t c = 0; c < channels; ++c) out[c] = in[c] > out[c] ? in[c] : out[c];
        }
    }
  }
}

// dx (+)= dy at the saved arg-max cells, in (oh, ow) order per image.
void max_pool_backward(const Pool2dGeometry& g, const int32_t* argmax, const float* dy, int64_t ldy,
                       float* dx, int64_t ldx, bool accumulate) {
  const int64_t out_hw = g.out_h() * g.out_w(), channels = g.channels;
  const int64_t blocks = (channels + kChannelBlock - 1) / kChannelBlock;
  // Windows overlap, so a task owns one image and one block of channels and scatters into it alone.
#pragma omp parallel for schedule(static)
  for (int64_t task = 0; task < g.batch * blocks; ++task) {
    const int64_t n = task / blocks, c0 = (task % blocks) * kChannelBlock;
    const int64_t width = std::min(kChannelBlock, channels - c0);
    float* dx_image = dx + n * g.in_h * g.in_w * ldx + c0;
    if (!accumulate)
      for (int64_t p = 0; p < g.in_h * g.in_w; ++p)
        std::memset(dx_image + p * ldx, 0, size_t(width) * sizeof(float));
    for (int64_t o = n * out_hw; o < (n + 1) * out_hw; ++o) {
      const int32_t* cells = argmax + o * channels + c0;
      const float* grad = dy + o * ldy + c0;
      for (int64_t c = 0; c < width; ++c)
        if (cells[c] >= 0) dx_image[cells[c] * ldx + c] += grad[c];
    }
  }
}

}  // namespace

void max_pool2d_forward(const Pool2dGeometry& g, ConstMatrixView x_view, MatrixView y_view) {
  if (any_bf16(x_view, y_view)) return run_widened(&max_pool2d_forward, g, x_view, y_view);
  const auto [x, ldx, y, ldy] = window_forward_operands("max_pool2d_forward", g, x_view, y_view);
  max_pool_forward(g, x, ldx, y, ldy, nullptr);
}

void max_pool2d_forward_argmax(const Pool2dGeometry& g, ConstMatrixView x_view, MatrixView y_view,
                               int32_t* argmax) {
  if (any_bf16(x_view, y_view)) return run_widened(&max_pool2d_forward_argmax, g, x_view, y_view, argmax);
  const auto [x, ldx, y, ldy] = window_forward_operands("max_pool2d_forward_argmax", g, x_view, y_view);
  check_argmax_fits("max_pool2d_forward_argmax", g);
  max_pool_forward(g, x, ldx, y, ldy, argmax);
}

void max_pool2d_backward_argmax(const Pool2dGeometry& g, const int32_t* argmax, ConstMatrixView dy_view,
                                MatrixView dx_view, bool accumulate) {
  if (any_bf16(dy_view, dx_view))
    return run_widened(&max_pool2d_backward_argmax, g, argmax, dy_view, dx_view, accumulate);
  const auto [dy, ldy, dx, ldx] = pool_backward_operands("max_pool2d_backward_argmax", g, dy_view, dx_view);
  max_pool_backward(g, argmax, dy, ldy, dx, ldx, accumulate);
}

void max_pool2d_backward(const Pool2dGeometry& g, ConstMatrixView x_view, ConstMatrixView dy_view,
                         MatrixView dx_view, bool accumulate) {
  if (any_bf16(x_view, dy_view, dx_view)) return run_widened(&max_pool2d_backward, g, x_view, dy_view, dx_view, accumulate);
  const auto [x, ldx, dy, ldy, dx, ldx_grad] =
      max_pool_backward_operands("max_pool2d_backward", g, x_view, dy_view, dx_view);
  check_argmax_fits("max_pool2d_backward", g);
  // The arg-max again (with a scratch y), then the scatter.
  const size_t outputs = size_t(std::max<int64_t>(g.output_rows(), 0) * g.channels);
  std::vector<float> y(outputs);
  std::vector<int32_t> argmax(outputs);
  max_pool_forward(g, x, ldx, y.data(), g.channels, argmax.data());
  max_pool_backward(g, argmax.data(), dy, ldy, dx, ldx_grad, accumulate);
}

void avg_pool2d_forward(const Pool2dGeometry& g, bool count_include_pad, ConstMatrixView x_view,
                        MatrixView y_view) {
  if (any_bf16(x_view, y_view)) return run_widened(&avg_pool2d_forward, g, count_include_pad, x_view, y_view);
  const auto [x, ldx, y, ldy] = window_forward_operands("avg_pool2d_forward", g, x_view, y_view);
  const int64_t out_h = g.out_h(), out_w = g.out_w(), channels = g.channels;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < g.batch * out_h; ++row) {  // (image, output row)
    const int64_t n = row / out_h, oh = row % out_h;
    for (int64_t ow = 0; ow < out_w; ++ow) {
      float* out = y + (row * out_w + ow) * ldy;
      std::fill(out, out + channels, 0.0f);
      const Window win = window_of(g, oh, ow);
      for (int64_t h = win.h0; h < win.h1; ++h)
        for (int64_t w = win.w0; w < win.w1; ++w) {
          const float* in = x + ((n * g.in_h + h) * g.in_w + w) * ldx;
          for (int64_t c = 0; c < channels; ++c) out[c] += in[c];
        }
      const int64_t count = window_count(g, count_include_pad, oh, ow);
      const float scale = count > 0 ? 1.0f / float(count) : 0.0f;
      for (int64_t c = 0; c < channels; ++c) out[c] *= scale;
    }
  }
}

void avg_pool2d_backward(const Pool2dGeometry& g, bool count_include_pad, ConstMatrixView dy_view,
                         MatrixView dx_view, bool accumulate) {
  if (any_bf16(dy_view, dx_view)) return run_widened(&avg_pool2d_backward, g, count_include_pad, dy_view, dx_view, accumulate);
  const auto [dy, ldy, dx, ldx] = pool_backward_operands("avg_pool2d_backward", g, dy_view, dx_view);
  const int64_t out_h = g.out_h(), out_w = g.out_w(), channels = g.channels;
  // Gather: input pixel (h, w) is in the windows of outputs oh in [oh0, oh1], ow in [ow0, ow1] with
  // oh*sh - pad_top <= h < oh*sh - pad_top + kernel_h.
  auto first_window = [](int64_t i, int64_t pad, int64_t kernel, int64_t stride) {
    const int64_t num = i + pad - kernel + 1;  // smallest o with o*stride >= num
    return num <= 0 ? int64_t(0) : (num + stride - 1) / stride;
  };
  std::vector<float> scale(size_t(out_h * out_w));
  for (int64_t oh = 0; oh < out_h; ++oh)
    for (int64_t ow = 0; ow < out_w; ++ow) {
      const int64_t count = window_count(g, count_include_pad, oh, ow);
      scale[size_t(oh * out_w + ow)] = count > 0 ? 1.0f / float(count) : 0.0f;
    }
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < g.batch * g.in_h; ++row) {  // (image, input row)
    const int64_t n = row / g.in_h, h = row % g.in_h;
    const int64_t oh0 = first_window(h, g.pad_top, g.kernel_h, g.stride_h);
    const int64_t oh1 = std::min(out_h - 1, (h + g.pad_top) / g.stride_h);
    for (int64_t w = 0; w < g.in_w; ++w) {
      float* grad_in = dx + (row * g.in_w + w) * ldx;
      if (!accumulate) std::fill(grad_in, grad_in + channels, 0.0f);
      const int64_t ow0 = first_window(w, g.pad_left, g.kernel_w, g.stride_w);
      const int64_t ow1 = std::min(out_w - 1, (w + g.pad_left) / g.stride_w);
      for (int64_t oh = oh0; oh <= oh1; ++oh)
        for (int64_t ow = ow0; ow <= ow1; ++ow) {
          const float s = scale[size_t(oh * out_w + ow)];
          const float* grad = dy + ((n * out_h + oh) * out_w + ow) * ldy;
          for (int64_t c = 0; c < channels; ++c) grad_in[c] += grad[c] * s;
        }
    }
  }
}

void global_avg_pool_forward(int64_t hw, ConstMatrixView x_view, MatrixView y_view) {
  if (any_bf16(x_view, y_view)) return run_widened(&global_avg_pool_forward, hw, x_view, y_view);
  const auto [batch, channels, x, ldx, y, ldy] =
      global_avg_pool_forward_operands("global_avg_pool_forward", hw, x_view, y_view);
  const int64_t blocks = (channels + kChannelBlock - 1) / kChannelBlock;
  const double scale = hw > 0 ? 1.0 / double(hw) : 0.0;
#pragma omp parallel for schedule(static)
  for (int64_t task = 0; task < batch * blocks; ++task) {  // (image, channel block)
    const int64_t n = task / blocks, c0 = (task % blocks) * kChannelBlock;
    const int64_t width = std::min(kChannelBlock, channels - c0);
    double sum[kChannelBlock] = {};
    for (int64_t p = 0; p < hw; ++p) {
      const float* in = x + (n * hw + p) * ldx + c0;
      for (int64_t c = 0; c < width; ++c) sum[c] += in[c];
    }
    for (int64_t c = 0; c < width; ++c) y[n * channels + c0 + c] = float(sum[c] * scale);
  }
}

void global_avg_pool_backward(int64_t hw, ConstMatrixView dy_view, MatrixView dx_view,
                              bool accumulate) {
  if (any_bf16(dy_view, dx_view)) return run_widened(&global_avg_pool_backward, hw, dy_view, dx_view, accumulate);
  const auto [batch, channels, dy, ldy, dx, ldx] =
      global_avg_pool_backward_operands("global_avg_pool_backward", hw, dy_view, dx_view);
  const float scale = hw > 0 ? 1.0f / float(hw) : 0.0f;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < batch * hw; ++row) {  // (image, pixel)
    const float* grad = dy + (row / hw) * channels;
    float* grad_in = dx + row * ldx;
    if (accumulate)
      for (int64_t c = 0; c < channels; ++c) grad_in[c] += grad[c] * scale;
    else
      for (int64_t c = 0; c < channels; ++c) grad_in[c] = grad[c] * scale;
  }
}

}  // namespace kernels::cpu
