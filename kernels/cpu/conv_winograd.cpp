// Winograd F(2x2, 3x3) convolutions on the CPU (Lavin and Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016): each 2x2 block of outputs (a "tile") from the 4x4 block of inputs under it,
//   Y = A^T [ U (.) V ] A,   U = G g G^T (the 3x3 kernel),  V = B^T d B (the 4x4 input),
// summed over input channels, with
//   B^T = | 1  0 -1  0 |    G = | 1    0    0  |    A^T = | 1  1  1  0 |
//         | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
//         | 0  1  0 -1 |        | 0    0    1  |
// (the cross-correlation y[i] = sum_k d[i + k] g[k] of every framework). For each of the 16 elements e of
// the 4x4 transformed tile, the channel sum is one GEMM over all tiles:
//   M_e[tile, o] = sum_c V_e[tile, c] * U_e[o, c]
// so a convolution costs 16 GEMMs of k = in_c instead of one of k = 9 * in_c over 4x the rows: 2.25x fewer
// multiply-adds, plus the transforms (additions only, and exact halvings).
//
// The weight gradient is the adjoint of the forward (the same V):
//   dM = A dY A^T (each tile's 2x2 output gradient to 4x4),  dU_e[o, c] = sum_tiles dM_e[tile, o] V_e[tile, c],
//   dg = G^T dU G,
// again 16 GEMMs, reducing over the tiles. The backward data of a stride-1 convolution is the forward of
// dy with the flipped kernel (conv.cpp, has_transposed_form), so it runs winograd_forward too.
//
// Tiles are taken in chunks fixed by the geometry (never by the thread count), each chunk's transformed
// inputs and GEMM results in the working thread's own buffers (about its L2), and every sum runs in a
// fixed order: results are the same bit for bit for any number of threads, as for the im2col kernels.
// Rounding: the transforms add at most 4 terms twice and halve exactly; the results differ from the
// im2col GEMM's by a few float ulps of the inputs' magnitudes (tests/cpu/test_kernels_conv.cpp bounds
// them against a double reference).
#include "kernels/cpu/conv_winograd.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu/winograd_tiles.h"
#include "kernels/cpu/workspace.h"
#include "kernels/with_flag.h"
#include "kernels/gemm.h"

