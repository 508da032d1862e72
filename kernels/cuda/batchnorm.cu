// Batch normalisation on the GPU (contract in batchnorm.h; derivation of the backward in
// docs/derivations.md), the same arithmetic as kernels/cpu/batchnorm.cpp. Per channel c over the
// M = rows values of an NHWC activation [rows, C] (row stride ld):
//   training forward:  mean_c = (1/M) sum x,  var_c = (1/M) sum (x - mean_c)^2 (one pass, double: below),
//                      invstd_c = 1 / sqrt(var_c + eps),  y = gamma_c (x - mean_c) invstd_c + beta_c,
//                      running stats updated in double, saved_mean/saved_invstd written as float
//   eval forward:      y = gamma_c (x - running_mean_c) / sqrt(running_var_c + eps) + beta_c
//   training backward: dbeta_c += sum dy,  dgamma_c += sum dy * xhat  (double sums, then float)
//                      dx (+)= gamma_c invstd_c (dy - sum_dy / M - xhat sum_dy_xhat / M)
//   eval backward:     dx (+)= dy gamma_c invstd_c  (statistics are constants)
//
// The per-channel sums are the deterministic column reductions of reduce.cuh (row chunks in parallel,
// each into its own double partial, then the chunks added in a fixed order per channel); the
// per-channel finishing step (the statistics, the running-stat update, the backward coefficients) runs
// in the reduction's parallel second stage (8 threads per channel over the chunks, then in order). The per-element passes are grid-stride
// kernels over [rows, C]. Everything is ordered on the current stream; temporaries come from the
// caching allocator.
//
// Training forward's statistics are one streaming pass over x (bn_moments_partials_kernel): per channel
// the shifted sums S = sum (x - K_c) and Q = sum (x - K_c)^2 in double, K_c = x[0, c], each thread over
// one row chunk and 4 channels with 16-byte loads where x allows them (C and ld multiples of 4, x
// 16-byte aligned; else one channel); the chunks are merged by the parallel second stage of reduce.cuh:
//   mean_c = K_c + S / M,  var_c = Q / M - (S / M)^2.
// Why double sums of shifted values and not a Welford/Chan merge in float: the pass is memory-bound, so
// the double adds cost nothing visible; E[(x-K)^2] - E[x-K]^2 loses about log2((mean - K)^2 / var) bits
// to cancellation, and with K one of the channel's own values (mean - K)^2 / var is of order 1 (at worst
// M for a pathological channel), leaving >= 30 of double's 53 bits: far below float rounding of var.
// Welford in float rounds every update (error ~ sqrt(M) ulp of float) and needs a division per element.
//
// Storage types: every kernel is templated on the type of x, y, dy and dx (storage.cuh). All-bf16
// activations (dx may be absent) run natively: loads widen, the arithmetic above is the f32 kernel's,
// each stored y or dx is rounded once, the statistics, parameters and their gradients stay f32 (the
// CPU emulation's results, kernels/bf16_emulation.h); the statistics pass loads 8 bf16 (16 bytes) a
// row where x allows it. Calls mixing f32 and bf16 activations go through kernels/cuda/bf16_widen.h.
//
// Fused with ReLU (batch_norm_relu_*): forward y = max(z, 0), z = gamma xhat + beta rounded without
// contraction (bn_output, as the CPU; the plain forward's y is the same z); backward dz = [z > 0] dy with z
// recomputed from x by bn_output, so the mask is the forward's and neither z nor y is read in backward. The
// plain and fused passes are one template each (NormaliseOp, GradSumsLoad, TrainingDxOp with kRelu).
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/batchnorm.h"
#include "kernels/cuda/bf16_widen.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/storage.cuh"
#include "kernels/with_flag.h"

