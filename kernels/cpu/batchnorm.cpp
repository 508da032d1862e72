// Batch normalisation on the CPU (see batchnorm.h for the contract, docs/derivations.md for the
// backward). Per channel c over the M = rows values of an NHWC activation [rows, C]:
//   mean_c = (1/M) sum x,  var_c = (1/M) sum (x - mean_c)^2,  invstd_c = 1 / sqrt(var_c + eps)
//   y = gamma_c * (x - mean_c) * invstd_c + beta_c
//   backward: dbeta_c = sum dy, dgamma_c = sum dy * xhat,
//             dx = gamma_c * invstd_c * (dy - dbeta_c / M - xhat * dgamma_c / M)
//
// Reductions. Channels are the fastest index, so every pass walks rows outer, channels inner. The
// rows are cut into blocks whose size depends on `rows` only (never on the thread count); each
// block sums its rows into its own double-precision partial per channel, and the partials are then
// added in block order (threaded over channels). The result is therefore bit-identical for any
// number of threads and any run. The forward's statistics take one pass over x from memory: each
// block's sum, then its centred sum of squares from cache, merged exactly as two passes would be
// to double precision (channel_moments). Strided inputs (a channel prefix of DenseNet's block
// buffer) are prefetched in software (row_prefetch.h).
//
// Fused with the ReLU after it (batch_norm_relu_*): forward y = max(z, 0) with z the BN output, in the
// normalising loop; backward with dz = [z > 0] dy, z recomputed from x by the same expression as the
// forward (bn_affine), so the mask is the forward's and nothing of z is stored. The reference for
// the CUDA fused kernels; bit-equal to the unfused pair.
#include "kernels/batchnorm.h"
#include "kernels/cpu/bf16_widen.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/cpu/row_prefetch.h"

namespace kernels::cpu {
namespace {

// Below this many elements a pass runs on one thread (starting OpenMP would cost more).
constexpr int64_t kParallelMinElements = 1 << 15;
// Row blocks for the reductions: at least kMinBlockRows rows each, at most kMaxBlocks blocks.
constexpr int64_t kMinBlockRows = 32;
constexpr int64_t kMaxBlocks = 256;

struct RowBlocks {
  int64_t size = 0;   // rows per block (the last block may be shorter)
  int64_t count = 0;  // number of blocks
};

RowBlocks row_blocks(int64_t rows) {
  RowBlocks b;
  b.size = std::max(kMinBlockRows, (rows + kMaxBlocks - 1) / kMaxBlocks);
  b.count = (rows + b.size - 1) / b.size;
  return b;
}

// Per-block partial sums: `parts` arrays of `channels` doubles per row block, [block][part][channel],
// left uninitialised (each block zeroes its own, in its thread's cache).
struct BlockPartials {
  BlockPartials(int64_t blocks, int64_t parts, int64_t channels)
      : stride(parts * channels), values(new double[static_cast<size_t>(blocks * parts * channels)]) {}
  double* block(int64_t b) const { return values.get() + b * stride; }
  int64_t stride;
  std::unique_ptr<double[]> values;
};

// The reductions' tasks: a row block, or where there are fewer than kFewBlocks blocks (wide, short
// activations, e.g. 7x7 x 1920 at batch 4) a row block and up to kTaskChannels of its channels, so
// that the threads get even shares. Channels are independent: the split changes no sum.
constexpr int64_t kFewBlocks = 32;
constexpr int64_t kTaskChannels = 256;

int64_t channel_groups(const RowBlocks& blocks, int64_t channels) {
  return blocks.count >= kFewBlocks ? 1 : (channels + kTaskChannels - 1) / kTaskChannels;
}
// Channels per task of the merges (each sums its channels over the blocks in block order).
constexpr int64_t kMergeChannels = 64;

// The team functions below run inside a parallel region (or on one thread outside one): each splits
// its loop over the team with an orphaned `omp for`, whose implicit barrier ends it. A batch norm
// pass is then one parallel region, its statistics and its rows: with passive waiting, each region
// costs ~40 us of waking and joining the threads on our 2-core VMs.

// Per-task partial moments for the mean and biased variance over all rows, in one pass over x from
// memory. Each row block b (n_b rows) takes its sum S_b[c] and then, while its rows are still in
// cache, its centred sum of squares Q_b[c] = sum_{r in b} (x[r, c] - S_b[c] / n_b)^2, in double.
void block_moments(int64_t rows, int64_t channels, const float* x, int64_t ldx, const RowBlocks& blocks,
                   int64_t groups, const BlockPartials& partials, const RowPrefetcher& prefetch_x) {
  std::vector<double> block_mean(static_cast<size_t>(groups > 1 ? kTaskChannels : channels));
#pragma omp for schedule(static)
  for (int64_t task = 0; task < blocks.count * groups; ++task) {
    const int64_t b = task / groups, c0 = (task % groups) * kTaskChannels;
    const int64_t width = groups > 1 ? std::min(channels - c0, kTaskChannels) : channels;
    double* sum = partials.block(b) + c0;
    double* centred = sum + channels;
    std::fill(sum, sum + width, 0.0);
    std::fill(centred, centred + width, 0.0);
    const int64_t begin = b * blocks.size, end = std::min(rows, begin + blocks.size);
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * ldx + c0;
      prefetch_x(r, c0, c0 + width);
      for (int64_t c = 0; c < width; ++c) sum[c] += xr[c];
    }
    const double inv_count = 1.0 / static_cast<double>(end - begin);
    for (int64_t c = 0; c < width; ++c) block_mean[c] = sum[c] * inv_count;
    const double* m = block_mean.data();
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * ldx + c0;
      for (int64_t c = 0; c < width; ++c) {
        const double d = static_cast<double>(xr[c]) - m[c];
        centred[c] += d * d;
      }
    }
  }
}