namespace kernels::cpu {
namespace {

constexpr int64_t kElements = 16;  // the 4x4 transformed tile
// Smaller maps stay on im2col: DenseNet-201's 7x7 block took 1.3-2.3x longer in Winograd (a quarter of
// its tiles cover the padding), its 14x14 block 0.7-1.0x the time (docs/perf-notes.md, "Winograd").
constexpr int64_t kMinOutputSide = 10;

using winograd::kFilterParts;
using winograd::tile_chunks;
using winograd::TileChunks;
using winograd::zeros;
int winograd_threads() { return winograd::threads(); }

// The tiles of a convolution: 2x2 output blocks, ceil(out_h / 2) x ceil(out_w / 2) per image.
struct Tiling {
  int64_t rows, cols, per_image, total;
  explicit Tiling(const Conv2dGeometry& g)
      : rows((g.out_h() + 1) / 2), cols((g.out_w() + 1) / 2), per_image(rows * cols), total(g.batch * per_image) {}
};

// u[e][o][c] = (G g G^T)[e] for each kernel g = w[o, :, :, c].
void transform_weights(const Conv2dGeometry& g, const float* w, float* u) {
  const int64_t channels = g.in_c, plane = g.out_c * channels;
#pragma omp parallel for schedule(static) num_threads(winograd_threads())
  for (int64_t o = 0; o < g.out_c; ++o) {
    const float* k = w + o * 9 * channels;
    float* out = u + o * channels;
#pragma omp simd
    for (int64_t c = 0; c < channels; ++c) {
      float t[4][3];  // G g
      for (int j = 0; j < 3; ++j) {
        const float k0 = k[j * channels + c], k1 = k[(3 + j) * channels + c], k2 = k[(6 + j) * channels + c];
        t[0][j] = k0;
        t[1][j] = 0.5f * (k0 + k1 + k2);
        t[2][j] = 0.5f * (k0 - k1 + k2);
        t[3][j] = k2;
      }
      for (int i = 0; i < 4; ++i) {  // (G g) G^T
        out[(i * 4 + 0) * plane + c] = t[i][0];
        out[(i * 4 + 1) * plane + c] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
        out[(i * 4 + 2) * plane + c] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
        out[(i * 4 + 3) * plane + c] = t[i][2];
      }
    }
  }
}

// dw (+)= G^T du G for du = sum over the parts of du_part[e][o][c], added in part order into part 0.
void transform_weight_gradient(const Conv2dGeometry& g, float* du, int64_t parts, float* dw, bool accumulate) {
  const int64_t channels = g.in_c, plane = g.out_c * channels, part_stride = kElements * plane;
#pragma omp parallel for schedule(static) num_threads(winograd_threads())
  for (int64_t o = 0; o < g.out_c; ++o) {
    float* in = du + o * channels;
    for (int64_t p = 1; p < parts; ++p)
      for (int64_t e = 0; e < kElements; ++e) {
        float* total = in + e * plane;
        const float* part = total + p * part_stride;
#pragma omp simd
        for (int64_t c = 0; c < channels; ++c) total[c] += part[c];
      }
    float* out = dw + o * 9 * channels;
    // One loop for each of overwrite and accumulate (a select inside keeps GCC from vectorising it).
    const auto transform = [&](auto accumulate_tag) {
      constexpr bool kAccumulate = decltype(accumulate_tag)::value;
#pragma omp simd
      for (int64_t c = 0; c < channels; ++c) {
        float d[4][4];
        for (int e = 0; e < 16; ++e) d[e / 4][e % 4] = in[e * plane + c];
        float t[3][4];  // G^T dU
        for (int j = 0; j < 4; ++j) {
          t[0][j] = d[0][j] + 0.5f * (d[1][j] + d[2][j]);
          t[1][j] = 0.5f * (d[1][j] - d[2][j]);
          t[2][j] = 0.5f * (d[1][j] + d[2][j]) + d[3][j];
        }
        for (int i = 0; i < 3; ++i) {  // (G^T dU) G
          const float r[3] = {t[i][0] + 0.5f * (t[i][1] + t[i][2]), 0.5f * (t[i][1] - t[i][2]),
                              0.5f * (t[i][1] + t[i][2]) + t[i][3]};
          for (int j = 0; j < 3; ++j) {
            if constexpr (kAccumulate)
              out[(i * 3 + j) * channels + c] += r[j];
            else
              out[(i * 3 + j) * channels + c] = r[j];
          }
        }
      }
    };
    with_flag(accumulate, transform);
  }
}

// v[e][r][c] = (B^T d B)[e] for the 4x4 input block d under tile first + r, r < count (cells outside x
// read as zero).
void transform_input(const Conv2dGeometry& g, const Tiling& t, const float* x, int64_t ldx, int64_t first,
                     int64_t count, float* v) {
  const int64_t channels = g.in_c, plane = count * channels;
  const float* zero = zeros(channels);
  for (int64_t r = 0; r < count; ++r) {
    const int64_t tile = first + r, n = tile / t.per_image;
    const int64_t ih0 = 2 * ((tile % t.per_image) / t.cols) - g.pad_top;
    const int64_t iw0 = 2 * (tile % t.cols) - g.pad_left;
    const float* d[4][4];
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) {
        const int64_t ih = ih0 + i, iw = iw0 + j;
        const bool inside = ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w;
        d[i][j] = inside ? x + ((n * g.in_h + ih) * g.in_w + iw) * ldx : zero;
      }
    float* out = v + r * channels;
#pragma omp simd
    for (int64_t c = 0; c < channels; ++c) {
      float s[4][4];  // B^T d
      for (int j = 0; j < 4; ++j) {
        const float d0 = d[0][j][c], d1 = d[1][j][c], d2 = d[2][j][c], d3 = d[3][j][c];
        s[0][j] = d0 - d2;
        s[1][j] = d1 + d2;
        s[2][j] = d2 - d1;
        s[3][j] = d1 - d3;
      }
      for (int i = 0; i < 4; ++i) {  // (B^T d) B
        out[(i * 4 + 0) * plane + c] = s[i][0] - s[i][2];
        out[(i * 4 + 1) * plane + c] = s[i][1] + s[i][2];
        out[(i * 4 + 2) * plane + c] = s[i][2] - s[i][1];
        out[(i * 4 + 3) * plane + c] = s[i][1] - s[i][3];
      }
    }
  }
}

// The output pixels of tile `tile`: rows of y (or dy) for its 2x2 block, null where the block runs past
// the output (odd out_h or out_w).
struct TileOutputs {
  int64_t rows[2][2];
  bool present[2][2];
};

TileOutputs tile_outputs(const Conv2dGeometry& g, const Tiling& t, int64_t tile) {
  const int64_t out_h = g.out_h(), out_w = g.out_w(), n = tile / t.per_image;
  const int64_t oh0 = 2 * ((tile % t.per_image) / t.cols), ow0 = 2 * (tile % t.cols);
  TileOutputs o{};
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      o.present[i][j] = oh0 + i < out_h && ow0 + j < out_w;
      o.rows[i][j] = (n * out_h + oh0 + i) * out_w + ow0 + j;
    }
  return o;
}

