// What the CPU's two Winograd kernels share (conv_winograd.cpp, F(2x2, 3x3); conv_winograd_1d.cpp, F(m, r)
// along one axis): how tiles are cut into chunks, the threads they run on, a row of zeros for the cells outside
// the input. Internal to those two files.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

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

}  // namespace kernels::cpu::winograd
