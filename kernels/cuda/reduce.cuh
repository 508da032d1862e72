// Internal to kernels/cuda/: deterministic reductions in double precision, shared by elementwise.cu
// (sum, column_sums), batchnorm.cu (per-channel statistics) and loss.cu (the BCE mean).
//
// Determinism: which thread and block adds which element, and the order of every addition, depend only
// on the problem size, never on the device, the scheduling or a previous run; no atomics are used. So
// a result is bitwise the same run to run (and on any GPU with the same compiled code).
//
// reduce_to_host(total, load): sum over i in [0, total) of load(i) (a double):
//   stage 1: kReduceBlocks blocks (fewer for small totals) of kReduceThreads threads walk the range
//            grid-stride, each thread into its own double; each block sums its threads in a fixed
//            shared-memory tree into partials[block];
//   stage 2: one block sums the partials in the same fixed tree; the result is copied to the host.
// reduce_to_device(total, load, result): the same two stages, the sum left in device memory (no sync).
//
// column_reduce<K>(rows, cols, load, finish): per column c, K sums s[k] = sum_r of what load(r, c, acc)
// adds to acc[k] (e.g. K = 2 for BN backward: sum dy, sum dy * xhat):
//   stage 1: the rows are cut into chunks whose size depends on `rows` only; a block of 32 x 8
//            threads covers 32 columns x one chunk: thread (tx, ty) adds rows ty, ty + 8, ... of the
//            chunk for column tx (a warp reads 32 consecutive floats of a row: coalesced), then the 8
//            row-lanes are added in order into partials[chunk][k][c];
//   stage 2: one thread per column adds its chunks' partials in chunk order and calls finish(c, s)
//            (column_reduce_parallel_finish: kRowLanes threads per column, then the lanes in order).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/check.h"

