// Pooling ops: max, average (with or without padded cells), global average. Maths in kernels/pool.h.
#include <cstdint>

#include "engine/ops.h"
#include "engine/ops/common.h"
#include "kernels/pool.h"

namespace engine {
namespace {

kernels::Pool2dGeometry pool_geometry(const char* op, const Tensor& x, const Pool2dOptions& o) {
  ENGINE_CHECK(x.ndim() == 4) << op << ": input must be NHWC [N, H, W, C], got " << x.str();
  ENGINE_CHECK(o.kernel_h > 0 && o.kernel_w > 0 && o.stride_h > 0 && o.stride_w > 0)
      << op << ": kernel and stride must be positive";
  ENGINE_CHECK(o.pad_top >= 0 && o.pad_bottom >= 0 && o.pad_left >= 0 && o.pad_right >= 0)
      << op << ": padding must be non-negative";
  ENGINE_CHECK(o.pad_top < o.kernel_h && o.pad_bottom < o.kernel_h && o.pad_left < o.kernel_w &&
               o.pad_right < o.kernel_w)
      << op << ": padding must be smaller than the kernel (a window would see only padding)";
  kernels::Pool2dGeometry g;
  g.batch = x.size(0), g.in_h = x.size(1), g.in_w = x.size(2), g.channels = x.size(3);
  g.kernel_h = o.kernel_h, g.kernel_w = o.kernel_w, g.stride_h = o.stride_h, g.stride_w = o.stride_w;
  g.pad_top = o.pad_top, g.pad_bottom = o.pad_bottom, g.pad_left = o.pad_left, g.pad_right = o.pad_right;
  ENGINE_CHECK(g.in_h + g.pad_top + g.pad_bottom >= g.kernel_h && g.in_w + g.pad_left + g.pad_right >= g.kernel_w)
      << op << ": window " << g.kernel_h << "x" << g.kernel_w << " larger than the padded input " << x.str();
  return g;
}

}  // namespace

// Training saves the forward's arg-max (an int32 per output element, kernels/pool.h) and the backward
// scatters dy through it: x is not kept for the backward. The engine has no integer dtype, so the
// indices live in the bytes of an f32-typed tensor of y's shape (4 bytes an element; never read as
// floats).
Tensor max_pool2d(const Tensor& x, const Pool2dOptions& options, const Tensor& out) {
  detail::check_same_device("max_pool2d", {x, out});
  const kernels::Pool2dGeometry g = pool_geometry("max_pool2d", x, options);
  const Tensor xr = detail::as_row_matrix(x);
  Tensor y = detail::output_or_new("max_pool2d", out, {g.batch, g.out_h(), g.out_w(), g.channels}, x.device(),
                                   x.dtype());
  if (!needs_grad({x})) {
    ENGINE_KERNEL(x.device(), max_pool2d_forward)(g, detail::as_rows(xr), detail::as_rows(y));
    return y;
  }
  const Tensor argmax = Tensor::empty(y.shape(), x.device(), DType::f32);
  auto* const argmax_data = static_cast<int32_t*>(argmax.raw_data());
  ENGINE_KERNEL(x.device(), max_pool2d_forward_argmax)(g, detail::as_rows(xr), detail::as_rows(y), argmax_data);
  record(y, "max_pool2d", {x}, [g, argmax, x_shape = x.shape(), dtype = x.dtype()](const Tensor& dy_in) {
    const Tensor dy = detail::as_row_matrix(dy_in);
    Tensor dx = Tensor::empty(x_shape, dy.device(), dtype);
    ENGINE_KERNEL(dy.device(), max_pool2d_backward_argmax)(g, static_cast<const int32_t*>(argmax.raw_data()),
                                                           detail::as_rows(dy), detail::as_rows(dx), false);
    return std::vector<Tensor>{dx};
  });
  return y;
}

Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& options, bool count_include_pad) {
  detail::check_same_device("avg_pool2d", {x});
  const kernels::Pool2dGeometry g = pool_geometry("avg_pool2d", x, options);
  const Tensor xr = detail::as_row_matrix(x);
  Tensor y = Tensor::empty({g.batch, g.out_h(), g.out_w(), g.channels}, x.device(), x.dtype());
  ENGINE_KERNEL(x.device(), avg_pool2d_forward)(g, count_include_pad, detail::as_rows(xr), detail::as_rows(y));
  const Shape x_shape = x.shape();
  const Device device = x.device();
  record(y, "avg_pool2d", {x}, [g, count_include_pad, x_shape, device, dtype = x.dtype()](const Tensor& dy_in) {
    const Tensor dy = detail::as_row_matrix(dy_in);
    Tensor dx = Tensor::empty(x_shape, device, dtype);
    ENGINE_KERNEL(dy.device(), avg_pool2d_backward)(g, count_include_pad, detail::as_rows(dy), detail::as_rows(dx),
                                                    false);
    return std::vector<Tensor>{dx};
  });
  return y;
}

Tensor global_avg_pool(const Tensor& x) {
  detail::check_same_device("global_avg_pool", {x});
  ENGINE_CHECK(x.ndim() == 4) << "global_avg_pool: input must be NHWC [N, H, W, C], got " << x.str();
  const int64_t n = x.size(0), hw = x.size(1) * x.size(2), c = x.size(3);
  ENGINE_CHECK(hw > 0) << "global_avg_pool: empty spatial extent in " << x.str();
  const Tensor xr = detail::as_row_matrix(x);
  Tensor y = Tensor::empty({n, c}, x.device(), x.dtype());
  ENGINE_KERNEL(x.device(), global_avg_pool_forward)(hw, detail::as_rows(xr), detail::as_rows(y));
  const Shape x_shape = x.shape();
  const Device device = x.device();
  record(y, "global_avg_pool", {x}, [hw, x_shape, device, dtype = x.dtype()](const Tensor& dy_in) {
    const Tensor dy = dy_in.contiguous();
    Tensor dx = Tensor::empty(x_shape, device, dtype);
    ENGINE_KERNEL(dy.device(), global_avg_pool_backward)(hw, detail::as_rows(dy), detail::as_rows(dx), false);
    return std::vector<Tensor>{dx};
  });
  return y;
}

}  // namespace engine
