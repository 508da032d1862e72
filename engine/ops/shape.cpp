// Shape and channel ops: reshape/flatten (views of dense tensors), channel slices (views), and channel
// concatenation (a view when the inputs are adjacent slices of one buffer, a copy otherwise).
// Backward of a view is the matching view of the output gradient; backward of a concatenation hands
// each input its slice of the gradient.
#include "engine/ops.h"
#include "engine/ops/common.h"
#include "kernels/elementwise.h"

namespace engine {

Tensor reshape(const Tensor& x, const Shape& shape) {
  ENGINE_CHECK(shape_numel(shape) == x.numel())
      << "reshape: cannot reshape " << x.str() << " to " << shape_str(shape);
  const Tensor dense = x.contiguous();
  Tensor y = dense.view(shape);
  if (!dense.same(x)) y = y.detach();  // a fresh copy: the view is over new storage either way
  const Shape x_shape = x.shape();
  record(y, "reshape", {x}, [x_shape](const Tensor& dy) {
    return std::vector<Tensor>{dy.contiguous().view(x_shape)};
  });
  return y;
}

Tensor flatten(const Tensor& x) {
  ENGINE_CHECK(x.ndim() >= 1) << "flatten: needs a batch dimension, got " << x.str();
  const int64_t n = x.size(0);
  return reshape(x, {n, n == 0 ? 0 : x.numel() / n});
}

Tensor slice_channels(const Tensor& x, int64_t begin, int64_t end) {
  Tensor y = x.slice(-1, begin, end);
  const Shape x_shape = x.shape();
  const Device device = x.device();
  record(y, "slice_channels", {x}, [x_shape, device, dtype = x.dtype(), begin, end](const Tensor& dy_in) {
    // Zeros outside [begin, end), dy inside.
    Tensor dx = Tensor::zeros(x_shape, device, dtype);
    dx.slice(-1, begin, end).copy_from(dy_in);
    return std::vector<Tensor>{dx};
  });
  return y;
}

namespace {

// True when inputs are slices [c0, c1), [c1, c2), ... of the same storage with the same row layout, so
// that their concatenation is itself a slice.
bool adjacent_channel_slices(const std::vector<Tensor>& inputs) {
  const Tensor& first = inputs[0];
  int64_t next_offset = first.offset() + first.size(-1);
  for (size_t i = 1; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (t.storage() != first.storage() || t.strides() != first.strides() || t.offset() != next_offset)
      return false;
    for (int d = 0; d + 1 < t.ndim(); ++d)
      if (t.size(d) != first.size(d)) return false;
    next_offset += t.size(-1);
  }
  return true;
}

}  // namespace

Tensor concat_channels(const std::vector<Tensor>& inputs) {
  ENGINE_CHECK(!inputs.empty()) << "concat_channels: no inputs";
  detail::check_same_device("concat_channels", inputs);
  const Tensor& first = inputs[0];
  Shape out_shape = first.shape();
  ENGINE_CHECK(!out_shape.empty()) << "concat_channels: inputs need a channel dimension";
  int64_t channels = 0;
  std::vector<int64_t> begins;
  for (const Tensor& t : inputs) {
    ENGINE_CHECK(t.ndim() == first.ndim()) << "concat_channels: " << t.str() << " vs " << first.str();
    for (int d = 0; d + 1 < t.ndim(); ++d)
      ENGINE_CHECK(t.size(d) == first.size(d))
          << "concat_channels: shapes " << shape_str(t.shape()) << " and " << shape_str(first.shape())
          << " differ outside the channel dimension";
    begins.push_back(channels);
    channels += t.size(-1);
  }
  out_shape.back() = channels;

  Tensor y;
  if (inputs.size() > 1 && adjacent_channel_slices(inputs) && detail::is_row_matrix(first)) {
    // A view spanning the slices: same storage, offset and strides as the first, wider channel dim.
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = first.storage();
    impl->offset = first.offset();
    impl->shape = out_shape;
    impl->strides = first.strides();
    impl->dtype = first.dtype();
    y = Tensor(impl);
    // The wider view must stay inside each row and inside the storage; otherwise copy.
    const bool fits = detail::is_row_matrix(y) && detail::as_rows(y).ld >= channels &&
                      y.numel() > 0 &&
                      static_cast<size_t>(y.offset() + (detail::as_rows(y).rows - 1) * detail::as_rows(y).ld +
                                          channels) * dtype_size(y.dtype()) <= y.storage()->nbytes();
    if (!fits) y = Tensor();
  }
  if (!y.defined()) {
    y = Tensor::empty(out_shape, first.device(), first.dtype());
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Tensor part = detail::as_row_matrix(inputs[i]);
      const detail::Rows src = detail::as_rows(part);
      const detail::Rows dst = detail::as_rows(y.slice(-1, begins[i], begins[i] + src.cols));
      ENGINE_KERNEL(y.device(), copy)(src, dst, false);
    }
  }
  record(y, "concat_channels", inputs, [begins, channels](const Tensor& dy) {
    std::vector<Tensor> grads;
    for (size_t i = 0; i < begins.size(); ++i) {
      const int64_t end = i + 1 < begins.size() ? begins[i + 1] : channels;
      grads.push_back(dy.slice(-1, begins[i], end));
    }
    return grads;
  });
  return y;
}

}  // namespace engine
