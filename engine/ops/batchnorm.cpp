// batch_norm over the last (channel) dimension. Training mode normalises with the batch statistics,
// saves mean and 1/std for backward and updates the running statistics in place; eval mode uses the
// running statistics. Maths in kernels/batchnorm.h, derivation in docs/derivations.md.
// batch_norm_relu is max(batch_norm(...), 0) through the fused kernels (one pass less forward, ReLU's
// mask folded into BN's backward; bit for bit the pair on the CPU). Eval mode with gradients wanted
// (rare: CAM) runs the unfused pair.
#include "engine/batch_norm_sync.h"
#include "engine/ops.h"
#include "engine/ops/common.h"
#include "kernels/batchnorm.h"

namespace engine {

namespace {

// batch_norm, and with `relu` batch_norm_relu (the fused kernels).
Tensor batch_norm_maybe_relu(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, bool training, const BatchNormOptions& options, bool relu,
                             const Tensor& out = Tensor()) {
  detail::check_same_device("batch_norm", {x, gamma, beta, running_mean, running_var});
  ENGINE_CHECK(x.ndim() >= 2) << "batch_norm: input must be [..., C], got " << x.str();
  const int64_t channels = x.size(-1);
  for (const Tensor* t : {&gamma, &beta, &running_mean, &running_var}) {
    ENGINE_CHECK(!t->defined() || (t->ndim() == 1 && t->size(0) == channels && t->is_contiguous()))
        << "batch_norm: per-channel tensors must be dense [" << channels << "], got " << t->str();
  }
  ENGINE_CHECK(running_mean.defined() && running_var.defined())
      << "batch_norm: running statistics are required";
  // --sync-bn: the statistics over every process of a data-parallel run (engine/batch_norm_sync.h).
  // (With `relu`, the ReLU after it: the synced path has no fused kernel.)
  if (training && batch_norm_sync()) {
    const Tensor y = batch_norm_training_synced(x, gamma, beta, running_mean, running_var, options, *batch_norm_sync());
    return relu ? engine::relu(y) : y;
  }
  const Tensor xr = detail::as_row_matrix(x);
  const detail::Rows xm = detail::as_rows(xr);
  ENGINE_CHECK(!training || xm.rows > 0) << "batch_norm: empty batch in training mode";
  Tensor y = detail::output_or_new("batch_norm", out, x.shape(), x.device(), x.dtype());  // bf16 x: bf16 y
  const detail::Rows ym = detail::as_rows(y);
  const kernels::BatchNormHyper hyper{options.eps, options.momentum, options.unbiased_running_var};

  const bool need_dx = x.requires_grad();
  const bool need_dgamma = gamma.defined() && gamma.requires_grad();
  const bool need_dbeta = beta.defined() && beta.requires_grad();
  if (training) {
    Tensor saved_mean = Tensor::empty({channels}, x.device());
    Tensor saved_invstd = Tensor::empty({channels}, x.device());
    kernels::BatchNormChannels ch;
    ch.gamma = detail::data_or_null(gamma);
    ch.beta = detail::data_or_null(beta);
    kernels::BatchNormStatsOut stats;
    stats.saved_mean = saved_mean.data();
    stats.saved_invstd = saved_invstd.data();
    stats.running_mean = running_mean.data();
    stats.running_var = running_var.data();
    if (relu)
      ENGINE_KERNEL(x.device(), batch_norm_relu_forward_training)(xm, ym, ch, stats, hyper);
    else
      ENGINE_KERNEL(x.device(), batch_norm_forward_training)(xm, ym, ch, stats, hyper);
    // dx is added straight into the engine's running sum of x's gradient when it offers one (into[0]; a
    // DenseNet layer's norm1 adds into the block's gradient slice): f32 only, where the kernel's
    // dx += g is bit for bit the engine's sum (bf16 would round once instead of twice).
    record_accumulating(y, relu ? "batch_norm_relu" : "batch_norm", {x, gamma, beta},
           [xr, gamma, beta, saved_mean, saved_invstd, need_dx, need_dgamma, need_dbeta, relu](
               const Tensor& dy_in, const std::vector<Tensor>& into) {
             const Tensor dy = detail::as_row_matrix(dy_in);
             const detail::Rows xm = detail::as_rows(xr), dym = detail::as_rows(dy);
             const bool accumulate_dx = need_dx && !into.empty() && into[0].defined() &&
                                        into[0].dtype() == DType::f32 && xr.dtype() == DType::f32 &&
                                        detail::is_row_matrix(into[0]);
             Tensor dx = !need_dx        ? Tensor()
                         : accumulate_dx ? into[0]
                                         : Tensor::empty(xr.shape(), xr.device(), xr.dtype());
             Tensor dgamma = need_dgamma ? Tensor::zeros({xm.cols}, xr.device()) : Tensor();
             Tensor dbeta = need_dbeta ? Tensor::zeros({xm.cols}, xr.device()) : Tensor();
             kernels::BatchNormChannels ch;
             ch.gamma = detail::data_or_null(gamma);
             ch.saved_mean = saved_mean.data();
             ch.saved_invstd = saved_invstd.data();
             const kernels::MatrixView dxm = need_dx ? detail::as_rows(dx) : kernels::MatrixView();
             const kernels::BatchNormParamGrads grads{detail::data_or_null(dgamma), detail::data_or_null(dbeta)};
             if (relu) {
               ch.beta = detail::data_or_null(beta);  // the mask's BN output
               ENGINE_KERNEL(dy.device(), batch_norm_relu_backward_training)(xm, dym, ch, dxm, accumulate_dx, grads);
             } else {
               ENGINE_KERNEL(dy.device(), batch_norm_backward_training)(xm, dym, ch, dxm, accumulate_dx, grads);
             }
             return std::vector<Tensor>{dx, dgamma, dbeta};
           });
  } else {
    if (relu && needs_grad({x, gamma, beta}))
      return engine::relu(batch_norm_maybe_relu(x, gamma, beta, running_mean, running_var, false, options, false));
    kernels::BatchNormChannels ch;
    ch.gamma = detail::data_or_null(gamma);
    ch.beta = detail::data_or_null(beta);
    ch.running_mean = running_mean.data();
    ch.running_var = running_var.data();
    if (relu) {
      ENGINE_KERNEL(x.device(), batch_norm_relu_forward_eval)(xm, ym, ch, hyper);
      return y;  // no gradient wanted (above)
    }
    ENGINE_KERNEL(x.device(), batch_norm_forward_eval)(xm, ym, ch, hyper);
    // The running statistics are constants of the eval-mode function; copies keep backward exact even
    // if training later updates them.
    if (!needs_grad({x, gamma, beta})) return y;
    const Tensor mean_copy = running_mean.clone(), var_copy = running_var.clone();
    record(y, "batch_norm_eval", {x, gamma, beta},
           [xr, gamma, mean_copy, var_copy, hyper, need_dx, need_dgamma, need_dbeta](const Tensor& dy_in) {
             const Tensor dy = detail::as_row_matrix(dy_in);
             const detail::Rows xm = detail::as_rows(xr), dym = detail::as_rows(dy);
             Tensor dx = need_dx ? Tensor::empty(xr.shape(), xr.device(), xr.dtype()) : Tensor();
             Tensor dgamma = need_dgamma ? Tensor::zeros({xm.cols}, xr.device()) : Tensor();
             Tensor dbeta = need_dbeta ? Tensor::zeros({xm.cols}, xr.device()) : Tensor();
             kernels::BatchNormChannels ch;
             ch.gamma = detail::data_or_null(gamma);
             ch.running_mean = mean_copy.data();
             ch.running_var = var_copy.data();
             const kernels::MatrixView dxm = need_dx ? detail::as_rows(dx) : kernels::MatrixView();
             ENGINE_KERNEL(dy.device(), batch_norm_backward_eval)(
                 xm, dym, ch, hyper, dxm, false, {detail::data_or_null(dgamma), detail::data_or_null(dbeta)});
             return std::vector<Tensor>{dx, dgamma, dbeta};
           });
  }
  return y;
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                  const Tensor& running_var, bool training, const BatchNormOptions& options) {
  return batch_norm_maybe_relu(x, gamma, beta, running_mean, running_var, training, options, false);
}

Tensor batch_norm_relu(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                       const Tensor& running_var, bool training, const BatchNormOptions& options, const Tensor& out) {
  return batch_norm_maybe_relu(x, gamma, beta, running_mean, running_var, training, options, true, out);
}

}  // namespace engine
