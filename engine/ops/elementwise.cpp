// Elementwise ops: relu, sigmoid, add, scale, and the raw in-place accumulation the autograd engine
// uses. Maths in kernels/elementwise.h.
#include "engine/ops.h"
#include "engine/ops/common.h"
#include "kernels/elementwise.h"

namespace engine {
namespace {

// y = f(x) with a backward that needs only y (relu, sigmoid); the kernels are those of x's device.
using ForwardKernel = void (*)(kernels::ConstMatrixView x, kernels::MatrixView y);
using BackwardKernel = void (*)(kernels::ConstMatrixView y, kernels::ConstMatrixView dy,
                                kernels::MatrixView dx, bool accumulate);

Tensor unary_from_output(const char* op, const Tensor& x, ForwardKernel forward, BackwardKernel backward) {
  detail::check_same_device(op, {x});
  const Tensor xr = detail::as_row_matrix(x);
  Tensor y = Tensor::empty(x.shape(), x.device(), x.dtype());
  forward(detail::as_rows(xr), detail::as_rows(y));
  record(y, op, {x}, [saved_y = y.detach(), backward](const Tensor& dy_in) {
    const Tensor dy = detail::as_row_matrix(dy_in);
    Tensor dx = Tensor::empty(saved_y.shape(), saved_y.device(), saved_y.dtype());
    backward(detail::as_rows(saved_y), detail::as_rows(dy), detail::as_rows(dx), false);
    return std::vector<Tensor>{dx};
  });
  return y;
}

}  // namespace

Tensor relu(const Tensor& x) {
  return unary_from_output("relu", x, ENGINE_KERNEL(x.device(), relu_forward),
                           ENGINE_KERNEL(x.device(), relu_backward));
}

Tensor sigmoid(const Tensor& x) {
  return unary_from_output("sigmoid", x, ENGINE_KERNEL(x.device(), sigmoid_forward),
                           ENGINE_KERNEL(x.device(), sigmoid_backward));
}

Tensor add(const Tensor& a, const Tensor& b) {
  detail::check_same_device("add", {a, b});
  ENGINE_CHECK(a.shape() == b.shape()) << "add: shapes " << shape_str(a.shape()) << " and "
                                       << shape_str(b.shape()) << " differ (no broadcasting)";
  const Tensor ar = detail::as_row_matrix(a), br = detail::as_row_matrix(b);
  Tensor y = Tensor::empty(a.shape(), a.device(), a.dtype());
  ENGINE_KERNEL(a.device(), add)(detail::as_rows(ar), detail::as_rows(br), detail::as_rows(y));
  // d(a + b) = (dy, dy): the same gradient goes to both (the engine never mutates a handed-out gradient),
  // each in its input's dtype.
  record(y, "add", {a, b}, [a_dtype = a.dtype(), b_dtype = b.dtype()](const Tensor& dy) {
    return std::vector<Tensor>{dy.dtype() == a_dtype ? dy : dy.to(a_dtype), dy.dtype() == b_dtype ? dy : dy.to(b_dtype)};
  });
  return y;
}

Tensor scale(const Tensor& x, float alpha) {
  detail::check_same_device("scale", {x});
  const Tensor xr = detail::as_row_matrix(x);
  Tensor y = Tensor::empty(x.shape(), x.device(), x.dtype());
  ENGINE_KERNEL(x.device(), scale)(alpha, detail::as_rows(xr), detail::as_rows(y), false);
  record(y, "scale", {x}, [alpha, x_dtype = x.dtype()](const Tensor& dy_in) {
    const Tensor dy = detail::as_row_matrix(dy_in);
    Tensor dx = Tensor::empty(dy.shape(), dy.device(), x_dtype);
    ENGINE_KERNEL(dy.device(), scale)(alpha, detail::as_rows(dy), detail::as_rows(dx), false);
    return std::vector<Tensor>{dx};
  });
  return y;
}

Tensor scaled_residual(const Tensor& x, const Tensor& up, float scale, bool relu) {
  detail::check_same_device("scaled_residual", {x, up});
  ENGINE_CHECK(x.shape() == up.shape()) << "scaled_residual: shapes " << shape_str(x.shape()) << " and "
                                        << shape_str(up.shape()) << " differ (no broadcasting)";
  const Tensor xr = detail::as_row_matrix(x), ur = detail::as_row_matrix(up);
  Tensor y = Tensor::empty(x.shape(), x.device(), x.dtype());
  ENGINE_KERNEL(x.device(), scaled_residual_forward)(scale, detail::as_rows(xr), detail::as_rows(ur),
                                                     detail::as_rows(y), relu);
  // g = dy (where y > 0 with the ReLU): dx = g, dup = scale * g, each in its input's dtype. Without the
  // ReLU only y's shape and dtype are needed, not its values.
  record(y, "scaled_residual", {x, up},
         [saved_y = relu ? y.detach() : Tensor(), shape = x.shape(), device = x.device(), x_dtype = x.dtype(),
          up_dtype = up.dtype(), scale, relu](const Tensor& dy_in) {
           const Tensor dy = detail::as_row_matrix(dy_in);
           Tensor dx = Tensor::empty(shape, device, x_dtype), dup = Tensor::empty(shape, device, up_dtype);
           const Tensor mask = relu ? saved_y : dy;  // read only with the ReLU
           ENGINE_KERNEL(device, scaled_residual_backward)(scale, detail::as_rows(mask), detail::as_rows(dy),
                                                           detail::as_rows(detail::as_row_matrix(dx)),
                                                           detail::as_rows(detail::as_row_matrix(dup)), relu);
           return std::vector<Tensor>{dx, dup};
         });
  return y;
}

void add_into(const Tensor& dst, const Tensor& src) {
  detail::check_same_device("add_into", {dst, src});
  ENGINE_CHECK(dst.shape() == src.shape()) << "add_into: shapes " << shape_str(dst.shape()) << " and "
                                           << shape_str(src.shape()) << " differ";
  ENGINE_CHECK(detail::is_row_matrix(dst)) << "add_into: destination must be dense or a channel slice";
  const Tensor sr = detail::as_row_matrix(src);
  ENGINE_KERNEL(dst.device(), copy)(detail::as_rows(sr), detail::as_rows(dst), /*accumulate=*/true);
}

}  // namespace engine
