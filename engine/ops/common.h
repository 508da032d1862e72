// Shared plumbing of the op implementations: seeing tensors as the kernels' row matrices, device
// checks, and the dispatch guard for the CUDA backend.
#pragma once
#include <vector>

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/tensor.h"
#include "kernels/layout.h"

namespace engine::detail {

// A tensor seen as the kernels' matrix view [rows, cols] with row stride ld and the tensor's dtype
// (kernels/layout.h): the last dimension is dense and the other dimensions collapse into rows with a
// single stride.
using Rows = kernels::MatrixView;

bool is_row_matrix(const Tensor& t);
Rows as_rows(const Tensor& t);  // throws unless is_row_matrix(t)
// A contiguous tensor's elements as a dense column view [numel, 1] (loss operands), or an empty view
// (data == nullptr) when t is undefined.
kernels::MatrixView as_column(const Tensor& t);
// t's data as f32, or nullptr when t is undefined (optional per-channel parameters).
inline float* data_or_null(const Tensor& t) { return t.defined() ? t.data() : nullptr; }
// t itself when it is a row matrix, a dense copy otherwise.
Tensor as_row_matrix(const Tensor& t);

// An op's output y: `out` when the caller gives one (checked: y's shape and dtype, dense or a channel
// slice of a wider buffer, e.g. its part of a concatenation), else a new tensor.
Tensor output_or_new(const char* op, const Tensor& out, const Shape& shape, Device device, DType dtype);

// All defined tensors are on the device of the first; names the op in the error. Activations may be
// f32 or bf16 (docs/precision.md); per-channel parameters are read with data(), which takes f32 only.
void check_same_device(const char* op, const std::vector<Tensor>& tensors);

[[noreturn]] void no_cuda_kernel(const char* op);

// The bf16 working copy of a weight, as the kernels of an op on bf16 activations read it: the weight
// itself (dense) when it is bf16, else its f32 values rounded to nearest even (docs/precision.md).
// Inside a training step whose arena keeps a bf16 copy of its weights (engine/optim.h:
// Bf16WorkingCopyScope), a parameter's view of that copy, made once per step; elsewhere the rounding
// is done per call. The bits are the same either way.
Tensor bf16_working_copy(const Tensor& weight);

}  // namespace engine::detail

// The kernel `fn` for `device`: kernels::cpu::fn or kernels::cuda::fn (same signature), e.g.
//   ENGINE_KERNEL(x.device(), relu_forward)(as_rows(x), as_rows(y));
// Builds without the CUDA backend raise a clear error for CUDA tensors.
#ifdef ENGINE_WITH_CUDA
#define ENGINE_KERNEL(device, fn) ((device).is_cpu() ? &::kernels::cpu::fn : &::kernels::cuda::fn)
#else
#define ENGINE_KERNEL(device, fn) \
  ((device).is_cpu() ? &::kernels::cpu::fn : (::engine::detail::no_cuda_kernel(#fn), &::kernels::cpu::fn))
#endif