// The blocks' moments merged in block order (Chan et al.'s pairwise update, as stable as two passes
// over all of x):  mean = sum_b S_b / M,   var = (1/M) sum_b (Q_b + n_b (S_b / n_b - mean)^2);
// and their float forms, what y is computed from and backward sees: mean_f, invstd_f = 1/sqrt(var + eps).
void merge_moments(int64_t rows, int64_t channels, const RowBlocks& blocks, const BlockPartials& partials,
                   float eps, double* mean, double* var, float* mean_f, float* invstd_f) {
  const double m_total = static_cast<double>(rows);
#pragma omp for schedule(static)
  for (int64_t c0 = 0; c0 < channels; c0 += kMergeChannels) {
    const int64_t c1 = std::min(channels, c0 + kMergeChannels);
    std::fill(mean + c0, mean + c1, 0.0);
    std::fill(var + c0, var + c1, 0.0);
    for (int64_t b = 0; b < blocks.count; ++b) {
      const double* p = partials.block(b);
      for (int64_t c = c0; c < c1; ++c) mean[c] += p[c];
    }
    for (int64_t c = c0; c < c1; ++c) mean[c] /= m_total;
    for (int64_t b = 0; b < blocks.count; ++b) {
      const double* p = partials.block(b);
      const double n_b = static_cast<double>(std::min(rows, (b + 1) * blocks.size) - b * blocks.size);
      for (int64_t c = c0; c < c1; ++c) {
        const double shift = p[c] / n_b - mean[c];
        var[c] += p[channels + c] + n_b * shift * shift;
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      var[c] /= m_total;
      mean_f[c] = static_cast<float>(mean[c]);
      invstd_f[c] = static_cast<float>(1.0 / std::sqrt(var[c] + static_cast<double>(eps)));
    }
  }
}

// gamma and beta per channel with the nulls resolved (1 and 0), made once per call so that the row
// loops read two arrays, with no per-element check, and vectorise. (1 * xhat + 0 is what the null
// cases computed before, bit for bit, fused into an FMA or not.)
struct ChannelAffine {
  ChannelAffine(int64_t channels, const float* gamma_or_null, const float* beta_or_null)
      : ones(gamma_or_null ? 0 : static_cast<size_t>(channels), 1.0f),
        zeros(beta_or_null ? 0 : static_cast<size_t>(channels), 0.0f),
        gamma(gamma_or_null ? gamma_or_null : ones.data()),
        beta(beta_or_null ? beta_or_null : zeros.data()) {}
  ChannelAffine(const ChannelAffine&) = delete;  // gamma/beta may point into its own vectors
  ChannelAffine& operator=(const ChannelAffine&) = delete;

  std::vector<float> ones, zeros;
  const float* gamma;  // [C]
  const float* beta;   // [C]
};

// The BN output z = gamma_c * xhat + beta_c: one expression for the forward and for the fused
// backward's recomputed ReLU mask, so that both round (and contract, under -march with FMA) alike.
inline float bn_affine(float xhat, float gamma_c, float beta_c) { return gamma_c * xhat + beta_c; }

// ReLU's gradient folded into BN's backward: dz = [z > 0] dy (relu_backward's [y > 0] on
// y = max(z, 0)), bit for bit. A mask on dy's bits rather than `z > 0 ? dy : 0`: g++ 12 sinks the sums'
// float -> double widening of dy into such a select's branch, cannot if-convert it there (a conversion
// may trap) and leaves the loop scalar, branching on random signs.
inline float relu_masked_grad(float dy, float z) {
  uint32_t bits;
  std::memcpy(&bits, &dy, sizeof bits);
  bits &= 0u - static_cast<uint32_t>(z > 0.0f);  // all ones where z > 0, else +0's bits
  float masked;
  std::memcpy(&masked, &bits, sizeof masked);
  return masked;
}

// Where set, the backward's dy counts only where z > 0; gamma/beta: ChannelAffine's full [C] arrays.
struct ReluMask {
  bool on = false;
  const float* gamma = nullptr;
  const float* beta = nullptr;
};

// Per-task partial sums for the backward, in double:
//   sum_dy[c] = sum_r dy[r, c],  sum_dy_xhat[c] = sum_r dy[r, c] * (x[r, c] - mean[c]) * invstd[c]
// (dy masked by `relu` where it is on).
void block_grad_sums(int64_t rows, int64_t channels, const float* x, int64_t ldx, const float* dy,
                     int64_t ldy, const float* mean, const float* invstd, const RowBlocks& blocks,
                     int64_t groups, const BlockPartials& partials, const RowPrefetcher& prefetch_x,
                     const RowPrefetcher& prefetch_dy, const ReluMask& relu = ReluMask()) {
#pragma omp for schedule(static)
  for (int64_t task = 0; task < blocks.count * groups; ++task) {
    const int64_t b = task / groups, c0 = (task % groups) * kTaskChannels;
    const int64_t width = groups > 1 ? std::min(channels - c0, kTaskChannels) : channels;
    double* acc_dy = partials.block(b) + c0;
    double* acc_dy_xhat = acc_dy + channels;
    std::fill(acc_dy, acc_dy + width, 0.0);
    std::fill(acc_dy_xhat, acc_dy_xhat + width, 0.0);
    const float* mean_c = mean + c0;
    const float* invstd_c = invstd + c0;
    const int64_t end = std::min(rows, (b + 1) * blocks.size);
    for (int64_t r = b * blocks.size; r < end; ++r) {
      const float* xr = x + r * ldx + c0;
      const float* dyr = dy + r * ldy + c0;
      prefetch_x(r, c0, c0 + width);
      prefetch_dy(r, c0, c0 + width);
      if (relu.on) {
        const float* gamma_c = relu.gamma + c0;
        const float* beta_c = relu.beta + c0;
        for (int64_t c = 0; c < width; ++c) {
          const float xhat = (xr[c] - mean_c[c]) * invstd_c[c];
          const float g = relu_masked_grad(dyr[c], bn_affine(xhat, gamma_c[c], beta_c[c]));
          acc_dy[c] += g;
          acc_dy_xhat[c] += static_cast<double>(g) * xhat;
        }
        continue;
      }
      for (int64_t c = 0; c < width; ++c) {
        const float xhat = (xr[c] - mean_c[c]) * invstd_c[c];
        acc_dy[c] += dyr[c];
        acc_dy_xhat[c] += static_cast<double>(dyr[c]) * xhat;
      }
    }
  }
}

// The blocks' gradient sums added in block order. With `dx_terms` (backward training's dx), also
// each channel's k_c = gamma_c * invstd_c, mean_dy_c = sum_dy_c / M and mean_dy_xhat_c in float, in the
// same loop (a barrier less: each costs a wake-up under passive waiting).
struct DxTerms {
  const float* gamma;  // may be null
  const float* invstd;
  double rows;
  float *k, *mean_dy, *mean_dy_xhat;
};

void merge_grad_sums(int64_t channels, const RowBlocks& blocks, const BlockPartials& partials,
                     double* sum_dy, double* sum_dy_xhat, const DxTerms* dx_terms) {
#pragma omp for schedule(static)
  for (int64_t c0 = 0; c0 < channels; c0 += kMergeChannels) {
    const int64_t c1 = std::min(channels, c0 + kMergeChannels);
    std::fill(sum_dy + c0, sum_dy + c1, 0.0);
    std::fill(sum_dy_xhat + c0, sum_dy_xhat + c1, 0.0);
    for (int64_t b = 0; b < blocks.count; ++b) {
      const double* p = partials.block(b);
      for (int64_t c = c0; c < c1; ++c) {
        sum_dy[c] += p[c];
        sum_dy_xhat[c] += p[channels + c];
      }
    }
    if (dx_terms == nullptr) continue;
    const DxTerms& t = *dx_terms;
    for (int64_t c = c0; c < c1; ++c) {
      t.k[c] = (t.gamma ? t.gamma[c] : 1.0f) * t.invstd[c];
      t.mean_dy[c] = static_cast<float>(sum_dy[c] / t.rows);
      t.mean_dy_xhat[c] = static_cast<float>(sum_dy_xhat[c] / t.rows);
    }
  }
}

// Per-channel gradient sums over all rows (a whole parallel region; batch_norm_backward_eval's).
void channel_grad_sums(int64_t rows, int64_t channels, const float* x, int64_t ldx, const float* dy,
                       int64_t ldy, const float* mean, const float* invstd, double* sum_dy,
                       double* sum_dy_xhat) {
  const RowBlocks blocks = row_blocks(rows);
  const BlockPartials partials(blocks.count, 2, channels);  // [sum_dy, sum_dy_xhat] per block
  const int64_t groups = channel_groups(blocks, channels);
  const RowPrefetcher prefetch_x(x, rows, channels, ldx), prefetch_dy(dy, rows, channels, ldy);
#pragma omp parallel if (rows * channels >= kParallelMinElements)
  {
    block_grad_sums(rows, channels, x, ldx, dy, ldy, mean, invstd, blocks, groups, partials, prefetch_x,
                    prefetch_dy);
    merge_grad_sums(channels, blocks, partials, sum_dy, sum_dy_xhat, nullptr);
  }
}

// y = gamma_c * (x - mean_c) * invstd_c + beta_c over all rows (ChannelAffine's arrays), then with
// `relu` y = max(y, 0) as relu_forward rounds it (NaN kept). The last loop of its region: no barrier of
// its own (the region's end waits for the team).
void normalise_rows(int64_t rows, int64_t channels, const float* x, int64_t ldx, const float* mean,
                    const float* invstd, const float* gamma, const float* beta, float* y, int64_t ldy,
                    const RowPrefetcher& prefetch_x, bool relu = false) {
#pragma omp for schedule(static) nowait
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * ldy;
    prefetch_x(r);
    for (int64_t c = 0; c < channels; ++c) {
      const float xhat = (xr[c] - mean[c]) * invstd[c];
      const float z = bn_affine(xhat, gamma[c], beta[c]);
      yr[c] = relu && z < 0.0f ? 0.0f : z;
    }
  }
}