namespace kernels::cuda {
namespace detail {
namespace {

// --- Reductions: what each element adds, and the per-channel finishing step ----------------------

// z = gamma_c * xhat + beta_c rounded twice (no FMA contraction, as the CPU rounds it): BN's output, the same
// in forward and in the fused backward's recomputed ReLU mask.
__device__ inline float bn_output(float xhat, const float* gamma, const float* beta, int64_t c) {
  return __fadd_rn(__fmul_rn(gamma ? gamma[c] : 1.0f, xhat), beta ? beta[c] : 0.0f);
}

// xhat = (x - mean_c) * invstd_c, in float (as the CPU).
template <typename T>
__device__ inline float normalised(const T* x, const float* mean, const float* invstd, int64_t c) {
  return (load(x) - mean[c]) * invstd[c];
}

// The gradient at BN's output z: dy, or for the fused BN + ReLU (kRelu) dy where z > 0, with z recomputed
// from xhat (the forward's mask; a NaN z, which the forward kept in y, passes no gradient).
template <bool kRelu, typename T>
__device__ inline float output_gradient(const T* dy, float xhat, const float* gamma, const float* beta, int64_t c) {
  if constexpr (kRelu) {
    if (!(bn_output(xhat, gamma, beta, c) > 0.0f)) return 0.0f;
  }
  return load(dy);
}

// acc[0] += g, acc[1] += g * xhat, g the gradient at BN's output (output_gradient: gamma and beta are read
// for the fused ReLU's mask only).
template <typename T, bool kRelu = false>
struct GradSumsLoad {
  const T* x;
  int64_t ldx;
  const T* dy;
  int64_t ldy;
  const float* mean;
  const float* invstd;
  const float* gamma = nullptr;
  const float* beta = nullptr;
  __device__ void operator()(int64_t r, int64_t c, double (&acc)[2]) const {
    const float xhat = normalised(x + r * ldx + c, mean, invstd, c);
    const float g = output_gradient<kRelu>(dy + r * ldy + c, xhat, gamma, beta, c);
    acc[0] += double(g);
    acc[1] += double(g) * double(xhat);
  }
};

// dbeta += sum dy, dgamma += sum dy*xhat (nullable); with k non-null also the dx coefficients
//   k_c = gamma_c invstd_c,  mean_dy_c = sum_dy / M,  mean_dy_xhat_c = sum_dy_xhat / M.
struct GradFinish {
  double rows;
  float* dgamma;
  float* dbeta;
  const float* gamma;
  const float* invstd;
  float* k;
  float* mean_dy;
  float* mean_dy_xhat;
  __device__ void operator()(int64_t c, const double (&s)[2]) const {
    if (dbeta) dbeta[c] += float(s[0]);
    if (dgamma) dgamma[c] += float(s[1]);
    if (k) {
      k[c] = (gamma ? gamma[c] : 1.0f) * invstd[c];
      mean_dy[c] = float(s[0] / rows);
      mean_dy_xhat[c] = float(s[1] / rows);
    }
  }
};

// --- Streaming statistics (training forward) ------------------------------------------------------

// Per row chunk and channel, the shifted sums S = sum (x - K_c), Q = sum (x - K_c)^2 in double, K_c =
// x[0, c]. V channels per thread (V = 4: one float4 load per row). partials: [chunk][2][cols].
template <typename T, int V>
__global__ void __launch_bounds__(kColumnTile* kRowLanes)
    bn_moments_partials_kernel(int64_t rows, int64_t cols, int64_t rows_per_chunk, const T* x, int64_t ldx,
                               double* partials) {
  __shared__ double shared[2][kRowLanes][kColumnTile * V + 1];
  const int64_t c0 = (int64_t(blockIdx.x) * kColumnTile + threadIdx.x) * V;
  const int64_t chunk = blockIdx.y;
  const int64_t r_begin = chunk * rows_per_chunk;
  const int64_t r_end = r_begin + rows_per_chunk < rows ? r_begin + rows_per_chunk : rows;
  double sum[V], squares[V], shift[V];
#pragma unroll
  for (int v = 0; v < V; ++v) sum[v] = squares[v] = shift[v] = 0.0;
  if (c0 < cols) {
#pragma unroll
    for (int v = 0; v < V; ++v) shift[v] = double(load(x + c0 + v));
    for (int64_t r = r_begin + threadIdx.y; r < r_end; r += kRowLanes) {
      float values[V];
      if constexpr (V > 1)
        load_pack(x + r * ldx + c0, values);  // V == kPack<T>: one 16-byte load
      else
        values[0] = load(x + r * ldx + c0);
#pragma unroll
      for (int v = 0; v < V; ++v) {
        const double d = double(values[v]) - shift[v];
        sum[v] += d;
        squares[v] += d * d;
      }
    }
  }
#pragma unroll
  for (int v = 0; v < V; ++v) {
    shared[0][threadIdx.y][threadIdx.x * V + v] = sum[v];
    shared[1][threadIdx.y][threadIdx.x * V + v] = squares[v];
  }
  __syncthreads();
  if (threadIdx.y != 0 || c0 >= cols) return;
#pragma unroll
  for (int v = 0; v < V; ++v)
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      double total = 0.0;
      for (int lane = 0; lane < kRowLanes; ++lane) total += shared[k][lane][threadIdx.x * V + v];
      partials[(chunk * 2 + k) * cols + c0 + v] = total;
    }
}

// From the merged shifted sums: the statistics (as StatisticsFinish, from mean and var in double).
template <typename T>
struct StreamingStatisticsFinish {
  double rows;
  double eps;
  double momentum;
  double running_var_factor;
  const T* x;  // row 0: the shifts K_c
  float* mean_f;
  float* invstd_f;
  float* saved_mean;
  float* saved_invstd;
  float* running_mean;
  float* running_var;
  __device__ void operator()(int64_t c, const double (&s)[2]) const {
    const double shifted_mean = s[0] / rows;
    const double mean = double(load(x + c)) + shifted_mean;
    const double centred = s[1] / rows - shifted_mean * shifted_mean;
    // Biased: the one used to normalise. Clamped below at 0, but NaN (an Inf in x) stays NaN, as on the CPU.
    const double var = centred < 0.0 ? 0.0 : centred;
    const float m = float(mean);
    const float invstd = float(1.0 / sqrt(var + eps));
    mean_f[c] = m;
    invstd_f[c] = invstd;
    if (saved_mean) saved_mean[c] = m;
    if (saved_invstd) saved_invstd[c] = invstd;
    if (running_mean) running_mean[c] = float((1.0 - momentum) * double(running_mean[c]) + momentum * mean);
    if (running_var)
      running_var[c] = float((1.0 - momentum) * double(running_var[c]) + momentum * var * running_var_factor);
  }
};

// mean_f, invstd_f [C] (and the StatsOut pointers) of x [rows, C], rows > 0: one pass over x.
template <typename T>
void streaming_statistics(int64_t rows, int64_t channels, const T* x, int64_t ldx,
                          const StreamingStatisticsFinish<T>& finish, const char* name) {
  constexpr int V = kPack<T>;
  const ChunkPlan plan = chunk_plan(rows);
  if (plan.chunks > 65535) throw_error("batch-norm statistics: too many row chunks", __FILE__, __LINE__);
  ScopedBuffer partials(sizeof(double) * size_t(plan.chunks * 2 * channels), name);
  const bool vectorised = channels % V == 0 && ldx % V == 0 && pack_aligned(x);
  const int64_t per_block = vectorised ? kColumnTile * V : kColumnTile;
  const dim3 grid(unsigned((channels + per_block - 1) / per_block), unsigned(plan.chunks));
  const dim3 block(kColumnTile, kRowLanes);
  if (vectorised)
    bn_moments_partials_kernel<T, V>
        <<<grid, block, 0, stream()>>>(rows, channels, plan.rows_per_chunk, x, ldx, partials.as<double>());
  else
    bn_moments_partials_kernel<T, 1>
        <<<grid, block, 0, stream()>>>(rows, channels, plan.rows_per_chunk, x, ldx, partials.as<double>());
  check_launch(name, __FILE__, __LINE__);
  column_finish_parallel<2>(channels, plan.chunks, partials.as<double>(), finish, name);
}

// --- Per-element passes ---------------------------------------------------------------------------

// y = z = gamma_c * xhat + beta_c, or with the fused ReLU (kRelu) max(z, 0) with NaN kept (as relu_forward).
template <typename T, bool kRelu = false>
struct NormaliseOp {
  const T* x;
  int64_t ldx;
  const float* mean;
  const float* invstd;
  const float* gamma;
  const float* beta;
  T* y;
  int64_t ldy;
  __device__ void operator()(int64_t r, int64_t c) const {
    const float z = bn_output(normalised(x + r * ldx + c, mean, invstd, c), gamma, beta, c);
    put(y + r * ldy + c, kRelu && z < 0.0f ? 0.0f : z, false);
  }
};

// dx (+)= k_c * (g - mean_dy_c - xhat * mean_dy_xhat_c), g the gradient at BN's output (output_gradient).
template <typename T, bool kRelu = false>
struct TrainingDxOp {
  const T* x;
  int64_t ldx;
  const T* dy;
  int64_t ldy;
  const float* mean;
  const float* invstd;
  const float* gamma;  // the fused ReLU's mask only (with beta)
  const float* beta;
  const float* k;
  const float* mean_dy;
  const float* mean_dy_xhat;
  T* dx;
  int64_t ldx_grad;
  bool accumulate;
  __device__ void operator()(int64_t r, int64_t c) const {
    const float xhat = normalised(x + r * ldx + c, mean, invstd, c);
    const float g = output_gradient<kRelu>(dy + r * ldy + c, xhat, gamma, beta, c);
    // Each operation rounded on its own, as the CPU does: an accumulating store then adds the finished dx
    // (nvcc would otherwise fuse the product into the store's addition).
    const float centred = __fsub_rn(__fsub_rn(g, mean_dy[c]), __fmul_rn(xhat, mean_dy_xhat[c]));
    put(dx + r * ldx_grad + c, __fmul_rn(k[c], centred), accumulate);
  }
};

// dx (+)= dy * gamma_c * invstd_c.
template <typename T>
struct EvalDxOp {
  const T* dy;
  int64_t ldy;
  const float* gamma;
  const float* invstd;
  T* dx;
  int64_t ldx_grad;
  bool accumulate;
  __device__ void operator()(int64_t r, int64_t c) const {
    const float k = (gamma ? gamma[c] : 1.0f) * invstd[c];
    put(dx + r * ldx_grad + c, __fmul_rn(load(dy + r * ldy + c), k), accumulate);  // no FMA with the store
  }
};

// invstd_c = 1 / sqrt(running_var_c + eps), via double (as the CPU).
struct EvalInvstdOp {
  const float* running_var;
  double eps;
  float* invstd;
  __device__ void operator()(int64_t c) const {
    invstd[c] = float(1.0 / sqrt(double(running_var[c]) + eps));
  }
};

}  // namespace
}  // namespace detail

