#include "engine/ops/common.h"

#include "engine/optim.h"

namespace engine::detail {
namespace {

// The row stride of t seen as [rows, cols], or -1 when t is not a row matrix. Dimensions of size 1
// have no meaningful stride and are ignored.
int64_t row_stride(const Tensor& t) {
  const Shape& shape = t.shape();
  const Shape& strides = t.strides();
  const int n = t.ndim();
  if (n == 0) return 1;
  const int64_t cols = shape[n - 1];
  if (cols != 1 && strides[n - 1] != 1) return -1;
  int64_t ld = -1;
  int64_t rows_inside = 1;  // rows spanned by one step of dimension d
  for (int d = n - 2; d >= 0; --d) {
    if (shape[d] != 1) {
      if (ld < 0) {
        ld = strides[d];
      } else if (strides[d] != ld * rows_inside) {
        return -1;
      }
      rows_inside *= shape[d];
    }
  }
  if (ld < cols) ld = cols;  // a single row (or none): any ld >= cols serves
  return ld;
}

}  // namespace

bool is_row_matrix(const Tensor& t) { return row_stride(t) >= 0; }

Rows as_rows(const Tensor& t) {
  const int64_t ld = row_stride(t);
  ENGINE_CHECK(ld >= 0) << "tensor " << t.str() << " with strides " << shape_str(t.strides())
                        << " is not a row matrix";
  const int64_t cols = t.ndim() == 0 ? 1 : t.shape().back();
  const int64_t rows = cols == 0 ? 0 : t.numel() / cols;
  return {t.raw_data(), rows, cols, ld, t.dtype()};
}

kernels::MatrixView as_column(const Tensor& t) {
  if (!t.defined()) return {};
  ENGINE_CHECK(t.is_contiguous()) << "tensor " << t.str() << " is not contiguous";
  return {t.raw_data(), t.numel(), 1, 1, t.dtype()};
}

Tensor as_row_matrix(const Tensor& t) { return is_row_matrix(t) ? t : t.contiguous(); }

Tensor output_or_new(const char* op, const Tensor& out, const Shape& shape, Device device, DType dtype) {
  if (!out.defined()) return Tensor::empty(shape, device, dtype);
  ENGINE_CHECK(out.device() == device) << op << ": out is on " << out.device().str() << ", expected " << device.str();
  ENGINE_CHECK(out.dtype() == dtype) << op << ": out is " << out.str() << " for a " << dtype_name(dtype)
                                     << " result; give it the input's dtype";
  ENGINE_CHECK(out.shape() == shape) << op << ": out has shape " << shape_str(out.shape()) << ", expected "
                                     << shape_str(shape);
  ENGINE_CHECK(is_row_matrix(out)) << op << ": out must be dense or a channel slice";
  return out;
}

void check_same_device(const char* op, const std::vector<Tensor>& tensors) {
  const Tensor* first = nullptr;
  for (const Tensor& t : tensors) {
    if (!t.defined()) continue;
    if (!first) {
      first = &t;
      continue;
    }
    ENGINE_CHECK(t.device() == first->device())
        << op << ": tensors on different devices (" << first->device().str() << " and "
        << t.device().str() << "); move them with .to()";
  }
}

void no_cuda_kernel(const char* op) {
  ENGINE_FAIL() << op << " has no CUDA kernel in this build; run on the CPU device";
}

Tensor bf16_working_copy(const Tensor& weight) {
  // Inside a training step: the arena's copy, made once per step (engine/optim.h). The same bits as
  // the rounding below, which every other call does.
  if (Tensor cached = cached_bf16_working_copy(weight); cached.defined()) return cached;
  const Tensor w = weight.contiguous();
  return w.dtype() == DType::bf16 ? w : w.to(DType::bf16);
}

}  // namespace engine::detail