// Eval-mode inverse standard deviations: invstd_c = 1 / sqrt(running_var_c + eps), via double.
std::vector<float> eval_invstd(int64_t channels, const float* running_var, float eps) {
  std::vector<float> invstd(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c)
    invstd[c] = static_cast<float>(
        1.0 / std::sqrt(static_cast<double>(running_var[c]) + static_cast<double>(eps)));
  return invstd;
}

// dbeta += sum_dy, dgamma += sum_dy_xhat (each where wanted), rounded to float.
void accumulate_param_grads(int64_t channels, const double* sum_dy, const double* sum_dy_xhat,
                            const BatchNormParamGrads& grads) {
  if (grads.dbeta)
    for (int64_t c = 0; c < channels; ++c) grads.dbeta[c] += static_cast<float>(sum_dy[c]);
  if (grads.dgamma)
    for (int64_t c = 0; c < channels; ++c) grads.dgamma[c] += static_cast<float>(sum_dy_xhat[c]);
}

// Running statistics from a batch's mean and (biased) variance over `count` rows; momentum is the weight
// of the new batch. With one row the unbiased estimate count/(count-1) is undefined, so the biased
// variance is used there. In double, rounded once (the synchronised batch norm's too).
void update_running_statistics(int64_t channels, const double* mean, const double* var, double count,
                               const BatchNormStatsOut& stats, const BatchNormHyper& h) {
  const double mom = static_cast<double>(h.momentum);
  const double var_factor = (h.unbiased_running_var && count > 1.0) ? count / (count - 1.0) : 1.0;
  if (stats.running_mean) {
    for (int64_t c = 0; c < channels; ++c)
      stats.running_mean[c] = static_cast<float>((1.0 - mom) * stats.running_mean[c] + mom * mean[c]);
  }
  if (stats.running_var) {
    for (int64_t c = 0; c < channels; ++c)
      stats.running_var[c] = static_cast<float>((1.0 - mom) * stats.running_var[c] + mom * var[c] * var_factor);
  }
}