// This file's helpers and the backend's shared ones (kernels/cuda/internal.h).
using namespace detail;  // NOLINT(google-build-using-namespace)

namespace {

// A view's elements as T (nullptr for a view without data: an output not wanted).
template <typename T>
const T* typed(const ConstMatrixView& v) {
  if (v.data == nullptr) return nullptr;
  if constexpr (sizeof(T) == 2)
    return v.bf16();
  else
    return v.f32();
}
template <typename T>
T* typed(const MatrixView& v) {
  return const_cast<T*>(typed<T>(ConstMatrixView(v)));
}

// Runs body(T{}) with T = BFloat16 when every view with data is bf16, T = float when none is (shapes
// checked by the caller); a call mixing the two goes through the emulation (bf16_widen.h), which
// calls back here with f32 views.
template <typename Body, typename Widened, typename... Views>
void by_storage_type(Body body, Widened widened, const Views&... views) {
  if (bf16_or_absent(views...)) return body(BFloat16{});
  if (any_bf16(views...)) return widened();
  body(float{});
}

// batch_norm_forward_training, and with `relu` batch_norm_relu_forward_training: one pass for the
// statistics (streaming_statistics), one for y.
template <typename T>
void forward_training(const char* name, int64_t rows, int64_t channels, const T* x, int64_t ldx, T* y, int64_t ldy,
                      const BatchNormChannels& ch, const BatchNormStatsOut& stats, const BatchNormHyper& h,
                      bool relu) {
  if (rows <= 0 || channels <= 0) return;  // no statistics to take; nothing is written
  const double m = double(rows);
  // Temporaries: the float mean and invstd [C] each.
  detail::ScopedBuffer scratch(size_t(channels) * 2 * sizeof(float), "batch-norm statistics");
  float* mean_f = scratch.as<float>();
  float* invstd_f = mean_f + channels;
  const double var_factor = (h.unbiased_running_var && rows > 1) ? m / (m - 1.0) : 1.0;
  streaming_statistics(rows, channels, x, ldx,
                       StreamingStatisticsFinish<T>{m, double(h.eps), double(h.momentum), var_factor, x, mean_f,
                                                    invstd_f, stats.saved_mean, stats.saved_invstd,
                                                    stats.running_mean, stats.running_var},
                       name);
  with_flag(relu, [&](auto fused) {
    constexpr bool kFused = decltype(fused)::value;
    detail::for_each_element(rows, channels,
                             NormaliseOp<T, kFused>{x, ldx, mean_f, invstd_f, ch.gamma, ch.beta, y, ldy}, name);
  });
}

// batch_norm_forward_eval, and with `relu` batch_norm_relu_forward_eval.
template <typename T>
void forward_eval(const char* name, int64_t rows, int64_t channels, const T* x, int64_t ldx, T* y, int64_t ldy,
                  const BatchNormChannels& ch, const BatchNormHyper& h, bool relu) {
  if (rows <= 0 || channels <= 0) return;
  detail::ScopedBuffer scratch(size_t(channels) * sizeof(float), "batch-norm eval invstd");
  float* invstd = scratch.as<float>();
  detail::for_each_index(channels, EvalInvstdOp{ch.running_var, double(h.eps), invstd}, name);
  with_flag(relu, [&](auto fused) {
    constexpr bool kFused = decltype(fused)::value;
    detail::for_each_element(rows, channels,
                             NormaliseOp<T, kFused>{x, ldx, ch.running_mean, invstd, ch.gamma, ch.beta, y, ldy}, name);
  });
}

// batch_norm_backward_training, and with `relu` batch_norm_relu_backward_training (dy masked by [z > 0],
// z recomputed from x): the per-channel sums, then dx (nullable).
template <typename T>
void backward_training(const char* name, int64_t rows, int64_t channels, const T* x, int64_t ldx, const T* dy,
                       int64_t ldy, T* dx, int64_t ldx_grad, const BatchNormChannels& ch, bool accumulate_dx,
                       const BatchNormParamGrads& grads, bool relu) {
  if (rows <= 0 || channels <= 0) return;
  if (!dx && !grads.dgamma && !grads.dbeta) return;
  const double m = double(rows);
  // dx coefficients k, mean_dy, mean_dy_xhat [C] each (only when dx is wanted).
  detail::ScopedBuffer scratch(dx ? size_t(channels) * 3 * sizeof(float) : 0,
                               "batch-norm backward coefficients");
  float* k = scratch.as<float>();
  float* mean_dy = k ? k + channels : nullptr;
  float* mean_dy_xhat = k ? k + 2 * channels : nullptr;
  const GradFinish finish{m, grads.dgamma, grads.dbeta, ch.gamma, ch.saved_invstd, k, mean_dy, mean_dy_xhat};
  with_flag(relu, [&](auto fused) {
    constexpr bool kFused = decltype(fused)::value;
    detail::column_reduce_parallel_finish<2>(
        rows, channels, GradSumsLoad<T, kFused>{x, ldx, dy, ldy, ch.saved_mean, ch.saved_invstd, ch.gamma, ch.beta},
        finish, name);
    if (!dx) return;
    detail::for_each_element(rows, channels,
                             TrainingDxOp<T, kFused>{x, ldx, dy, ldy, ch.saved_mean, ch.saved_invstd, ch.gamma, ch.beta,
                                                     k, mean_dy, mean_dy_xhat, dx, ldx_grad, accumulate_dx},
                             name);
  });
}

template <typename T>
void backward_eval(int64_t rows, int64_t channels, const T* x, int64_t ldx, const T* dy, int64_t ldy, T* dx,
                   int64_t ldx_grad, const BatchNormChannels& ch, const BatchNormHyper& h, bool accumulate_dx,
                   const BatchNormParamGrads& grads) {
  if (rows <= 0 || channels <= 0) return;
  detail::ScopedBuffer scratch(size_t(channels) * sizeof(float), "batch-norm eval invstd");
  float* invstd = scratch.as<float>();
  detail::for_each_index(channels, EvalInvstdOp{ch.running_var, double(h.eps), invstd},
                         "batch_norm_backward_eval (invstd)");
  if (grads.dgamma || grads.dbeta)
    detail::column_reduce_parallel_finish<2>(
        rows, channels, GradSumsLoad<T>{x, ldx, dy, ldy, ch.running_mean, invstd},
        GradFinish{double(rows), grads.dgamma, grads.dbeta, ch.gamma, invstd, nullptr, nullptr, nullptr},
        "batch_norm_backward_eval (sums)");
  if (!dx) return;
  detail::for_each_element(rows, channels, EvalDxOp<T>{dy, ldy, ch.gamma, invstd, dx, ldx_grad, accumulate_dx},
                           "batch_norm_backward_eval (dx)");
}

// The forwards and backwards on views: the shapes checked once, then the typed body on the views'
// storage type (by_storage_type).
template <typename Widened>
void forward_views(const char* name, ConstMatrixView x, MatrixView y, const BatchNormChannels& ch,
                   const BatchNormStatsOut* stats, const BatchNormHyper& h, bool relu, Widened widened) {
  check_same_shape(name, x, y);
  by_storage_type(
      [&](auto type) {
        using T = decltype(type);
        if (stats)
          forward_training(name, x.rows, x.cols, typed<T>(x), x.ld, typed<T>(y), y.ld, ch, *stats, h, relu);
        else
          forward_eval(name, x.rows, x.cols, typed<T>(x), x.ld, typed<T>(y), y.ld, ch, h, relu);
      },
      widened, x, y);
}

template <typename Widened>
void backward_views(const char* name, ConstMatrixView x, ConstMatrixView dy, MatrixView dx,
                    const BatchNormChannels& ch, const BatchNormHyper* eval, bool accumulate_dx,
                    const BatchNormParamGrads& grads, bool relu, Widened widened) {
  check_same_shape(name, x, dy);
  if (dx.data) check_same_shape(name, x, dx);
  by_storage_type(
      [&](auto type) {
        using T = decltype(type);
        if (eval)
          backward_eval(x.rows, x.cols, typed<T>(x), x.ld, typed<T>(dy), dy.ld, typed<T>(dx), dx.ld, ch, *eval,
                        accumulate_dx, grads);
        else
          backward_training(name, x.rows, x.cols, typed<T>(x), x.ld, typed<T>(dy), dy.ld, typed<T>(dx), dx.ld, ch,
                            accumulate_dx, grads, relu);
      },
      widened, x, dy, dx);
}

}  // namespace

