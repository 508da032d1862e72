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
// The matrices come from alpha - 1 finite points p_j and infinity (make_transform, at compile time):
//   A^T[i][j] = p_j^i,   G[j][k] = p_j^k / s_j,   B^T = diag(s) E^-T,
// where E maps the alpha coefficients of a polynomial of degree alpha - 1 to its values at the points and to its
// leading coefficient (infinity's row and column: A^T and G pick the last coefficient), and s_j scales row j of
// B^T to the smallest integers, exact in float; s moves into G. docs/derivations.md (6b) derives it.
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
#include <utility>
#include <vector>

#include "kernels/cpu/conv_winograd.h"
#include "kernels/cpu/winograd_tiles.h"
#include "kernels/cpu/workspace.h"
#include "kernels/gemm.h"
#include "kernels/with_flag.h"

namespace kernels::cpu {
namespace {

// The finite points, in the order they are taken: each adds one to alpha. Small magnitudes and their halves
// keep the transforms well conditioned (0, +-1, +-2, +-1/2 are those of F(6, 3) in the literature; F(4, 7)
// takes all nine).
constexpr double kPoints[] = {0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1.5, -1.5};
constexpr int kMaxPoints = int(sizeof kPoints / sizeof kPoints[0]);

// The matrices of F(M, R), derived in double and stored in float: the input and output transforms exactly
// (integers and powers of the points), the kernel transform rounded once.
template <int M, int R>
struct Transform {
  float at[M][M + R - 1] = {};
  float bt[M + R - 1][M + R - 1] = {};
  float g[M + R - 1][R] = {};
};

constexpr double abs_value(double v) { return v < 0 ? -v : v; }
constexpr double nearest_integer(double v) { return double(static_cast<long long>(v < 0 ? v - 0.5 : v + 0.5)); }
constexpr double power(double base, int exponent) {
  double result = 1.0;
  for (int i = 0; i < exponent; ++i) result *= base;
  return result;
}
// Row j of the evaluation at the points (j < alpha - 1) and at infinity (j = alpha - 1, the leading
// coefficient): the value of the monomial x^k there, for polynomials of degree `degree`.
constexpr double evaluation(int j, int k, int alpha, int degree) {
  return j < alpha - 1 ? power(kPoints[j], k) : (k == degree ? 1.0 : 0.0);
}

template <int M, int R>
constexpr Transform<M, R> make_transform() {
  constexpr int A = M + R - 1;
  static_assert(A - 1 <= kMaxPoints, "not enough points for this F(m, r)");
  Transform<M, R> t{};
  // [E | I] -> [I | E^-1] by Gauss-Jordan elimination with partial pivoting, in double.
  double e[A][2 * A] = {};
  for (int j = 0; j < A; ++j) {
    for (int l = 0; l < A; ++l) e[j][l] = evaluation(j, l, A, A - 1);
    e[j][A + j] = 1.0;
  }
  for (int col = 0; col < A; ++col) {
    int pivot = col;
    for (int row = col + 1; row < A; ++row)
      if (abs_value(e[row][col]) > abs_value(e[pivot][col])) pivot = row;
    for (int l = 0; l < 2 * A; ++l) {
      const double swap = e[col][l];
      e[col][l] = e[pivot][l];
      e[pivot][l] = swap;
    }
    const double inverse = 1.0 / e[col][col];
    for (int l = 0; l < 2 * A; ++l) e[col][l] *= inverse;
    for (int row = 0; row < A; ++row) {
      if (row == col) continue;
      const double factor = e[row][col];
      for (int l = 0; l < 2 * A; ++l) e[row][l] -= factor * e[col][l];
    }
  }
  for (int j = 0; j < A; ++j) {
    // Row j of B^T = column j of E^-1, scaled by s_j to the least integers: divided by its smallest entry,
    // then multiplied by the least k that makes every entry whole.
    double smallest = 0.0;
    for (int i = 0; i < A; ++i) {
      const double v = abs_value(e[i][A + j]);
      if (v > 1e-9 && (smallest == 0.0 || v < smallest)) smallest = v;
    }
    double scale = 0.0;
    for (int k = 1; k <= 4096 && scale == 0.0; ++k) {
      bool whole = true;
      for (int i = 0; i < A; ++i) {
        const double v = e[i][A + j] / smallest * k;
        if (abs_value(v - nearest_integer(v)) > 1e-6 * (1.0 + abs_value(v))) whole = false;
      }
      if (whole) scale = k / smallest;
    }
    if (scale == 0.0) throw "make_transform: a row of B^T has no small integer multiple";  // a compile error
    for (int i = 0; i < A; ++i) t.bt[j][i] = float(nearest_integer(e[i][A + j] * scale));
    for (int k = 0; k < R; ++k) t.g[j][k] = float(evaluation(j, k, A, R - 1) / scale);
  }
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < A; ++j) t.at[i][j] = float(evaluation(j, i, A, M - 1));
  return t;
}

template <int M, int R>
constexpr Transform<M, R> kTransform = make_transform<M, R>();

// The five products the kernels need, as compile-time matrices: at(row, col) is a constant expression.
template <int M, int R>
struct InputTransform {  // B^T, alpha x alpha: v = B^T d
  static constexpr float at(int e, int i) { return kTransform<M, R>.bt[e][i]; }
};
template <int M, int R>
struct OutputTransform {  // A^T, M x alpha: y = A^T m
  static constexpr float at(int i, int e) { return kTransform<M, R>.at[i][e]; }
};
template <int M, int R>
struct OutputGradientTransform {  // A, alpha x M: dm = A dy
  static constexpr float at(int e, int i) { return kTransform<M, R>.at[i][e]; }
};
template <int M, int R>
struct KernelTransform {  // G, alpha x R: u = G g
  static constexpr float at(int e, int k) { return kTransform<M, R>.g[e][k]; }
};
template <int M, int R>
struct KernelGradientTransform {  // G^T, R x alpha: dg = G^T du
  static constexpr float at(int k, int e) { return kTransform<M, R>.g[e][k]; }
};

// sum_i Matrix::at(Row, i) * in[i], unrolled at compile time: zero entries skipped, the rest added in index
// order (the ones fold away). Straight-line code, which GCC vectorises across the caller's channel loop.
template <typename Matrix, int Row, int... I>
inline float row_times(const float* in, std::integer_sequence<int, I...>) {
  float sum = 0.0f;
  (
      [&] {
        if constexpr (Matrix::at(Row, I) != 0.0f) sum += Matrix::at(Row, I) * in[I];
      }(),
      ...);
  return sum;
}

template <typename Matrix, int... Row, int... I>
inline void matrix_times(const float* in, float* out, int64_t stride, std::integer_sequence<int, Row...>,
                         std::integer_sequence<int, I...> columns) {
  ((out[Row * stride] = row_times<Matrix, Row>(in, columns)), ...);
}

// out[j * stride] = sum_i Matrix::at(j, i) * in[i] for j < Rows, i < Cols.
template <typename Matrix, int Rows, int Cols>
inline void multiply(const float* in, float* out, int64_t stride) {
  matrix_times<Matrix>(in, out, stride, std::make_integer_sequence<int, Rows>{},
                       std::make_integer_sequence<int, Cols>{});
}

// The tiles of a 1xR (along w) or Rx1 (along h) convolution, runs of m outputs along the axis, numbered so that
// neighbouring tiles read neighbouring pixels: along w, tile = (n * out_h + oh) * per_line + t; along h,
// tile = ((n * per_line) + t) * width + ow.
struct Tiling1d {
  bool along_w;
  int64_t m, pad, in_len, out_len, width, in_h, out_h, per_line, total;