// batch_norm_forward_training, and with `relu` batch_norm_relu_forward_training.
void forward_training(const char* name, ConstMatrixView x_view, MatrixView y_view, const BatchNormChannels& ch,
                      const BatchNormStatsOut& stats, const BatchNormHyper& h, bool relu) {
  const auto [rows, channels, x, ldx, y, ldy] = batch_norm_forward_operands(name, x_view, y_view);
  if (rows <= 0 || channels <= 0) return;  // no statistics to take; nothing is written
  const double m = static_cast<double>(rows);

  const RowBlocks blocks = row_blocks(rows);
  const int64_t groups = channel_groups(blocks, channels);
  const BlockPartials partials(blocks.count, 2, channels);  // [S_b, Q_b] per block
  std::vector<double> mean(static_cast<size_t>(channels));
  std::vector<double> var(static_cast<size_t>(channels));  // biased: the one used to normalise
  // The float statistics are what backward sees; y is computed from exactly them.
  std::vector<float> mean_f(static_cast<size_t>(channels));
  std::vector<float> invstd_f(static_cast<size_t>(channels));
  const ChannelAffine affine(channels, ch.gamma, ch.beta);
  const RowPrefetcher prefetch_x(x, rows, channels, ldx);
#pragma omp parallel if (rows * channels >= kParallelMinElements)
  {
    block_moments(rows, channels, x, ldx, blocks, groups, partials, prefetch_x);
    merge_moments(rows, channels, blocks, partials, h.eps, mean.data(), var.data(), mean_f.data(),
                  invstd_f.data());
    normalise_rows(rows, channels, x, ldx, mean_f.data(), invstd_f.data(), affine.gamma,
                   affine.beta, y, ldy, prefetch_x, relu);
  }

  if (stats.saved_mean) std::copy(mean_f.begin(), mean_f.end(), stats.saved_mean);
  if (stats.saved_invstd) std::copy(invstd_f.begin(), invstd_f.end(), stats.saved_invstd);

  update_running_statistics(channels, mean.data(), var.data(), m, stats, h);
}