void batch_norm_forward_training(ConstMatrixView x, MatrixView y, const BatchNormChannels& ch,
                                 const BatchNormStatsOut& stats, const BatchNormHyper& h) {
  forward_views("batch_norm_forward_training", x, y, ch, &stats, h, false,
                [&] { run_widened(&batch_norm_forward_training, x, y, ch, stats, h); });
}

void batch_norm_relu_forward_training(ConstMatrixView x, MatrixView y, const BatchNormChannels& ch,
                                      const BatchNormStatsOut& stats, const BatchNormHyper& h) {
  forward_views("batch_norm_relu_forward_training", x, y, ch, &stats, h, true,
                [&] { run_widened(&batch_norm_relu_forward_training, x, y, ch, stats, h); });
}

void batch_norm_forward_eval(ConstMatrixView x, MatrixView y, const BatchNormChannels& ch,
                             const BatchNormHyper& h) {
  forward_views("batch_norm_forward_eval", x, y, ch, nullptr, h, false,
                [&] { run_widened(&batch_norm_forward_eval, x, y, ch, h); });
}

void batch_norm_relu_forward_eval(ConstMatrixView x, MatrixView y, const BatchNormChannels& ch,
                                  const BatchNormHyper& h) {
  forward_views("batch_norm_relu_forward_eval", x, y, ch, nullptr, h, true,
                [&] { run_widened(&batch_norm_relu_forward_eval, x, y, ch, h); });
}