  Tiling1d(const Conv2dGeometry& g, int64_t outputs_per_tile)
      : along_w(g.kernel_h == 1),
        m(outputs_per_tile),
        pad(along_w ? g.pad_left : g.pad_top),
        in_len(along_w ? g.in_w : g.in_h),
        out_len(along_w ? g.out_w() : g.out_h()),
        width(g.in_w),
        in_h(g.in_h),
        out_h(g.out_h()),
        per_line((out_len + m - 1) / m),
        total(g.batch * (along_w ? g.out_h() : g.out_w()) * per_line) {}

  // Tile `tile`: the input and output pixel rows of its line's first pixel, the step between neighbours along
  // the axis, and the position of its first output along the axis.
  struct Place {
    int64_t in_base, out_base, step, first;
  };
  Place place(int64_t tile) const {
    if (along_w) {
      const int64_t line = tile / per_line;  // n * out_h + oh; in_h == out_h (kernel height 1, no padding)
      return {line * in_len, line * out_len, 1, (tile % per_line) * m};
    }
    const int64_t ow = tile % width, rest = tile / width, n = rest / per_line;
    return {n * in_h * width + ow, n * out_h * width + ow, width, (rest % per_line) * m};
  }
};

// u[e][o][c] = (G g)[e] for each kernel g = w[o, k, c] (1xR and Rx1 kernels have the same OHWI layout).
template <int M, int R>
void transform_weights(const Conv2dGeometry& g, const float* w, float* u) {
  constexpr int A = M + R - 1;
  const int64_t channels = g.in_c, plane = g.out_c * channels;
#pragma omp parallel for schedule(static) num_threads(winograd::threads())
  for (int64_t o = 0; o < g.out_c; ++o) {
    const float* kernel = w + o * R * channels;
    float* out = u + o * channels;
#pragma GCC ivdep
    for (int64_t c = 0; c < channels; ++c) {
      float taps[R];
#pragma GCC unroll 16
      for (int k = 0; k < R; ++k) taps[k] = kernel[k * channels + c];
      multiply<KernelTransform<M, R>, A, R>(taps, out + c, plane);
    }
  }
}

// dw (+)= G^T du for du = the sum over the parts of du_part[e][o][c], added in part order into part 0.
template <int M, int R>
void transform_weight_gradient(const Conv2dGeometry& g, float* du, int64_t parts, float* dw, bool accumulate) {
  constexpr int A = M + R - 1;
  const int64_t channels = g.in_c, plane = g.out_c * channels, part_stride = A * plane;
#pragma omp parallel for schedule(static) num_threads(winograd::threads())
  for (int64_t o = 0; o < g.out_c; ++o) {
    float* in = du + o * channels;
    for (int64_t p = 1; p < parts; ++p)
      for (int e = 0; e < A; ++e) {
        float* total = in + e * plane;
        const float* part = total + p * part_stride;
#pragma omp simd
        for (int64_t c = 0; c < channels; ++c) total[c] += part[c];
      }
    float* out = dw + o * R * channels;
    // One loop for each of overwrite and accumulate (a select inside keeps GCC from vectorising it).
    const auto transform = [&](auto accumulate_tag) {
      constexpr bool kAccumulate = decltype(accumulate_tag)::value;
#pragma GCC ivdep
      for (int64_t c = 0; c < channels; ++c) {
        float sums[A], gradient[R];
#pragma GCC unroll 16
        for (int e = 0; e < A; ++e) sums[e] = in[e * plane + c];
        multiply<KernelGradientTransform<M, R>, R, A>(sums, gradient, 1);
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

// v[e][r][c] = (B^T d)[e] for the alpha inputs d under tile first + r, r < count (cells outside x read as
// zero).
template <int M, int R>
void transform_input(const Conv2dGeometry& g, const Tiling1d& t, const float* x, int64_t ldx, int64_t first,
                     int64_t count, float* v) {
  constexpr int A = M + R - 1;
  const int64_t channels = g.in_c, plane = count * channels;
  const float* zero = winograd::zeros(channels);
  for (int64_t r = 0; r < count; ++r) {
    const Tiling1d::Place p = t.place(first + r);
    const float* d[A];
    for (int i = 0; i < A; ++i) {
      const int64_t pos = p.first - t.pad + i;
      d[i] = pos >= 0 && pos < t.in_len ? x + (p.in_base + pos * p.step) * ldx : zero;
    }
    float* out = v + r * channels;
#pragma GCC ivdep
    for (int64_t c = 0; c < channels; ++c) {
      float in[A];
#pragma GCC unroll 16
      for (int i = 0; i < A; ++i) in[i] = d[i][c];
      multiply<InputTransform<M, R>, A, A>(in, out + c, plane);
    }
  }
}

// y (+)= A^T m (+ bias) for the tiles [first, first + count), m[e][r][o]; outputs past the end of a line are
// not written.
template <int M, int R>
void transform_output(const Conv2dGeometry& g, const Tiling1d& t, const float* m, int64_t first, int64_t count,
                      const float* bias, float* y, int64_t ldy, bool accumulate) {
  constexpr int A = M + R - 1;
  constexpr int64_t kBlock = 64;  // channels per pass: the tile's M outputs of a block stay in L1
  const int64_t channels = g.out_c, plane = count * channels;
  const float* b = bias != nullptr ? bias : winograd::zeros(channels);
  for (int64_t r = 0; r < count; ++r) {
    const Tiling1d::Place p = t.place(first + r);
    const float* in = m + r * channels;
    float out[M][kBlock];
    for (int64_t c0 = 0; c0 < channels; c0 += kBlock) {
      const int64_t width = std::min(kBlock, channels - c0);
#pragma GCC ivdep
      for (int64_t c = 0; c < width; ++c) {
        float products[A];
#pragma GCC unroll 16
        for (int e = 0; e < A; ++e) products[e] = in[e * plane + c0 + c];
        multiply<OutputTransform<M, R>, M, A>(products, &out[0][c], kBlock);
      }
      for (int i = 0; i < M && p.first + i < t.out_len; ++i) {
        float* dst = y + (p.out_base + (p.first + i) * p.step) * ldy + c0;
        const float* src = out[i];
        if (accumulate)
          for (int64_t c = 0; c < width; ++c) dst[c] += src[c] + b[c0 + c];
        else
          for (int64_t c = 0; c < width; ++c) dst[c] = src[c] + b[c0 + c];
      }
    }
  }
}

// dm[e][r][o] = (A dY)[e] for the M output gradients dY of tile first + r (zero past the end of a line).
template <int M, int R>
void transform_output_gradient(const Conv2dGeometry& g, const Tiling1d& t, const float* dy, int64_t ldy,
                               int64_t first, int64_t count, float* dm) {
  constexpr int A = M + R - 1;
  const int64_t channels = g.out_c, plane = count * channels;
  const float* zero = winograd::zeros(channels);
  for (int64_t r = 0; r < count; ++r) {
    const Tiling1d::Place p = t.place(first + r);
    const float* q[M];
    for (int i = 0; i < M; ++i)
      q[i] = p.first + i < t.out_len ? dy + (p.out_base + (p.first + i) * p.step) * ldy : zero;
    float* out = dm + r * channels;
#pragma GCC ivdep
    for (int64_t c = 0; c < channels; ++c) {
      float gradient[M];
#pragma GCC unroll 16
      for (int i = 0; i < M; ++i) gradient[i] = q[i][c];
      multiply<OutputGradientTransform<M, R>, A, M>(gradient, out + c, plane);
    }
  }
}

template <int M, int R>
void forward(const Conv2dGeometry& g, const float* x, int64_t ldx, const float* w, const float* bias, float* y,
             int64_t ldy, bool accumulate) {
  constexpr int A = M + R - 1;
  const Tiling1d t(g, M);
  const int64_t in_c = g.in_c, out_c = g.out_c;
  float* u = workspace(Workspace::kWinogradWeights, A * out_c * in_c);
  transform_weights<M, R>(g, w, u);
  const winograd::TileChunks chunks = winograd::tile_chunks(t.total, A * (in_c + out_c) * int64_t(sizeof(float)));
  const int threads = winograd::threads();
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && chunks.count > 1)
  for (int64_t chunk = 0; chunk < chunks.count; ++chunk) {
    const int64_t first = chunk * chunks.size, count = std::min(chunks.size, t.total - first);
    float* v = workspace(Workspace::kWinogradInputs, A * count * in_c);
    float* m = workspace(Workspace::kWinogradProducts, A * count * out_c);
    transform_input<M, R>(g, t, x, ldx, first, count, v);
    for (int e = 0; e < A; ++e)  // M_e[tiles, O] = V_e[tiles, C] * U_e[O, C]^T
      gemm_serial(false, true, count, out_c, in_c, 1.0f, v + e * count * in_c, in_c, u + e * out_c * in_c, in_c,
                  0.0f, m + e * count * out_c, out_c);
    transform_output<M, R>(g, t, m, first, count, bias, y, ldy, accumulate);
  }
}

template <int M, int R>
void backward_filter(const Conv2dGeometry& g, const float* x, int64_t ldx, const float* dy, int64_t ldy, float* dw,
                     bool accumulate) {
  constexpr int A = M + R - 1;
  const Tiling1d t(g, M);
  const int64_t in_c = g.in_c, out_c = g.out_c, plane = out_c * in_c;
  const int64_t parts = std::max<int64_t>(1, std::min(winograd::kFilterParts, t.total));
  const int64_t part_size = (t.total + parts - 1) / parts;
  std::vector<float> du(size_t(parts * A * plane), 0.0f);
  const winograd::TileChunks chunks =
      winograd::tile_chunks(part_size, A * (in_c + out_c) * int64_t(sizeof(float)));
  const int threads = winograd::threads();
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && parts > 1)
  for (int64_t part = 0; part < parts; ++part) {
    const int64_t part_begin = part * part_size, part_end = std::min(t.total, part_begin + part_size);
    float* du_part = du.data() + part * A * plane;
    for (int64_t first = part_begin; first < part_end; first += chunks.size) {
      const int64_t count = std::min(chunks.size, part_end - first);
      float* v = workspace(Workspace::kWinogradInputs, A * count * in_c);
      float* dm = workspace(Workspace::kWinogradProducts, A * count * out_c);
      transform_input<M, R>(g, t, x, ldx, first, count, v);
      transform_output_gradient<M, R>(g, t, dy, ldy, first, count, dm);
      for (int e = 0; e < A; ++e)  // dU_e[O, C] += dM_e[tiles, O]^T * V_e[tiles, C]
        gemm_serial(true, false, out_c, in_c, count, 1.0f, dm + e * count * out_c, out_c, v + e * count * in_c,
                    in_c, 1.0f, du_part + e * plane, in_c);
    }
  }
  transform_weight_gradient<M, R>(g, du.data(), parts, dw, accumulate);
}

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
  if (g.output_rows() <= 0 || g.out_c <= 0) return;
  forward<kTileOutputs, kKernelLength>(g, x, ldx, w, bias, y, ldy, accumulate);
}

void winograd_1d_backward_filter(const Conv2dGeometry& g, const float* x, int64_t ldx, const float* dy, int64_t ldy,
                                 float* dw, bool accumulate) {
  const int64_t weights = g.out_c * kKernelLength * g.in_c;
  if (weights <= 0) return;
  if (g.output_rows() <= 0) {  // no outputs: a zero gradient
    if (!accumulate) std::fill(dw, dw + weights, 0.0f);
    return;
  }
  backward_filter<kTileOutputs, kKernelLength>(g, x, ldx, dy, ldy, dw, accumulate);
}

}  // namespace kernels::cpu