// batch_norm_forward_eval, and with `relu` batch_norm_relu_forward_eval.
void forward_eval(const char* name, ConstMatrixView x_view, MatrixView y_view, const BatchNormChannels& ch,
                  const BatchNormHyper& h, bool relu) {
  const auto [rows, channels, x, ldx, y, ldy] = batch_norm_forward_operands(name, x_view, y_view);
  if (rows <= 0 || channels <= 0) return;
  const std::vector<float> invstd = eval_invstd(channels, ch.running_var, h.eps);
  const ChannelAffine affine(channels, ch.gamma, ch.beta);
  const RowPrefetcher prefetch_x(x, rows, channels, ldx);
#pragma omp parallel if (rows * channels >= kParallelMinElements)
  normalise_rows(rows, channels, x, ldx, ch.running_mean, invstd.data(), affine.gamma, affine.beta,
                 y, ldy, prefetch_x, relu);
}

// batch_norm_backward_training, and with `relu` batch_norm_relu_backward_training (dy masked by [z > 0]).
void backward_training(const char* name, ConstMatrixView x_view, ConstMatrixView dy_view,
                       const BatchNormChannels& ch, MatrixView dx_view, bool accumulate_dx,
                       const BatchNormParamGrads& grads, bool relu_on) {
  const auto [rows, channels, x, ldx, dy, ldy, dx, ldx_grad] =
      batch_norm_backward_operands(name, x_view, dy_view, dx_view);
  if (rows <= 0 || channels <= 0) return;
  if (!dx && !grads.dgamma && !grads.dbeta) return;
  const float *saved_mean = ch.saved_mean, *saved_invstd = ch.saved_invstd;
  // The mask's gamma/beta arrays, also where it is off (2C floats: a valid read for any loop version).
  const ChannelAffine affine(channels, ch.gamma, ch.beta);
  const ReluMask relu{relu_on, affine.gamma, affine.beta};

  // dx needs both sums, whatever dgamma/dbeta ask for. One parallel region: the sums, then
  //   dx = k_c * (dy - mean_dy_c - xhat * mean_dy_xhat_c),  k_c = gamma_c * invstd_c.
  const RowBlocks blocks = row_blocks(rows);
  const int64_t groups = channel_groups(blocks, channels);
  const BlockPartials partials(blocks.count, 2, channels);  // [sum_dy, sum_dy_xhat] per block
  std::vector<double> sum_dy(static_cast<size_t>(channels));
  std::vector<double> sum_dy_xhat(static_cast<size_t>(channels));
  std::vector<float> k(static_cast<size_t>(channels));
  std::vector<float> mean_dy(static_cast<size_t>(channels));
  std::vector<float> mean_dy_xhat(static_cast<size_t>(channels));
  const DxTerms terms{ch.gamma, saved_invstd, static_cast<double>(rows), k.data(), mean_dy.data(),
                      mean_dy_xhat.data()};
  const RowPrefetcher prefetch_x(x, rows, channels, ldx), prefetch_dy(dy, rows, channels, ldy);
#pragma omp parallel if (rows * channels >= kParallelMinElements)
  {
    block_grad_sums(rows, channels, x, ldx, dy, ldy, saved_mean, saved_invstd, blocks, groups, partials,
                    prefetch_x, prefetch_dy, relu);
    merge_grad_sums(channels, blocks, partials, sum_dy.data(), sum_dy_xhat.data(), dx ? &terms : nullptr);
    if (dx) {
#pragma omp for schedule(static) nowait  // the region's end waits for the team
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * ldx;
        const float* dyr = dy + r * ldy;
        float* dxr = dx + r * ldx_grad;
        prefetch_x(r);
        prefetch_dy(r);
        for (int64_t c = 0; c < channels; ++c) {
          const float xhat = (xr[c] - saved_mean[c]) * saved_invstd[c];
          const float dz =
              relu.on ? relu_masked_grad(dyr[c], bn_affine(xhat, relu.gamma[c], relu.beta[c])) : dyr[c];
          const float g = k[c] * (dz - mean_dy[c] - xhat * mean_dy_xhat[c]);
          dxr[c] = accumulate_dx ? dxr[c] + g : g;
        }
      }
    }
  }
  accumulate_param_grads(channels, sum_dy.data(), sum_dy_xhat.data(), grads);
}

}  // namespace