void batch_norm_backward_training(ConstMatrixView x, ConstMatrixView dy, const BatchNormChannels& ch,
                                  MatrixView dx, bool accumulate_dx, const BatchNormParamGrads& grads) {
  backward_views("batch_norm_backward_training", x, dy, dx, ch, nullptr, accumulate_dx, grads, false,
                 [&] { run_widened(&batch_norm_backward_training, x, dy, ch, dx, accumulate_dx, grads); });
}

void batch_norm_relu_backward_training(ConstMatrixView x, ConstMatrixView dy, const BatchNormChannels& ch,
                                       MatrixView dx, bool accumulate_dx, const BatchNormParamGrads& grads) {
  backward_views("batch_norm_relu_backward_training", x, dy, dx, ch, nullptr, accumulate_dx, grads, true,
                 [&] { run_widened(&batch_norm_relu_backward_training, x, dy, ch, dx, accumulate_dx, grads); });
}

void batch_norm_backward_eval(ConstMatrixView x, ConstMatrixView dy, const BatchNormChannels& ch,
                              const BatchNormHyper& h, MatrixView dx, bool accumulate_dx,
                              const BatchNormParamGrads& grads) {
  backward_views("batch_norm_backward_eval", x, dy, dx, ch, &h, accumulate_dx, grads, false,
                 [&] { run_widened(&batch_norm_backward_eval, x, dy, ch, h, dx, accumulate_dx, grads); });
}

