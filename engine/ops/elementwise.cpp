// Elementwise ops: relu, sigmoid, add, scale, and the raw in-place accumulation the autograd engine
// uses. Maths in kernels/elementwise.h.
#include "engine/ops.h"
#include "engine/ops/common.h"
#include "kernels/elementwise.h"

namespace engine {
namespace {

// y = f(x) with a backward that needs only y (relu, sigmoid); the kernels are those of x's device.
using ForwardKernel = void (*)(int64_t, int64_t, const float*, int64_t, float*, int64_t);
using BackwardKernel = void (*)(int64_t, int64_t, const float*, int64_t, const float*, int64_t, float*,
                                int64_t, bool);

Tensor unary_from_output(const char* op, const Tensor& x, ForwardKernel forward, BackwardKernel backward) {
  detail::check_same_device(op, {x});
  const Tensor xr = detail::as_row_matrix(x);
  Tensor y = Tensor::empty(x.shape(), x.device());
  const detail::Rows xm = detail::as_rows(xr), ym = detail::as_rows(y);
  forward(xm.rows, xm.cols, xm.data, xm.ld, ym.data, ym.ld);
  record(y, op, {x}, [saved_y = y.detach(), backward](const Tensor& dy_in) {
    const Tensor dy = detail::as_row_matrix(dy_in);
    const detail::Rows ym = detail::as_rows(saved_y), dym = detail::as_rows(dy);
    Tensor dx = Tensor::empty(saved_y.shape(), saved_y.device());
    backward(ym.rows, ym.cols, ym.data, ym.ld, dym.data, dym.ld, dx.data(), ym.cols, false);
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
  Tensor y = Tensor::empty(a.shape(), a.device());
  const detail::Rows am = detail::as_rows(ar), bm = detail::as_rows(br), ym = detail::as_rows(y);
  ENGINE_KERNEL(a.device(), add)(am.rows, am.cols, am.data, am.ld, bm.data, bm.ld, ym.data, ym.ld);
  // d(a + b) = (dy, dy): the same gradient goes to both (the engine never mutates a handed-out gradient).
  record(y, "add", {a, b}, [](const Tensor& dy) { return std::vector<Tensor>{dy, dy}; });
  return y;
}

Tensor scale(const Tensor& x, float alpha) {
  detail::check_same_device("scale", {x});
  const Tensor xr = detail::as_row_matrix(x);
  Tensor y = Tensor::empty(x.shape(), x.device());
  const detail::Rows xm = detail::as_rows(xr), ym = detail::as_rows(y);
  ENGINE_KERNEL(x.device(), scale)(xm.rows, xm.cols, alpha, xm.data, xm.ld, ym.data, ym.ld, false);
  record(y, "scale", {x}, [alpha](const Tensor& dy_in) {
    const Tensor dy = detail::as_row_matrix(dy_in);
    const detail::Rows dym = detail::as_rows(dy);
    Tensor dx = Tensor::empty(dy.shape(), dy.device());
    ENGINE_KERNEL(dy.device(), scale)(dym.rows, dym.cols, alpha, dym.data, dym.ld, dx.data(), dym.cols, false);
    return std::vector<Tensor>{dx};
  });
  return y;
}

void add_into(const Tensor& dst, const Tensor& src) {
  detail::check_same_device("add_into", {dst, src});
  ENGINE_CHECK(dst.shape() == src.shape()) << "add_into: shapes " << shape_str(dst.shape()) << " and "
                                           << shape_str(src.shape()) << " differ";
  ENGINE_CHECK(detail::is_row_matrix(dst)) << "add_into: destination must be dense or a channel slice";
  const Tensor sr = detail::as_row_matrix(src);
  const detail::Rows dm = detail::as_rows(dst), sm = detail::as_rows(sr);
  ENGINE_KERNEL(dst.device(), copy)(sm.rows, sm.cols, sm.data, sm.ld, dm.data, dm.ld, /*accumulate=*/true);
}

}  // namespace engine