namespace kernels::cuda::detail {

constexpr int kReduceThreads = 256;
constexpr int kReduceBlocks = 512;

// Sum of v over the block's kReduceThreads threads, in a fixed tree order; every thread gets it.
__device__ inline double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride >>= 1) {
    if (int(threadIdx.x) < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  const double total = shared[0];
  __syncthreads();
  return total;
}

template <typename Index, typename Load>
__global__ void __launch_bounds__(kReduceThreads)
    reduce_partials_kernel(Index total, Load load, double* partials) {
  __shared__ double shared[kReduceThreads];
  double acc = 0.0;
  for (Index i = Index(blockIdx.x) * kReduceThreads + threadIdx.x; i < total;
       i += Index(gridDim.x) * kReduceThreads)
    acc += load(i);
  const double block_total = block_sum(acc, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = block_total;
}

// A template (like every kernel in this header) so that each .cu including it may instantiate it
// without a duplicate definition at link time.
template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    reduce_final_kernel(const double* partials, int count, double* result) {
  static_assert(kThreads == kReduceThreads, "block_sum assumes kReduceThreads threads");
  __shared__ double shared[kReduceThreads];
  double acc = 0.0;
  for (int i = threadIdx.x; i < count; i += kReduceThreads) acc += partials[i];
  const double total = block_sum(acc, shared);
  if (threadIdx.x == 0) *result = total;
}

// Sum over i in [0, total) of load(i) into *result (one double in device memory), asynchronous: no host
// synchronisation, so a training step can keep its loss on the device. total <= 0 writes 0.
template <typename Load>
void reduce_to_device(int64_t total, Load load, double* result, const char* name) {
  if (total <= 0) {
    CHECK_CUDA(cudaMemsetAsync(result, 0, sizeof(double), stream()));
    return;
  }
  // The block count depends on the total only: the same partition on every run and every device.
  const int blocks = int(std::min<int64_t>(kReduceBlocks, (total + kReduceThreads - 1) / kReduceThreads));
  ScopedBuffer partials(sizeof(double) * size_t(blocks), name);
  double* partial = partials.as<double>();
  if (total < (int64_t(1) << 31))  // i + stride stays below 2^32: 32-bit indices are safe
    reduce_partials_kernel<uint32_t, Load>
        <<<blocks, kReduceThreads, 0, stream()>>>(uint32_t(total), load, partial);
  else
    reduce_partials_kernel<int64_t, Load><<<blocks, kReduceThreads, 0, stream()>>>(total, load, partial);
  check_launch(name, __FILE__, __LINE__);
  reduce_final_kernel<kReduceThreads><<<1, kReduceThreads, 0, stream()>>>(partial, blocks, result);
  check_launch(name, __FILE__, __LINE__);
}

// Sum over i in [0, total) of load(i); synchronises (the result comes back to the host).
template <typename Load>
double reduce_to_host(int64_t total, Load load, const char* name) {
  if (total <= 0) return 0.0;
  ScopedBuffer result(sizeof(double), name);
  reduce_to_device(total, load, result.as<double>(), name);
  double host_result = 0.0;
  CHECK_CUDA(cudaMemcpyAsync(&host_result, result.as<double>(), sizeof(double), cudaMemcpyDeviceToHost, stream()));
  CHECK_CUDA(cudaStreamSynchronize(stream()));
  return host_result;
}

// --- Column reductions ----------------------------------------------------------------------------

constexpr int kColumnTile = 32;  // columns per block (one warp's worth)
constexpr int kRowLanes = 8;     // rows read concurrently per block

struct ChunkPlan {
  int64_t rows_per_chunk = 0;
  int64_t chunks = 0;
};

// At least 64 rows per chunk, at most 512 chunks: depends on `rows` only.
inline ChunkPlan chunk_plan(int64_t rows) {
  ChunkPlan plan;
  if (rows <= 0) return plan;
  plan.rows_per_chunk = std::max<int64_t>(64, (rows + 511) / 512);
  plan.chunks = (rows + plan.rows_per_chunk - 1) / plan.rows_per_chunk;
  return plan;
}

template <int K, typename Load>
__global__ void __launch_bounds__(kColumnTile* kRowLanes)
    column_partials_kernel(int64_t rows, int64_t cols, int64_t rows_per_chunk, Load load,
                           double* partials) {
  __shared__ double shared[K][kRowLanes][kColumnTile + 1];
  const int64_t c = int64_t(blockIdx.x) * kColumnTile + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  const int64_t r_begin = chunk * rows_per_chunk;
  const int64_t r_end = r_begin + rows_per_chunk < rows ? r_begin + rows_per_chunk : rows;
  double acc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k] = 0.0;
  if (c < cols)
    for (int64_t r = r_begin + threadIdx.y; r < r_end; r += kRowLanes) load(r, c, acc);
#pragma unroll
  for (int k = 0; k < K; ++k) shared[k][threadIdx.y][threadIdx.x] = acc[k];
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      double s = 0.0;
      for (int lane = 0; lane < kRowLanes; ++lane) s += shared[k][lane][threadIdx.x];
      partials[(chunk * K + k) * cols + c] = s;
    }
  }
}

template <int K, typename Finish>
__global__ void column_finish_kernel(int64_t cols, int64_t chunks, const double* partials,
                                     Finish finish) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  double s[K];
#pragma unroll
  for (int k = 0; k < K; ++k) s[k] = 0.0;
  for (int64_t chunk = 0; chunk < chunks; ++chunk)
#pragma unroll
    for (int k = 0; k < K; ++k) s[k] += partials[(chunk * K + k) * cols + c];
  finish(c, s);
}

// The second stage with the chunks in parallel: a block of kColumnTile x kRowLanes threads per 32
// columns; row-lane ty adds chunks ty, ty + kRowLanes, ... of its column, then lane 0 adds the lanes in
// order and calls finish(c, s). Deterministic as the serial stage is (a fixed order that depends on the
// chunk count only), but reading the partials kRowLanes wide instead of one chunk after another.
template <int K, typename Finish>
__global__ void __launch_bounds__(kColumnTile* kRowLanes)
    column_finish_parallel_kernel(int64_t cols, int64_t chunks, const double* partials, Finish finish) {
  __shared__ double shared[K][kRowLanes][kColumnTile + 1];
  const int64_t c = int64_t(blockIdx.x) * kColumnTile + threadIdx.x;
  double acc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k] = 0.0;
  if (c < cols)
    for (int64_t chunk = threadIdx.y; chunk < chunks; chunk += kRowLanes)