namespace {

// Per-channel sums of a [rows, C] matrix for the synchronised batch norm: sums[c] = sum_r term(r, c) in
// double, each channel's in row order (the same bits for any thread count); threads take blocks of
// channels.
template <typename Term>
void sync_channel_sums(int64_t rows, int64_t channels, double* sums, const Term& term) {
  constexpr int64_t kBlock = 16;
  const int64_t blocks = (channels + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (rows * channels >= kParallelMinElements)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t c0 = b * kBlock, c1 = std::min(channels, c0 + kBlock);
    for (int64_t c = c0; c < c1; ++c) sums[c] = 0.0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = c0; c < c1; ++c) sums[c] += term(r, c);
  }
}

float xhat_of(const float* x, const BatchNormChannels& ch, int64_t c) {
  return (*x - ch.saved_mean[c]) * ch.saved_invstd[c];
}

}  // namespace

void batch_norm_channel_sums(ConstMatrixView x_view, const double* center, double* sums) {
  if (any_bf16(x_view)) return run_widened(&batch_norm_channel_sums, x_view, center, sums);
  const int64_t rows = x_view.rows, channels = x_view.cols, ldx = x_view.ld;
  const float* x = x_view.f32();
  if (center == nullptr) {
    sync_channel_sums(rows, channels, sums, [x, ldx](int64_t r, int64_t c) { return double(x[r * ldx + c]); });
    return;
  }
  sync_channel_sums(rows, channels, sums, [x, ldx, center](int64_t r, int64_t c) {
    const double d = x[r * ldx + c] - center[c];
    return d * d;
  });
}

