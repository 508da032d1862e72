// Winograd F(2x2, 3x3) convolutions on the CPU (Lavin and Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016): each m x m block of outputs (a "tile") from the alpha x alpha block of inputs under it,
// alpha = m + 2,
//   Y = A^T [ U (.) V ] A,   U = G g G^T (the 3x3 kernel),  V = B^T d B (the input block),
// summed over input channels, with the 1-D matrices of F(m, 3) (kernels/cpu/toom_cook.h derives them from the
// points 0, 1, -1 and infinity; for m = 2
//   B^T = | 1  0 -1  0 |    G = | 1    0    0  |    A^T = | 1  1  1  0 |
//         | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1  1 |
//         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
//         | 0 -1  0  1 |        | 0    0    1  |
// Lavin and Gray's, with the last row of B^T and column of A^T negated), for the cross-correlation
// y[i] = sum_k d[i + k] g[k] of every framework. For each
// of the alpha^2 elements e of the transformed tile, the channel sum is one GEMM over all tiles:
//   M_e[tile, o] = sum_c V_e[tile, c] * U_e[o, c]
// so a convolution costs alpha^2 GEMMs of k = in_c instead of one of k = 9 * in_c over m^2 times the rows:
// 9 m^2 / alpha^2 times fewer multiply-adds, 2.25x for F(2x2, 3x3), plus the transforms.
//
// The weight gradient is the adjoint of the forward (the same V):
//   dM = A dY A^T (each tile's m x m output gradient to alpha x alpha),
//   dU_e[o, c] = sum_tiles dM_e[tile, o] V_e[tile, c],   dg = G^T dU G,
// again alpha^2 GEMMs, reducing over the tiles. The backward data of a stride-1 convolution is the forward of
// dy with the flipped kernel (conv.cpp, has_transposed_form), so it runs winograd_forward too.
//
// Tiles are taken in chunks fixed by the geometry (never by the thread count), each chunk's transformed
// inputs and GEMM results in the working thread's own buffers (about its L2), and every sum runs in a
// fixed order: results are the same bit for bit for any number of threads, as for the im2col kernels.
// Rounding: F(2x2, 3x3)'s transforms add, subtract and halve, and its results differ from the im2col GEMM's by a
// few float ulps of the inputs' magnitudes (tests/cpu/test_kernels_conv.cpp bounds them against a double
// reference).
//
// The code is written for any m; m = 2 is what runs. F(4x4, 3x3) (4x fewer multiply-adds) took 3% off
// Inception-ResNet-v2's training step but rounds about as F(4, 7) does, and through the stem's large maps put the
// Inception-ResNet-v2 parity tests past their tolerances (docs/perf-notes.md, "F(4x4, 3x3), tried").
#include "kernels/cpu/conv_winograd.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/toom_cook.h"
#include "kernels/cpu/winograd_tiles.h"
#include "kernels/with_flag.h"

namespace kernels::cpu {
namespace {

// Smaller maps stay on im2col: DenseNet-201's 7x7 block took 1.3-2.3x longer in Winograd (a quarter of
// its tiles cover the padding), its 14x14 block 0.7-1.0x the time (docs/perf-notes.md, "Winograd").
constexpr int64_t kMinOutputSide = 10;
// The tile's side: F(2x2, 3x3). Another value (3 or 4) runs F(3x3, 3x3) or F(4x4, 3x3) with no other change;
// both round worse (see the top of the file).
constexpr int kTileSide = 2;

using winograd::InputTransform;
using winograd::KernelGradientTransform;
using winograd::KernelTransform;
using winograd::multiply;
using winograd::OutputGradientTransform;
using winograd::OutputTransform;

// The tiles of a convolution: m x m output blocks, ceil(out_h / m) x ceil(out_w / m) per image.
template <int M>
struct Tiling2d {
  int64_t rows, cols, per_image, total;
  explicit Tiling2d(const Conv2dGeometry& g)
      : rows((g.out_h() + M - 1) / M),
        cols((g.out_w() + M - 1) / M),
        per_image(rows * cols),
        total(g.batch * per_image) {}
};

// F(M x M, 3 x 3): the transforms of winograd_tiles.h's drivers (run_forward, run_backward_filter).
template <int M>
struct Winograd2d {
  static constexpr int kAlpha = M + 2;
  static constexpr int64_t kElements = kAlpha * kAlpha;
  static constexpr int64_t kTaps = 9;
  using Tiling = Tiling2d<M>;

