// Winograd F(m, r) along one axis for the CPU's stride-1 1xR and Rx1 convolutions (Inception-ResNet-v2's 1x7 and
// 7x1, as F(4, 7)): the Toom-Cook algorithm of Lavin and Gray ("Fast Algorithms for Convolutional Neural
// Networks", 2016) in one dimension. A "tile" is a run of m outputs along the kernel's axis; it reads the
// alpha = m + r - 1 inputs under it (every channel) and
//   y = A^T [ (G g) (.) (B^T d) ]          A^T: m x alpha,  G: alpha x r,  B^T: alpha x alpha
// summed over input channels, so for each of the alpha transformed elements e one GEMM over all tiles:
//   M_e[tile, o] = sum_c V_e[tile, c] * U_e[o, c],   V_e = (B^T d)_e,  U_e = (G g)_e.
// alpha GEMMs of depth in_c replace im2col's one of depth r * in_c over m times the rows: r m / alpha times fewer
// multiply-adds (F(4, 7): 2.8x), plus the transforms.
//
// The matrices are Toom-Cook's, derived at compile time from nine points and infinity (kernels/cpu/toom_cook.h;
// docs/derivations.md, 6b), and the transforms are unrolled products with them that skip their zero entries.
//
// The weight gradient is the forward's adjoint, with the same V:
//   dM = A dY (each tile's m output gradients to alpha values),  dU_e[o, c] = sum_tiles dM_e[tile, o] V_e[tile, c],
//   dg = G^T dU,
// and the stride-1 backward data is the forward of dy with the flipped kernel (conv.cpp, has_transposed_form).
//
// Tiles are cut into chunks fixed by the geometry and every sum runs in a fixed order, so results are the same
// bit for bit for any thread count, as for the 2-D kernels (conv_winograd.cpp). Rounding: on random data
// F(4, 7) is off the exact result by about 2e-6 of the largest output (1e-5 at worst), 20x the im2col GEMM's
// error (docs/derivations.md, 6b).
//
// 1x3 and 3x1 kernels (Inception-ResNet-v2's block8, 8x8 maps at 299 px) stay on im2col: as F(4, 3) they took as
// long as im2col (docs/perf-notes.md, "Winograd along one axis").
#include <algorithm>
#include <cstdint>

#include "kernels/cpu/conv_winograd.h"
#include "kernels/cpu/toom_cook.h"
#include "kernels/cpu/winograd_tiles.h"
#include "kernels/with_flag.h"

namespace kernels::cpu {
namespace {

using winograd::InputTransform;
using winograd::KernelGradientTransform;
using winograd::KernelTransform;
using winograd::multiply;
using winograd::OutputGradientTransform;
using winograd::OutputTransform;

// The tiles of a 1xR (along w) or Rx1 (along h) convolution, runs of M outputs along the axis, numbered so that
// neighbouring tiles read neighbouring pixels: along w, tile = (n * out_h + oh) * per_line + t; along h,
// tile = ((n * per_line) + t) * width + ow.
template <int M>
struct Tiling1d {
  bool along_w;
  int64_t pad, in_len, out_len, width, in_h, out_h, per_line, total;

  explicit Tiling1d(const Conv2dGeometry& g)
      : along_w(g.kernel_h == 1),
        pad(along_w ? g.pad_left : g.pad_top),
        in_len(along_w ? g.in_w : g.in_h),
        out_len(along_w ? g.out_w() : g.out_h()),
        width(g.in_w),
        in_h(g.in_h),
        out_h(g.out_h()),
        per_line((out_len + M - 1) / M),
        total(g.batch * (along_w ? g.out_h() : g.out_w()) * per_line) {}

  // Tile `tile`: the input and output pixel rows of its line's first pixel, the step between neighbours along
  // the axis, and the position of its first output along the axis.
  struct Place {
    int64_t in_base, out_base, step, first;
  };
  Place place(int64_t tile) const {
    if (along_w) {
      const int64_t line = tile / per_line;  // n * out_h + oh; in_h == out_h (kernel height 1, no padding)
      return {line * in_len, line * out_len, 1, (tile % per_line) * M};
    }
    const int64_t ow = tile % width, rest = tile / width, n = rest / per_line;
    return {n * in_h * width + ow, n * out_h * width + ow, width, (rest % per_line) * M};
  }
};

// F(M, R) along one axis: the transforms of winograd_tiles.h's drivers (run_forward, run_backward_filter).
template <int M, int R>
struct Winograd1d {
  static constexpr int64_t kElements = M + R - 1;
  static constexpr int64_t kTaps = R;
  using Tiling = Tiling1d<M>;

