// Binary cross-entropy on logits (kernels/loss.h) and the scalar reductions sum and mean.
#include "engine/ops.h"
#include "engine/ops/common.h"
#include "kernels/elementwise.h"
#include "kernels/loss.h"

namespace engine {

Tensor bce_with_logits(const Tensor& logits, const Tensor& targets, const Tensor& weights) {
  detail::check_same_device("bce_with_logits", {logits, targets, weights});
  const int64_t n = logits.numel();
  ENGINE_CHECK(logits.ndim() == 1 || (logits.ndim() == 2 && logits.size(1) == 1))
      << "bce_with_logits: logits must be [N] or [N, 1], got " << logits.str();
  ENGINE_CHECK(targets.numel() == n) << "bce_with_logits: " << targets.numel() << " targets for " << n << " logits";
  ENGINE_CHECK(!weights.defined() || weights.numel() == n)
      << "bce_with_logits: " << weights.numel() << " weights for " << n << " logits";
  ENGINE_CHECK(n > 0) << "bce_with_logits: empty batch";
  const Tensor z = logits.contiguous(), t = targets.contiguous();
  const Tensor w = weights.defined() ? weights.contiguous() : Tensor();
  // The loss stays on the device (no host synchronisation; a training step reads it when it chooses).
  Tensor y = Tensor::empty({}, logits.device());
  ENGINE_KERNEL(logits.device(), bce_with_logits_forward_to)(detail::as_column(z), detail::as_column(t),
                                                             detail::as_column(w), y.data());
  record(y, "bce_with_logits", {logits}, [z, t, w, shape = logits.shape()](const Tensor& dy) {
    Tensor dz = Tensor::empty(shape, z.device(), z.dtype());  // a bf16 gradient for bf16 logits
    const Tensor dloss = dy.contiguous();
    ENGINE_KERNEL(z.device(), bce_with_logits_backward_from)(detail::as_column(z), detail::as_column(t),
                                                             detail::as_column(w), dloss.data(),
                                                             detail::as_column(dz), false);
    return std::vector<Tensor>{dz};
  });
  return y;
}

Tensor sum(const Tensor& x) {
  detail::check_same_device("sum", {x});
  const Tensor xr = detail::as_row_matrix(x);
  Tensor y = Tensor::scalar(static_cast<float>(ENGINE_KERNEL(x.device(), sum)(detail::as_rows(xr))), x.device());
  record(y, "sum", {x}, [shape = x.shape(), device = x.device(), dtype = x.dtype()](const Tensor& dy) {
    return std::vector<Tensor>{Tensor::full(shape, dy.item(), device, dtype)};
  });
  return y;
}

Tensor mean(const Tensor& x) {
  ENGINE_CHECK(x.numel() > 0) << "mean of an empty tensor";
  return scale(sum(x), 1.0f / static_cast<float>(x.numel()));
}

}  // namespace engine