// --- Synchronised batch norm (batchnorm_api.inc): the sums, and the passes that use sums taken over every
// process ---

namespace {

// sums[c] = sum_r x[r, c], or sum_r (x[r, c] - center[c])^2 with a center.
template <typename T>
struct ChannelSumLoad {
  const T* x;
  int64_t ldx;
  const double* center;
  __device__ void operator()(int64_t r, int64_t c, double (&acc)[1]) const {
    const double v = double(load(x + r * ldx + c));
    if (center == nullptr) {
      acc[0] += v;
      return;
    }
    const double d = v - center[c];
    acc[0] = __dadd_rn(acc[0], __dmul_rn(d, d));  // rounded as the CPU's product, then sum
  }
};

// sums[k * cols + c] = s[k]: the K sums of each channel, one block of `cols` after another.
template <int K>
struct StoreChannelSums {
  double* sums;
  int64_t cols;
  __device__ void operator()(int64_t c, const double (&s)[K]) const {
#pragma unroll
    for (int k = 0; k < K; ++k) sums[k * cols + c] = s[k];
  }
};

// The dx coefficients of TrainingDxOp from sums over every process's `count` rows.
struct SyncedDxCoefficientsOp {
  const double* sums;
  int64_t channels;
  double count;
  const float* gamma;
  const float* invstd;
  float* k;
  float* mean_dy;
  float* mean_dy_xhat;
  __device__ void operator()(int64_t c) const {
    k[c] = (gamma ? gamma[c] : 1.0f) * invstd[c];
    mean_dy[c] = float(sums[c] / count);
    mean_dy_xhat[c] = float(sums[channels + c] / count);
  }
};

// mean[c] = sums[c] / count.
struct SyncMeanOp {
  const double* sums;
  double count;
  double* mean;
  __device__ void operator()(int64_t c) const { mean[c] = __ddiv_rn(sums[c], count); }
};

// The CPU's batch_norm_sync_statistics, each operation rounded as the CPU rounds it (no contraction).
struct SyncStatisticsOp {
  const double* mean;
  const double* var_sums;
  double count, eps, momentum, var_factor;
  BatchNormStatsOut stats;
  __device__ void operator()(int64_t c) const {
    const double var = __ddiv_rn(var_sums[c], count);
    if (stats.saved_mean) stats.saved_mean[c] = float(mean[c]);
    if (stats.saved_invstd) stats.saved_invstd[c] = float(__ddiv_rn(1.0, __dsqrt_rn(__dadd_rn(var, eps))));
    const double keep = 1.0 - momentum;
    if (stats.running_mean)
      stats.running_mean[c] =
          float(__dadd_rn(__dmul_rn(keep, double(stats.running_mean[c])), __dmul_rn(momentum, mean[c])));
    if (stats.running_var)
      stats.running_var[c] = float(__dadd_rn(__dmul_rn(keep, double(stats.running_var[c])),
                                             __dmul_rn(__dmul_rn(momentum, var), var_factor)));
  }
};

struct SyncParameterGradsOp {
  const double* sums;
  int64_t channels;
  BatchNormParamGrads grads;
  __device__ void operator()(int64_t c) const {
    if (grads.dbeta) grads.dbeta[c] = float(sums[c]);
    if (grads.dgamma) grads.dgamma[c] = float(sums[channels + c]);
  }
};

}  // namespace