void batch_norm_backward_channel_sums(ConstMatrixView x_view, ConstMatrixView dy_view, const BatchNormChannels& ch,
                                      double* sums) {
  if (any_bf16(x_view, dy_view)) return run_widened(&batch_norm_backward_channel_sums, x_view, dy_view, ch, sums);
  check_same_shape("batch_norm_backward_channel_sums", x_view, dy_view);
  const int64_t rows = x_view.rows, channels = x_view.cols, ldx = x_view.ld, ldy = dy_view.ld;
  const float *x = x_view.f32(), *dy = dy_view.f32();
  sync_channel_sums(rows, channels, sums, [dy, ldy](int64_t r, int64_t c) { return double(dy[r * ldy + c]); });
  sync_channel_sums(rows, channels, sums + channels, [&ch, x, ldx, dy, ldy](int64_t r, int64_t c) {
    return double(dy[r * ldy + c]) * xhat_of(x + r * ldx + c, ch, c);
  });
}

void batch_norm_sync_mean(const double* sums, int64_t channels, double count, double* mean) {
  for (int64_t c = 0; c < channels; ++c) mean[c] = sums[c] / count;
}

void batch_norm_sync_statistics(const double* mean, const double* var_sums, int64_t channels, double count,
                                const BatchNormStatsOut& stats, const BatchNormHyper& h) {
  // As forward_training: the float statistics from the double ones, the running ones updated in double.
  std::vector<double> var(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    var[static_cast<size_t>(c)] = var_sums[c] / count;
    if (stats.saved_mean) stats.saved_mean[c] = static_cast<float>(mean[c]);
    if (stats.saved_invstd)
      stats.saved_invstd[c] =
          static_cast<float>(1.0 / std::sqrt(var[static_cast<size_t>(c)] + static_cast<double>(h.eps)));
  }
  update_running_statistics(channels, mean, var.data(), count, stats, h);
}

void batch_norm_sync_parameter_grads(const double* sums, int64_t channels, const BatchNormParamGrads& grads) {
  for (int64_t c = 0; c < channels; ++c) {
    if (grads.dbeta) grads.dbeta[c] = static_cast<float>(sums[c]);
    if (grads.dgamma) grads.dgamma[c] = static_cast<float>(sums[channels + c]);
  }
}

void batch_norm_normalize_forward(ConstMatrixView x_view, MatrixView y_view, const BatchNormChannels& ch) {
  if (any_bf16(x_view, y_view)) return run_widened(&batch_norm_normalize_forward, x_view, y_view, ch);
  const auto [rows, channels, x, ldx, y, ldy] =
      batch_norm_forward_operands("batch_norm_normalize_forward", x_view, y_view);
#pragma omp parallel for schedule(static) if (rows * channels >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c)
      y[r * ldy + c] = (ch.gamma ? ch.gamma[c] : 1.0f) * xhat_of(x + r * ldx + c, ch, c) + (ch.beta ? ch.beta[c] : 0.0f);
}

void batch_norm_normalize_backward(ConstMatrixView x_view, ConstMatrixView dy_view, const BatchNormChannels& ch,
                                   const double* sums, double count, MatrixView dx_view) {
  if (any_bf16(x_view, dy_view, dx_view))
    return run_widened(&batch_norm_normalize_backward, x_view, dy_view, ch, sums, count, dx_view);
  const auto [rows, channels, x, ldx, dy, ldy, dx, ldx_grad] =
      batch_norm_backward_operands("batch_norm_normalize_backward", x_view, dy_view, dx_view);
#pragma omp parallel for schedule(static) if (rows * channels >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      const float xhat = xhat_of(x + r * ldx + c, ch, c);
      const float k = (ch.gamma ? ch.gamma[c] : 1.0f) * ch.saved_invstd[c];
      const auto mean_dy = static_cast<float>(sums[c] / count);
      const auto mean_dy_xhat = static_cast<float>(sums[channels + c] / count);
      dx[r * ldx_grad + c] = k * (dy[r * ldy + c] - mean_dy - xhat * mean_dy_xhat);
    }
}