  // u[e][o][c] = (G g)[e] for each kernel g = w[o, k, c] (1xR and Rx1 kernels have the same OHWI layout).
  static void transform_weights(const Conv2dGeometry& g, const float* w, float* u) {
    constexpr int A = M + R - 1;
    const int64_t channels = g.in_c, plane = g.out_c * channels;
#pragma omp parallel for schedule(static) num_threads(winograd::threads())
    for (int64_t o = 0; o < g.out_c; ++o) {
      const float* kernel = w + o * R * channels;
      float* out = u + o * channels;
      ENGINE_IVDEP
      for (int64_t c = 0; c < channels; ++c) {
        float taps[R];
#pragma GCC unroll 16
        for (int k = 0; k < R; ++k) taps[k] = kernel[k * channels + c];
        multiply<KernelTransform<M, R>, A, R>(taps, 1, out + c, plane);
      }
    }
  }

  // dw (+)= G^T du for du = the sum over the parts of du_part[e][o][c], added in part order into part 0.
  static void transform_weight_gradient(const Conv2dGeometry& g, float* du, int64_t parts, float* dw,
                                        bool accumulate) {
    constexpr int A = M + R - 1;
    const int64_t channels = g.in_c, plane = g.out_c * channels, part_stride = A * plane;
#pragma omp parallel for schedule(static) num_threads(winograd::threads())
    for (int64_t o = 0; o < g.out_c; ++o) {
      float* in = du + o * channels;
      winograd::add_parts(in, parts, A, plane, part_stride, channels);
      float* out = dw + o * R * channels;
      // One loop for each of overwrite and accumulate (a select inside keeps GCC from vectorising it).
      const auto transform = [&](auto accumulate_tag) {
        constexpr bool kAccumulate = decltype(accumulate_tag)::value;
        ENGINE_IVDEP
        for (int64_t c = 0; c < channels; ++c) {
          float sums[A], gradient[R];
#pragma GCC unroll 16
          for (int e = 0; e < A; ++e) sums[e] = in[e * plane + c];
          multiply<KernelGradientTransform<M, R>, R, A>(sums, 1, gradient, 1);
#pragma GCC unroll 16
          for (int k = 0; k < R; ++k) {
            if constexpr (kAccumulate)
              out[k * channels + c] += gradient[k];
            else
              out[k * channels + c] = gradient[k];
          }
        }
      };
      with_flag(accumulate, transform);
    }
  }

  // out[e * plane + c] = (Matrix [rows[0][c], ..., rows[Cols - 1][c]])[e], e < Rows, for every channel c: one
  // tile's gathered rows through a transform (the input's B^T, the output gradient's A), channels vectorised.
  template <typename Matrix, int Rows, int Cols>
  static void transform_gathered(const float* const (&rows)[Cols], int64_t channels, float* out, int64_t plane) {
    ENGINE_IVDEP
    for (int64_t c = 0; c < channels; ++c) {
      float in[Cols];
#pragma GCC unroll 16
      for (int i = 0; i < Cols; ++i) in[i] = rows[i][c];
      multiply<Matrix, Rows, Cols>(in, 1, out + c, plane);
    }
  }

  // v[e][r][c] = (B^T d)[e] for the alpha inputs d under tile first + r, r < count (cells outside x read as
  // zero).
  static void transform_input(const Conv2dGeometry& g, const Tiling& t, const float* x, int64_t ldx,
                              int64_t first, int64_t count, float* v) {
    constexpr int A = M + R - 1;
    const int64_t channels = g.in_c, plane = count * channels;
    const float* zero = winograd::zeros(channels);
    for (int64_t r = 0; r < count; ++r) {
      const typename Tiling::Place p = t.place(first + r);
      const float* d[A];
      for (int i = 0; i < A; ++i) {
        const int64_t pos = p.first - t.pad + i;
        d[i] = pos >= 0 && pos < t.in_len ? x + (p.in_base + pos * p.step) * ldx : zero;
      }
      transform_gathered<InputTransform<M, R>, A, A>(d, channels, v + r * channels, plane);
    }
  }