void batch_norm_sync_mean(const double* sums, int64_t channels, double count, double* mean) {
  for_each_index(channels, SyncMeanOp{sums, count, mean}, "batch_norm_sync_mean");
}

void batch_norm_sync_statistics(const double* mean, const double* var_sums, int64_t channels, double count,
                                const BatchNormStatsOut& stats, const BatchNormHyper& h) {
  const double var_factor = (h.unbiased_running_var && count > 1.0) ? count / (count - 1.0) : 1.0;
  for_each_index(channels,
                 SyncStatisticsOp{mean, var_sums, count, double(h.eps), double(h.momentum), var_factor, stats},
                 "batch_norm_sync_statistics");
}

void batch_norm_sync_parameter_grads(const double* sums, int64_t channels, const BatchNormParamGrads& grads) {
  for_each_index(channels, SyncParameterGradsOp{sums, channels, grads}, "batch_norm_sync_parameter_grads");
}

void batch_norm_channel_sums(ConstMatrixView x, const double* center, double* sums) {
  if (x.cols <= 0) return;
  by_storage_type(
      [&](auto type) {
        using T = decltype(type);
        column_reduce_parallel_finish<1>(x.rows, x.cols, ChannelSumLoad<T>{typed<T>(x), x.ld, center},
                                         StoreChannelSums<1>{sums, x.cols}, "batch_norm_channel_sums");
      },
      [] {}, x);
}