// y (+)= A^T m A (+ bias) for the tiles [first, first + count), m[e][r][o].
void transform_output(const Conv2dGeometry& g, const Tiling& t, const float* m, int64_t first, int64_t count,
                      const float* bias, float* y, int64_t ldy, bool accumulate) {
  const int64_t channels = g.out_c, plane = count * channels;
  const float* no_bias = zeros(channels);
  const float* b = bias != nullptr ? bias : no_bias;
  for (int64_t r = 0; r < count; ++r) {
    const TileOutputs to = tile_outputs(g, t, first + r);
    const float* in = m + r * channels;
    float out[2][2][64];  // a block of channels of the tile's four outputs
    for (int64_t c0 = 0; c0 < channels; c0 += 64) {
      const int64_t width = std::min<int64_t>(64, channels - c0);
#pragma omp simd
      for (int64_t c = 0; c < width; ++c) {
        float s[2][4];  // A^T m
        for (int j = 0; j < 4; ++j) {
          const float m0 = in[(0 + j) * plane + c0 + c], m1 = in[(4 + j) * plane + c0 + c],
                      m2 = in[(8 + j) * plane + c0 + c], m3 = in[(12 + j) * plane + c0 + c];
          s[0][j] = m0 + m1 + m2;
          s[1][j] = m1 - m2 - m3;
        }
        for (int i = 0; i < 2; ++i) {  // (A^T m) A
          out[i][0][c] = s[i][0] + s[i][1] + s[i][2];
          out[i][1][c] = s[i][1] - s[i][2] - s[i][3];
        }
      }
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) {
          if (!to.present[i][j]) continue;
          float* dst = y + to.rows[i][j] * ldy + c0;
          const float* src = out[i][j];
          if (accumulate)
            for (int64_t c = 0; c < width; ++c) dst[c] += src[c] + b[c0 + c];
          else
            for (int64_t c = 0; c < width; ++c) dst[c] = src[c] + b[c0 + c];
        }
    }
  }
}