  // u[e][o][c] = (G g G^T)[e] for each kernel g = w[o, :, :, c].
  static void transform_weights(const Conv2dGeometry& g, const float* w, float* u) {
    constexpr int A = kAlpha;
    const int64_t channels = g.in_c, plane = g.out_c * channels;
#pragma omp parallel for schedule(static) num_threads(winograd::threads())
    for (int64_t o = 0; o < g.out_c; ++o) {
      const float* kernel = w + o * 9 * channels;
      float* out = u + o * channels;
      ENGINE_IVDEP
      for (int64_t c = 0; c < channels; ++c) {
        float taps[9], columns[A * 3];  // row-major 3 x 3 and A x 3
#pragma GCC unroll 16
        for (int k = 0; k < 9; ++k) taps[k] = kernel[k * channels + c];
#pragma GCC unroll 16
        for (int j = 0; j < 3; ++j)  // G g, column by column
          multiply<KernelTransform<M, 3>, A, 3>(taps + j, 3, columns + j, 3);
#pragma GCC unroll 16
        for (int i = 0; i < A; ++i)  // (G g) G^T, row by row
          multiply<KernelTransform<M, 3>, A, 3>(columns + i * 3, 1, out + i * A * plane + c, plane);
      }
    }
  }

  // dw (+)= G^T du G for du = the sum over the parts of du_part[e][o][c], added in part order into part 0.
  static void transform_weight_gradient(const Conv2dGeometry& g, float* du, int64_t parts, float* dw,
                                        bool accumulate) {
    constexpr int A = kAlpha;
    const int64_t channels = g.in_c, plane = g.out_c * channels, part_stride = kElements * plane;
#pragma omp parallel for schedule(static) num_threads(winograd::threads())
    for (int64_t o = 0; o < g.out_c; ++o) {
      float* in = du + o * channels;
      winograd::add_parts(in, parts, kElements, plane, part_stride, channels);
      float* out = dw + o * 9 * channels;
      // One loop for each of overwrite and accumulate (a select inside keeps GCC from vectorising it).
      const auto transform = [&](auto accumulate_tag) {
        constexpr bool kAccumulate = decltype(accumulate_tag)::value;
        ENGINE_IVDEP
        for (int64_t c = 0; c < channels; ++c) {
          float d[A * A], rows[3 * A], r[9];  // row-major A x A, 3 x A, 3 x 3
#pragma GCC unroll 64
          for (int e = 0; e < A * A; ++e) d[e] = in[e * plane + c];
#pragma GCC unroll 16
          for (int j = 0; j < A; ++j)  // G^T dU, column by column
            multiply<KernelGradientTransform<M, 3>, 3, A>(d + j, A, rows + j, A);
#pragma GCC unroll 16
          for (int i = 0; i < 3; ++i)  // (G^T dU) G, row by row
            multiply<KernelGradientTransform<M, 3>, 3, A>(rows + i * A, 1, r + i * 3, 1);
#pragma GCC unroll 16
          for (int k = 0; k < 9; ++k) {
            if constexpr (kAccumulate)
              out[k * channels + c] += r[k];
            else
              out[k * channels + c] = r[k];
          }
        }
      };
      with_flag(accumulate, transform);
    }
  }