void batch_norm_backward_channel_sums(ConstMatrixView x, ConstMatrixView dy, const BatchNormChannels& ch,
                                      double* sums) {
  check_same_shape("batch_norm_backward_channel_sums", x, dy);
  if (x.cols <= 0) return;
  by_storage_type(
      [&](auto type) {
        using T = decltype(type);
        column_reduce_parallel_finish<2>(
            x.rows, x.cols, GradSumsLoad<T>{typed<T>(x), x.ld, typed<T>(dy), dy.ld, ch.saved_mean, ch.saved_invstd},
            StoreChannelSums<2>{sums, x.cols}, "batch_norm_backward_channel_sums");
      },
      [&] { run_widened(&batch_norm_backward_channel_sums, x, dy, ch, sums); }, x, dy);
}

void batch_norm_normalize_forward(ConstMatrixView x, MatrixView y, const BatchNormChannels& ch) {
  check_same_shape("batch_norm_normalize_forward", x, y);
  if (x.rows <= 0 || x.cols <= 0) return;
  by_storage_type(
      [&](auto type) {
        using T = decltype(type);
        for_each_element(x.rows, x.cols,
                         NormaliseOp<T>{typed<T>(x), x.ld, ch.saved_mean, ch.saved_invstd, ch.gamma, ch.beta,
                                        typed<T>(y), y.ld},
                         "batch_norm_normalize_forward");
      },
      [&] { run_widened(&batch_norm_normalize_forward, x, y, ch); }, x, y);
}

void batch_norm_normalize_backward(ConstMatrixView x, ConstMatrixView dy, const BatchNormChannels& ch,
                                   const double* sums, double count, MatrixView dx) {
  check_same_shape("batch_norm_normalize_backward", x, dy);
  check_same_shape("batch_norm_normalize_backward", x, dx);
  if (x.rows <= 0 || x.cols <= 0) return;
  const int64_t channels = x.cols;
  ScopedBuffer scratch(size_t(channels) * 3 * sizeof(float), "synced batch-norm dx coefficients");
  float* k = scratch.as<float>();
  float* mean_dy = k + channels;
  float* mean_dy_xhat = k + 2 * channels;
  for_each_index(channels,
                 SyncedDxCoefficientsOp{sums, channels, count, ch.gamma, ch.saved_invstd, k, mean_dy, mean_dy_xhat},
                 "batch_norm_normalize_backward (coefficients)");
  by_storage_type(
      [&](auto type) {
        using T = decltype(type);
        for_each_element(x.rows, channels,
                         TrainingDxOp<T>{typed<T>(x), x.ld, typed<T>(dy), dy.ld, ch.saved_mean, ch.saved_invstd,
                                         nullptr, nullptr, k, mean_dy, mean_dy_xhat, typed<T>(dx), dx.ld, false},
                         "batch_norm_normalize_backward");
      },
      [&] { run_widened(&batch_norm_normalize_backward, x, dy, ch, sums, count, dx); }, x, dy, dx);
}

}  // namespace kernels::cuda