// dm[e][r][o] = (A dY A^T)[e] for the output gradient dY (2x2, zero past the output) of tile first + r.
void transform_output_gradient(const Conv2dGeometry& g, const Tiling& t, const float* dy, int64_t ldy,
                               int64_t first, int64_t count, float* dm) {
  const int64_t channels = g.out_c, plane = count * channels;
  const float* zero = zeros(channels);
  for (int64_t r = 0; r < count; ++r) {
    const TileOutputs to = tile_outputs(g, t, first + r);
    const float* q[2][2];
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) q[i][j] = to.present[i][j] ? dy + to.rows[i][j] * ldy : zero;
    float* out = dm + r * channels;
#pragma omp simd
    for (int64_t c = 0; c < channels; ++c) {
      float s[4][2];  // A dY
      for (int j = 0; j < 2; ++j) {
        const float y0 = q[0][j][c], y1 = q[1][j][c];
        s[0][j] = y0;
        s[1][j] = y0 + y1;
        s[2][j] = y0 - y1;
        s[3][j] = -y1;
      }
      for (int i = 0; i < 4; ++i) {  // (A dY) A^T
        out[(i * 4 + 0) * plane + c] = s[i][0];
        out[(i * 4 + 1) * plane + c] = s[i][0] + s[i][1];
        out[(i * 4 + 2) * plane + c] = s[i][0] - s[i][1];
        out[(i * 4 + 3) * plane + c] = -s[i][1];
      }
    }
  }
}

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
  const Tiling t(g);
  if (t.total <= 0 || g.out_c <= 0) return;
  const int64_t in_c = g.in_c, out_c = g.out_c;
  float* u = workspace(Workspace::kWinogradWeights, kElements * out_c * in_c);
  transform_weights(g, w, u);
  const TileChunks chunks = tile_chunks(t.total, kElements * (in_c + out_c) * int64_t(sizeof(float)));
  const int threads = winograd_threads();
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && chunks.count > 1)
  for (int64_t chunk = 0; chunk < chunks.count; ++chunk) {
    const int64_t first = chunk * chunks.size, count = std::min(chunks.size, t.total - first);
    float* v = workspace(Workspace::kWinogradInputs, kElements * count * in_c);
    float* m = workspace(Workspace::kWinogradProducts, kElements * count * out_c);
    transform_input(g, t, x, ldx, first, count, v);
    for (int64_t e = 0; e < kElements; ++e)  // M_e[tiles, O] = V_e[tiles, C] * U_e[O, C]^T
      gemm_serial(false, true, count, out_c, in_c, 1.0f, v + e * count * in_c, in_c, u + e * out_c * in_c, in_c,
                  0.0f, m + e * count * out_c, out_c);
    transform_output(g, t, m, first, count, bias, y, ldy, accumulate);
  }
}

void winograd_backward_filter(const Conv2dGeometry& g, const float* x, int64_t ldx, const float* dy, int64_t ldy,
                              float* dw, bool accumulate) {
  const Tiling t(g);
  const int64_t in_c = g.in_c, out_c = g.out_c, plane = out_c * in_c;
  if (plane <= 0) return;
  if (t.total <= 0) {  // no outputs: a zero gradient
    if (!accumulate) std::fill(dw, dw + 9 * plane, 0.0f);
    return;
  }
  const int64_t parts = std::max<int64_t>(1, std::min(kFilterParts, t.total));
  const int64_t part_size = (t.total + parts - 1) / parts;
  std::vector<float> du(size_t(parts * kElements * plane), 0.0f);
  const TileChunks chunks = tile_chunks(part_size, kElements * (in_c + out_c) * int64_t(sizeof(float)));
  const int threads = winograd_threads();
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && parts > 1)
  for (int64_t part = 0; part < parts; ++part) {
    const int64_t part_begin = part * part_size, part_end = std::min(t.total, part_begin + part_size);
    float* du_part = du.data() + part * kElements * plane;
    for (int64_t first = part_begin; first < part_end; first += chunks.size) {
      const int64_t count = std::min(chunks.size, part_end - first);
      float* v = workspace(Workspace::kWinogradInputs, kElements * count * in_c);
      float* dm = workspace(Workspace::kWinogradProducts, kElements * count * out_c);
      transform_input(g, t, x, ldx, first, count, v);
      transform_output_gradient(g, t, dy, ldy, first, count, dm);
      for (int64_t e = 0; e < kElements; ++e)  // dU_e[O, C] += dM_e[tiles, O]^T * V_e[tiles, C]
        gemm_serial(true, false, out_c, in_c, count, 1.0f, dm + e * count * out_c, out_c, v + e * count * in_c,
                    in_c, 1.0f, du_part + e * plane, in_c);
    }
  }
  transform_weight_gradient(g, du.data(), parts, dw, accumulate);
}

}  // namespace kernels::cpu