  // v[e][r][c] = (B^T d B)[e] for the input block d under tile first + r, r < count (cells outside x read as
  // zero).
  static void transform_input(const Conv2dGeometry& g, const Tiling& t, const float* x, int64_t ldx, int64_t first,
                              int64_t count, float* v) {
    constexpr int A = kAlpha;
    const int64_t channels = g.in_c, plane = count * channels;
    const float* zero = winograd::zeros(channels);
    for (int64_t r = 0; r < count; ++r) {
      const int64_t tile = first + r, n = tile / t.per_image;
      const int64_t ih0 = M * ((tile % t.per_image) / t.cols) - g.pad_top;
      const int64_t iw0 = M * (tile % t.cols) - g.pad_left;
      const float* d[A][A];
      for (int i = 0; i < A; ++i)
        for (int j = 0; j < A; ++j) {
          const int64_t ih = ih0 + i, iw = iw0 + j;
          const bool inside = ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w;
          d[i][j] = inside ? x + ((n * g.in_h + ih) * g.in_w + iw) * ldx : zero;
        }
      float* out = v + r * channels;
      ENGINE_IVDEP
      for (int64_t c = 0; c < channels; ++c) {
        float block[A * A], columns[A * A];  // row-major A x A
#pragma GCC unroll 64
        for (int e = 0; e < A * A; ++e) block[e] = d[e / A][e % A][c];
#pragma GCC unroll 16
        for (int j = 0; j < A; ++j)  // B^T d, column by column
          multiply<InputTransform<M, 3>, A, A>(block + j, A, columns + j, A);
#pragma GCC unroll 16
        for (int i = 0; i < A; ++i)  // (B^T d) B, row by row
          multiply<InputTransform<M, 3>, A, A>(columns + i * A, 1, out + i * A * plane + c, plane);
      }
    }
  }

  // The output pixels of tile `tile`: rows of y (or dy) for its m x m block, not present where the block runs
  // past the output.
  struct TileOutputs {
    int64_t rows[M][M];
    bool present[M][M];
  };

  static TileOutputs tile_outputs(const Conv2dGeometry& g, const Tiling& t, int64_t tile) {
    const int64_t out_h = g.out_h(), out_w = g.out_w(), n = tile / t.per_image;
    const int64_t oh0 = M * ((tile % t.per_image) / t.cols), ow0 = M * (tile % t.cols);
    TileOutputs o{};
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < M; ++j) {
        o.present[i][j] = oh0 + i < out_h && ow0 + j < out_w;
        o.rows[i][j] = (n * out_h + oh0 + i) * out_w + ow0 + j;
      }
    return o;
  }

  // y (+)= A^T m A (+ bias) for the tiles [first, first + count), m[e][r][o].
  static void transform_output(const Conv2dGeometry& g, const Tiling& t, const float* m, int64_t first,
                               int64_t count, const float* bias, float* y, int64_t ldy, bool accumulate) {
    constexpr int A = kAlpha;
    constexpr int64_t kBlock = 64;  // channels per pass: the tile's outputs of a block stay in L1
    const int64_t channels = g.out_c, plane = count * channels;
    const float* b = bias != nullptr ? bias : winograd::zeros(channels);
    for (int64_t r = 0; r < count; ++r) {
      const TileOutputs to = tile_outputs(g, t, first + r);
      const float* in = m + r * channels;
      float out[M * M * kBlock];  // [i][j][c]
      for (int64_t c0 = 0; c0 < channels; c0 += kBlock) {
        const int64_t width = std::min(kBlock, channels - c0);
        ENGINE_IVDEP
        for (int64_t c = 0; c < width; ++c) {
          float products[A * A], rows[M * A];  // row-major A x A, M x A
#pragma GCC unroll 64
          for (int e = 0; e < A * A; ++e) products[e] = in[e * plane + c0 + c];
#pragma GCC unroll 16
          for (int j = 0; j < A; ++j)  // A^T m, column by column
            multiply<OutputTransform<M, 3>, M, A>(products + j, A, rows + j, A);
#pragma GCC unroll 16
          for (int i = 0; i < M; ++i)  // (A^T m) A, row by row
            multiply<OutputTransform<M, 3>, M, A>(rows + i * A, 1, out + i * M * kBlock + c, kBlock);
        }
        for (int i = 0; i < M; ++i)
          for (int j = 0; j < M; ++j)
            if (to.present[i][j])
              winograd::write_outputs(y + to.rows[i][j] * ldy + c0, out + (i * M + j) * kBlock, b + c0, width,
                                      accumulate);
      }
    }
  }