  // y (+)= A^T m (+ bias) for the tiles [first, first + count), m[e][r][o]; outputs past the end of a line are
  // not written.
  static void transform_output(const Conv2dGeometry& g, const Tiling& t, const float* m, int64_t first,
                               int64_t count, const float* bias, float* y, int64_t ldy, bool accumulate) {
    constexpr int A = M + R - 1;
    constexpr int64_t kBlock = 64;  // channels per pass: the tile's M outputs of a block stay in L1
    const int64_t channels = g.out_c, plane = count * channels;
    const float* b = bias != nullptr ? bias : winograd::zeros(channels);
    for (int64_t r = 0; r < count; ++r) {
      const typename Tiling::Place p = t.place(first + r);
      const float* in = m + r * channels;
      float out[M * kBlock];  // [i][c]
      for (int64_t c0 = 0; c0 < channels; c0 += kBlock) {
        const int64_t width = std::min(kBlock, channels - c0);
        ENGINE_IVDEP
        for (int64_t c = 0; c < width; ++c) {
          float products[A];
#pragma GCC unroll 16
          for (int e = 0; e < A; ++e) products[e] = in[e * plane + c0 + c];
          multiply<OutputTransform<M, R>, M, A>(products, 1, out + c, kBlock);
        }
        for (int i = 0; i < M && p.first + i < t.out_len; ++i)
          winograd::write_outputs(y + (p.out_base + (p.first + i) * p.step) * ldy + c0, out + i * kBlock, b + c0, width,
                                  accumulate);
      }
    }
  }

  // dm[e][r][o] = (A dY)[e] for the M output gradients dY of tile first + r (zero past the end of a line).
  static void transform_output_gradient(const Conv2dGeometry& g, const Tiling& t, const float* dy, int64_t ldy,
                                        int64_t first, int64_t count, float* dm) {
    constexpr int A = M + R - 1;
    const int64_t channels = g.out_c, plane = count * channels;
    const float* zero = winograd::zeros(channels);
    for (int64_t r = 0; r < count; ++r) {
      const typename Tiling::Place p = t.place(first + r);
      const float* q[M];
      for (int i = 0; i < M; ++i)
        q[i] = p.first + i < t.out_len ? dy + (p.out_base + (p.first + i) * p.step) * ldy : zero;
      transform_gathered<OutputGradientTransform<M, R>, A, M>(q, channels, dm + r * channels, plane);
    }
  }
};

// Shorter lines stay on im2col: F(4, 7) on a line of 5 computes 8 outputs.
constexpr int64_t kMinOutputLength = 8;
constexpr int kKernelLength = 7;
constexpr int kTileOutputs = 4;

}  // namespace

bool winograd_1d_applies(const Conv2dGeometry& g) {
  const bool along_w = g.kernel_h == 1 && g.pad_top == 0 && g.pad_bottom == 0;
  const bool along_h = g.kernel_w == 1 && g.pad_left == 0 && g.pad_right == 0;
  if (along_w == along_h) return false;
  const int64_t r = along_w ? g.kernel_w : g.kernel_h;
  const int64_t pad_before = along_w ? g.pad_left : g.pad_top, pad_after = along_w ? g.pad_right : g.pad_bottom;
  const int64_t out_len = along_w ? g.out_w() : g.out_h();
  return r == kKernelLength && g.stride_h == 1 && g.stride_w == 1 && pad_before >= 0 && pad_before <= r - 1 &&
         pad_after >= 0 && pad_after <= r - 1 && g.in_c >= 16 && g.out_c >= 16 && out_len >= kMinOutputLength &&
         winograd_enabled();
}

void winograd_1d_forward(const Conv2dGeometry& g, const float* x, int64_t ldx, const float* w, const float* bias,
                         float* y, int64_t ldy, bool accumulate) {
  winograd::run_forward<Winograd1d<kTileOutputs, kKernelLength>>(g, x, ldx, w, bias, y, ldy, accumulate);
}

void winograd_1d_backward_filter(const Conv2dGeometry& g, const float* x, int64_t ldx, const float* dy, int64_t ldy,
                                 float* dw, bool accumulate) {
  winograd::run_backward_filter<Winograd1d<kTileOutputs, kKernelLength>>(g, x, ldx, dy, ldy, dw, accumulate);
}

}  // namespace kernels::cpu