#pragma unroll
      for (int k = 0; k < K; ++k) acc[k] += partials[(chunk * K + k) * cols + c];
#pragma unroll
  for (int k = 0; k < K; ++k) shared[k][threadIdx.y][threadIdx.x] = acc[k];
  __syncthreads();
  if (threadIdx.y != 0 || c >= cols) return;
  double s[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    s[k] = 0.0;
    for (int lane = 0; lane < kRowLanes; ++lane) s[k] += shared[k][lane][threadIdx.x];
  }
  finish(c, s);
}

// Launches column_finish_parallel_kernel over `cols` columns.
template <int K, typename Finish>
void column_finish_parallel(int64_t cols, int64_t chunks, const double* partials, Finish finish, const char* name) {
  if (cols <= 0) return;
  const dim3 grid(unsigned((cols + kColumnTile - 1) / kColumnTile));
  const dim3 block(kColumnTile, kRowLanes);
  column_finish_parallel_kernel<K, Finish><<<grid, block, 0, stream()>>>(cols, chunks, partials, finish);
  check_launch(name, __FILE__, __LINE__);
}

// column_reduce with the parallel second stage.
template <int K, typename Load, typename Finish>
void column_reduce_parallel_finish(int64_t rows, int64_t cols, Load load, Finish finish, const char* name) {
  if (cols <= 0) return;
  const ChunkPlan plan = chunk_plan(rows);
  if (plan.chunks > 65535) throw_error("column reduction: too many row chunks", __FILE__, __LINE__);
  ScopedBuffer partials(sizeof(double) * size_t((plan.chunks > 0 ? plan.chunks : 1) * K * cols), name);
  if (plan.chunks > 0) {
    const dim3 grid(unsigned((cols + kColumnTile - 1) / kColumnTile), unsigned(plan.chunks));
    const dim3 block(kColumnTile, kRowLanes);
    column_partials_kernel<K, Load>
        <<<grid, block, 0, stream()>>>(rows, cols, plan.rows_per_chunk, load, partials.as<double>());
    check_launch(name, __FILE__, __LINE__);
  }
  column_finish_parallel<K>(cols, plan.chunks, partials.as<double>(), finish, name);
}

// Per-column sums (see the top); asynchronous. rows may be 0 (finish then sees zero sums).
template <int K, typename Load, typename Finish>
void column_reduce(int64_t rows, int64_t cols, Load load, Finish finish, const char* name) {
  if (cols <= 0) return;
  const ChunkPlan plan = chunk_plan(rows);
  if (plan.chunks > 65535) throw_error("column reduction: too many row chunks", __FILE__, __LINE__);
  ScopedBuffer partials(sizeof(double) * size_t(plan.chunks * K * cols), name);
  if (plan.chunks > 0) {
    const dim3 grid(unsigned((cols + kColumnTile - 1) / kColumnTile), unsigned(plan.chunks));
    const dim3 block(kColumnTile, kRowLanes);
    column_partials_kernel<K, Load>
        <<<grid, block, 0, stream()>>>(rows, cols, plan.rows_per_chunk, load, partials.as<double>());
    check_launch(name, __FILE__, __LINE__);
  }
  constexpr int kThreads = 256;
  column_finish_kernel<K, Finish><<<unsigned((cols + kThreads - 1) / kThreads), kThreads, 0, stream()>>>(
      cols, plan.chunks, partials.as<double>(), finish);
  check_launch(name, __FILE__, __LINE__);
}

}  // namespace kernels::cuda::detail