void batch_norm_forward_training(ConstMatrixView x, MatrixView y, const BatchNormChannels& ch,
                                 const BatchNormStatsOut& stats, const BatchNormHyper& h) {
  if (any_bf16(x, y)) return run_widened(&batch_norm_forward_training, x, y, ch, stats, h);
  forward_training("batch_norm_forward_training", x, y, ch, stats, h, false);
}

void batch_norm_relu_forward_training(ConstMatrixView x, MatrixView y, const BatchNormChannels& ch,
                                      const BatchNormStatsOut& stats, const BatchNormHyper& h) {
  if (any_bf16(x, y)) return run_widened(&batch_norm_relu_forward_training, x, y, ch, stats, h);
  forward_training("batch_norm_relu_forward_training", x, y, ch, stats, h, true);
}

void batch_norm_forward_eval(ConstMatrixView x, MatrixView y, const BatchNormChannels& ch,
                             const BatchNormHyper& h) {
  if (any_bf16(x, y)) return run_widened(&batch_norm_forward_eval, x, y, ch, h);
  forward_eval("batch_norm_forward_eval", x, y, ch, h, false);
}

void batch_norm_relu_forward_eval(ConstMatrixView x, MatrixView y, const BatchNormChannels& ch,
                                  const BatchNormHyper& h) {
  if (any_bf16(x, y)) return run_widened(&batch_norm_relu_forward_eval, x, y, ch, h);
  forward_eval("batch_norm_relu_forward_eval", x, y, ch, h, true);
}

void batch_norm_backward_training(ConstMatrixView x, ConstMatrixView dy, const BatchNormChannels& ch,
                                  MatrixView dx, bool accumulate_dx, const BatchNormParamGrads& grads) {
  if (any_bf16(x, dy, dx)) return run_widened(&batch_norm_backward_training, x, dy, ch, dx, accumulate_dx, grads);
  backward_training("batch_norm_backward_training", x, dy, ch, dx, accumulate_dx, grads, false);
}

void batch_norm_relu_backward_training(ConstMatrixView x, ConstMatrixView dy, const BatchNormChannels& ch,
                                       MatrixView dx, bool accumulate_dx, const BatchNormParamGrads& grads) {
  if (any_bf16(x, dy, dx)) return run_widened(&batch_norm_relu_backward_training, x, dy, ch, dx, accumulate_dx, grads);
  backward_training("batch_norm_relu_backward_training", x, dy, ch, dx, accumulate_dx, grads, true);
}

void batch_norm_backward_eval(ConstMatrixView x_view, ConstMatrixView dy_view,
                              const BatchNormChannels& ch, const BatchNormHyper& h,
                              MatrixView dx_view, bool accumulate_dx,
                              const BatchNormParamGrads& grads) {
  if (any_bf16(x_view, dy_view, dx_view)) return run_widened(&batch_norm_backward_eval, x_view, dy_view, ch, h, dx_view, accumulate_dx, grads);
  const auto [rows, channels, x, ldx, dy, ldy, dx, ldx_grad] =
      batch_norm_backward_operands("batch_norm_backward_eval", x_view, dy_view, dx_view);
  if (rows <= 0 || channels <= 0) return;
  const std::vector<float> invstd = eval_invstd(channels, ch.running_var, h.eps);

  if (grads.dgamma || grads.dbeta) {
    std::vector<double> sum_dy(static_cast<size_t>(channels));
    std::vector<double> sum_dy_xhat(static_cast<size_t>(channels));
    channel_grad_sums(rows, channels, x, ldx, dy, ldy, ch.running_mean, invstd.data(), sum_dy.data(),
                      sum_dy_xhat.data());
    accumulate_param_grads(channels, sum_dy.data(), sum_dy_xhat.data(), grads);
  }
  if (!dx) return;

  // The statistics are constants here: dx = dy * gamma_c * invstd_c.
  std::vector<float> k(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) k[c] = (ch.gamma ? ch.gamma[c] : 1.0f) * invstd[c];
#pragma omp parallel for schedule(static) if (rows * channels >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    const float* dyr = dy + r * ldy;
    float* dxr = dx + r * ldx_grad;
    for (int64_t c = 0; c < channels; ++c) {
      const float g = dyr[c] * k[c];
      dxr[c] = accumulate_dx ? dxr[c] + g : g;
    }
  }
}

}  // namespace kernels::cpu
