// What the CPU's Winograd kernels share (conv_winograd.cpp, F(2x2, 3x3); conv_winograd_1d.cpp, F(4, 7) along
// one axis): how tiles are cut into chunks, the threads they run on, a row of zeros for the cells outside the
// input, and the two drivers, forward and weight gradient, that run a kernel's transforms and GEMMs over the
// chunks. Internal to those files.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/conv.h"
#include "kernels/cpu/workspace.h"
#include "kernels/gemm.h"

// ENGINE_IVDEP before a loop: its iterations do not depend on each other through memory, so the compiler may
// vectorise it without checking at run time whether its pointers overlap (GCC's ivdep, clang's
// vectorize(assume_safety); nothing elsewhere). The Winograd transforms' channel loops write buffers that no
// input of theirs overlaps.
#if defined(__clang__)
#define ENGINE_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define ENGINE_IVDEP _Pragma("GCC ivdep")
#else
#define ENGINE_IVDEP
#endif

namespace kernels::cpu::winograd {

// Bytes of a chunk's transformed inputs and GEMM results: about a core's L2 (1 MiB on our EPYCs).
constexpr int64_t kChunkBytes = int64_t(1) << 20;
constexpr int64_t kMinChunkTiles = 32;
// The weight gradients sum their tiles in this many fixed parts (one per thread of our 2-core machines),
// added in order at the end.
constexpr int64_t kFilterParts = 2;

// Threads for the kernels' own parallel loops (1 inside another parallel region).
inline int threads() { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

// A zero row of `floats` floats, the calling thread's: the input cells outside x (padding), the outputs of a
// partial tile.
inline const float* zeros(int64_t floats) {
  thread_local std::vector<float> z;
  if (int64_t(z.size()) < floats) z.assign(size_t(floats), 0.0f);
  return z.data();
}

// Chunks of `size` tiles (the last may be shorter): `count` of them, even where the tiles allow. Fixed by
// the tile count and the bytes per tile, never by the thread count.
struct TileChunks {
  int64_t size = 0, count = 0;
};

inline TileChunks tile_chunks(int64_t tiles, int64_t bytes_per_tile) {
  const int64_t largest = std::min(tiles, std::max(kMinChunkTiles, kChunkBytes / bytes_per_tile));
  int64_t count = (tiles + largest - 1) / largest;
  count += count % 2;
  TileChunks c;
  c.size = (tiles + count - 1) / count;
  c.count = (tiles + c.size - 1) / c.size;
  return c;
}

// dst[c] (+)= src[c] + bias[c] for c < width: an output transform's block of channels written out.
inline void write_outputs(float* dst, const float* src, const float* bias, int64_t width, bool accumulate) {
  if (accumulate)
    for (int64_t c = 0; c < width; ++c) dst[c] += src[c] + bias[c];
  else
    for (int64_t c = 0; c < width; ++c) dst[c] = src[c] + bias[c];
}

// in[e * plane + c] += in[e * plane + p * part_stride + c] for the parts p = 1 .. parts - 1, in order: the weight
// gradient's partial sums added into part 0 before its transform.
inline void add_parts(float* in, int64_t parts, int64_t elements, int64_t plane, int64_t part_stride,
                      int64_t channels) {
  for (int64_t p = 1; p < parts; ++p)
    for (int64_t e = 0; e < elements; ++e) {
      float* total = in + e * plane;
      const float* part = total + p * part_stride;
#pragma omp simd
      for (int64_t c = 0; c < channels; ++c) total[c] += part[c];
    }
}

// The drivers. A Kernel provides kElements (the transformed tile's size), kTaps (the kernel's), a Tiling
// constructible from the geometry (its `total` tiles) and the transforms
//   transform_weights(g, w, u)                              u[e][o][c] from w [out_c, taps, in_c]
//   transform_input(g, tiling, x, ldx, first, count, v)     v[e][r][c] for tiles first + r
//   transform_output(g, tiling, m, first, count, bias, y, ldy, accumulate)
//   transform_output_gradient(g, tiling, dy, ldy, first, count, dm)
//   transform_weight_gradient(g, du, parts, dw, accumulate) dw from the parts' du[e][o][c]

// y (+)= conv(x, w) + bias: per chunk of tiles, V, then M_e[tiles, O] = V_e[tiles, C] * U_e[O, C]^T, then y.
// Each U_e^T is made ready for the GEMMs once (kernels/gemm.h: prepare_gemm_b), not once per chunk.
template <typename Kernel>
void run_forward(const Conv2dGeometry& g, const float* x, int64_t ldx, const float* w, const float* bias, float* y,
                 int64_t ldy, bool accumulate) {
  constexpr int64_t E = Kernel::kElements;
  const typename Kernel::Tiling t(g);
  if (t.total <= 0 || g.out_c <= 0) return;
  const int64_t in_c = g.in_c, out_c = g.out_c;
  float* u = workspace(Workspace::kWinogradWeights, E * out_c * in_c);
  Kernel::transform_weights(g, w, u);
  const int64_t prepared_floats = gemm_prepared_b_floats(true, out_c, in_c);
  float* storage = workspace(Workspace::kWinogradPreparedWeights, E * prepared_floats);
  PreparedGemmB u_t[E];
  for (int64_t e = 0; e < E; ++e)
    u_t[e] = prepare_gemm_b(true, out_c, in_c, u + e * out_c * in_c, in_c, storage + e * prepared_floats,
                            prepared_floats);
  const TileChunks chunks = tile_chunks(t.total, E * (in_c + out_c) * int64_t(sizeof(float)));
  const int thread_count = threads();
#pragma omp parallel for schedule(static) num_threads(thread_count) if (thread_count > 1 && chunks.count > 1)
  for (int64_t chunk = 0; chunk < chunks.count; ++chunk) {
    const int64_t first = chunk * chunks.size, count = std::min(chunks.size, t.total - first);
    float* v = workspace(Workspace::kWinogradInputs, E * count * in_c);
    float* m = workspace(Workspace::kWinogradProducts, E * count * out_c);
    Kernel::transform_input(g, t, x, ldx, first, count, v);
    for (int64_t e = 0; e < E; ++e)
      gemm_serial_prepared(count, v + e * count * in_c, in_c, u_t[e], 0.0f, m + e * count * out_c, out_c);
    Kernel::transform_output(g, t, m, first, count, bias, y, ldy, accumulate);
  }
}

// dw (+)= the weight gradient: the tiles in kFilterParts fixed parts, each summing
// dU_e[O, C] += dM_e[tiles, O]^T * V_e[tiles, C] over its chunks, the parts added in order at the end.
template <typename Kernel>
void run_backward_filter(const Conv2dGeometry& g, const float* x, int64_t ldx, const float* dy, int64_t ldy,
                         float* dw, bool accumulate) {
  constexpr int64_t E = Kernel::kElements;
  const typename Kernel::Tiling t(g);
  const int64_t in_c = g.in_c, out_c = g.out_c, plane = out_c * in_c;
  if (plane <= 0) return;
  if (t.total <= 0) {  // no outputs: a zero gradient
    if (!accumulate) std::fill(dw, dw + Kernel::kTaps * plane, 0.0f);
    return;
  }
  const int64_t parts = std::max<int64_t>(1, std::min(kFilterParts, t.total));
  const int64_t part_size = (t.total + parts - 1) / parts;
  std::vector<float> du(size_t(parts * E * plane), 0.0f);
  const TileChunks chunks = tile_chunks(part_size, E * (in_c + out_c) * int64_t(sizeof(float)));
  const int thread_count = threads();
#pragma omp parallel for schedule(static) num_threads(thread_count) if (thread_count > 1 && parts > 1)
  for (int64_t part = 0; part < parts; ++part) {
    const int64_t part_begin = part * part_size, part_end = std::min(t.total, part_begin + part_size);
    float* du_part = du.data() + part * E * plane;
    for (int64_t first = part_begin; first < part_end; first += chunks.size) {
      const int64_t count = std::min(chunks.size, part_end - first);
      float* v = workspace(Workspace::kWinogradInputs, E * count * in_c);
      float* dm = workspace(Workspace::kWinogradProducts, E * count * out_c);
      Kernel::transform_input(g, t, x, ldx, first, count, v);
      Kernel::transform_output_gradient(g, t, dy, ldy, first, count, dm);
      for (int64_t e = 0; e < E; ++e)
        gemm_serial(true, false, out_c, in_c, count, 1.0f, dm + e * count * out_c, out_c, v + e * count * in_c,
                    in_c, 1.0f, du_part + e * plane, in_c);
    }
  }
  Kernel::transform_weight_gradient(g, du.data(), parts, dw, accumulate);
}

}  // namespace kernels::cpu::winograd
