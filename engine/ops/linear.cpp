// linear: y = x w^T + b with x [N, in], w [out, in], b [out]. Backward:
//   dx = dy w   [N, in],   dw = dy^T x   [out, in],   db = 1^T dy (column sums of dy)   [out]
// The bias broadcast and its gradient are rank-1 GEMMs with a ones vector, so the op is the same three
// GEMM calls on every device.
// A bf16 x (docs/precision.md) runs the same three products through gemm_mixed: bf16 operands (the weight's
// bf16 working copy: in a training step the arena's copy made once per step, else rounded once per call),
// f32 accumulation; y = x w^T + b is summed in f32 and rounded once, dx is rounded once into bf16, dw and
// db stay f32.
#include "engine/ops.h"
#include "engine/ops/common.h"
#include "kernels/gemm.h"

namespace engine {
namespace {

Tensor linear_bf16(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t n, int64_t in, int64_t out) {
  const Device device = x.device();
  const auto gemm_mixed = ENGINE_KERNEL(device, gemm_mixed);
  const Tensor xr = detail::as_row_matrix(x);
  const Tensor w = detail::bf16_working_copy(weight);  // [out, in]
  const kernels::MatrixView wm(w.raw_data(), out, in, in, DType::bf16);
  Tensor y32 = bias.defined() ? Tensor::empty({n, out}, device) : Tensor::zeros({n, out}, device);
  if (bias.defined()) {  // y = 1_n b^T in f32, then y += x w^T, then one rounding
    const Tensor ones = Tensor::ones({n, 1}, device);
    ENGINE_KERNEL(device, gemm)(false, false, n, out, 1, 1.0f, ones.data(), 1, bias.contiguous().data(), out, 0.0f,
                                y32.data(), out);
  }
  gemm_mixed(false, true, 1.0f, detail::as_rows(xr), wm, 1.0f, detail::as_rows(y32));
  Tensor y = y32.to(DType::bf16);

  const bool need_dx = x.requires_grad();
  const bool need_dw = weight.requires_grad();
  const bool need_db = bias.defined() && bias.requires_grad();
  record(y, "linear", {x, weight, bias}, [xr, w, n, in, out, need_dx, need_dw, need_db](const Tensor& dy_in) {
    const Tensor dy = detail::as_row_matrix(dy_in).to(DType::bf16);
    const detail::Rows dym = detail::as_rows(dy), xm = detail::as_rows(xr);
    const kernels::MatrixView wm(w.raw_data(), out, in, in, DType::bf16);
    const Device device = dy.device();
    const auto gemm_mixed = ENGINE_KERNEL(device, gemm_mixed);
    Tensor dx, dw, db;
    if (need_dx) {  // dx = dy w, rounded once into bf16
      dx = Tensor::empty({n, in}, device, DType::bf16);
      gemm_mixed(false, false, 1.0f, dym, wm, 0.0f, detail::as_rows(dx));
    }
    if (need_dw) {  // dw = dy^T x in f32
      dw = Tensor::empty({out, in}, device);
      gemm_mixed(true, false, 1.0f, dym, xm, 0.0f, detail::as_rows(dw));
    }
    if (need_db) {  // db^T [1, out] = 1_n^T dy in f32 (a bf16 one is exact)
      db = Tensor::empty({1, out}, device);
      const Tensor ones = Tensor::ones({1, n}, device, DType::bf16);
      gemm_mixed(false, false, 1.0f, detail::as_rows(ones), dym, 0.0f, detail::as_rows(db));
      db = db.view({out});
    }
    return std::vector<Tensor>{dx, dw, db};
  });
  return y;
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  detail::check_same_device("linear", {x, weight, bias});
  ENGINE_CHECK(x.ndim() == 2) << "linear: input must be [N, in], got " << x.str() << " (flatten it first)";
  ENGINE_CHECK(weight.ndim() == 2 && weight.size(1) == x.size(1))
      << "linear: weight must be [out, " << x.size(1) << "], got " << weight.str();
  const int64_t n = x.size(0), in = x.size(1), out = weight.size(0);
  ENGINE_CHECK(!bias.defined() || (bias.ndim() == 1 && bias.size(0) == out))
      << "linear: bias must be [" << out << "], got " << bias.str();
  if (x.dtype() == DType::bf16) return linear_bf16(x, weight, bias, n, in, out);
  const Device device = x.device();
  const auto gemm = ENGINE_KERNEL(device, gemm);
  const Tensor xr = detail::as_row_matrix(x);
  const Tensor w = weight.contiguous();
  const Tensor b = bias.defined() ? bias.contiguous() : Tensor();
  Tensor y = Tensor::empty({n, out}, device);
  const detail::Rows xm = detail::as_rows(xr);
  if (b.defined()) {  // y = 1_n b^T, then y += x w^T
    const Tensor ones = Tensor::ones({n, 1}, device);
    gemm(false, false, n, out, 1, 1.0f, ones.data(), 1, b.data(), out, 0.0f, y.data(), out);
  }
  gemm(false, true, n, out, in, 1.0f, xm.f32(), xm.ld, w.data(), in, b.defined() ? 1.0f : 0.0f, y.data(), out);

  const bool need_dx = x.requires_grad();
  const bool need_dw = weight.requires_grad();
  const bool need_db = bias.defined() && bias.requires_grad();
  record(y, "linear", {x, weight, bias}, [xr, w, n, in, out, need_dx, need_dw, need_db](const Tensor& dy_in) {
    const Tensor dy = detail::as_row_matrix(dy_in);
    const detail::Rows dym = detail::as_rows(dy), xm = detail::as_rows(xr);
    const Device device = dy.device();
    const auto gemm = ENGINE_KERNEL(device, gemm);
    Tensor dx, dw, db;
    if (need_dx) {
      dx = Tensor::empty({n, in}, device);
      gemm(false, false, n, in, out, 1.0f, dym.f32(), dym.ld, w.data(), in, 0.0f, dx.data(), in);
    }
    if (need_dw) {
      dw = Tensor::empty({out, in}, device);
      gemm(true, false, out, in, n, 1.0f, dym.f32(), dym.ld, xm.f32(), xm.ld, 0.0f, dw.data(), in);
    }
    if (need_db) {  // db^T [1, out] = 1_n^T [1, n] dy [n, out]
      db = Tensor::empty({out}, device);
      const Tensor ones = Tensor::ones({1, n}, device);
      gemm(false, false, 1, out, n, 1.0f, ones.data(), n, dym.f32(), dym.ld, 0.0f, db.data(), out);
    }
    return std::vector<Tensor>{dx, dw, db};
  });
  return y;
}

}  // namespace engine