  // dm[e][r][o] = (A dY A^T)[e] for the output gradient dY (m x m, zero past the output) of tile first + r.
  static void transform_output_gradient(const Conv2dGeometry& g, const Tiling& t, const float* dy, int64_t ldy,
                                        int64_t first, int64_t count, float* dm) {
    constexpr int A = kAlpha;
    const int64_t channels = g.out_c, plane = count * channels;
    const float* zero = winograd::zeros(channels);
    for (int64_t r = 0; r < count; ++r) {
      const TileOutputs to = tile_outputs(g, t, first + r);
      const float* q[M][M];
      for (int i = 0; i < M; ++i)
        for (int j = 0; j < M; ++j) q[i][j] = to.present[i][j] ? dy + to.rows[i][j] * ldy : zero;
      float* out = dm + r * channels;
      ENGINE_IVDEP
      for (int64_t c = 0; c < channels; ++c) {
        float gradient[M * M], columns[A * M];  // row-major M x M, A x M
#pragma GCC unroll 64
        for (int e = 0; e < M * M; ++e) gradient[e] = q[e / M][e % M][c];
#pragma GCC unroll 16
        for (int j = 0; j < M; ++j)  // A dY, column by column
          multiply<OutputGradientTransform<M, 3>, A, M>(gradient + j, M, columns + j, M);
#pragma GCC unroll 16
        for (int i = 0; i < A; ++i)  // (A dY) A^T, row by row
          multiply<OutputGradientTransform<M, 3>, A, M>(columns + i * M, 1, out + i * A * plane + c, plane);
      }
    }
  }
};

std::atomic<bool>& winograd_switch() {
  static std::atomic<bool> enabled{[] {
    const char* value = std::getenv("ENGINE_WINOGRAD");
    return value == nullptr || std::strcmp(value, "0") != 0;
  }()};
  return enabled;
}

}  // namespace

void set_winograd_enabled(bool enabled) { winograd_switch().store(enabled); }
bool winograd_enabled() { return winograd_switch().load(); }

bool winograd_applies(const Conv2dGeometry& g) {
  auto pad_ok = [](int64_t pad) { return pad >= 0 && pad <= 2; };
  return g.kernel_h == 3 && g.kernel_w == 3 && g.stride_h == 1 && g.stride_w == 1 && pad_ok(g.pad_top) &&
         pad_ok(g.pad_bottom) && pad_ok(g.pad_left) && pad_ok(g.pad_right) && g.in_c >= 16 && g.out_c >= 16 &&
         g.out_h() >= kMinOutputSide && g.out_w() >= kMinOutputSide && winograd_enabled();
}

void winograd_forward(const Conv2dGeometry& g, const float* x, int64_t ldx, const float* w, const float* bias,
                      float* y, int64_t ldy, bool accumulate) {
  winograd::run_forward<Winograd2d<kTileSide>>(g, x, ldx, w, bias, y, ldy, accumulate);
}

void winograd_backward_filter(const Conv2dGeometry& g, const float* x, int64_t ldx, const float* dy, int64_t ldy,
                              float* dw, bool accumulate) {
  winograd::run_backward_filter<Winograd2d<kTileSide>>(g, x, ldx, dy, ldy, dw, accumulate);
}

}  // namespace kernels::cpu
