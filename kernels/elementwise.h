// Elementwise kernels over row-strided matrices [rows, cols] (see layout.h). Every kernel that writes
// a gradient takes `accumulate` (add into dst) as the others do.
//   copy:     dst = src                       (concatenation into a slice, slicing out of one)
//   add:      dst = a + b
//   axpy:     dst += alpha * src              (gradient accumulation, residual scale-add backward)
//   scale:    dst = alpha * src
//   relu:     y = max(x, 0);    dx = dy * [y > 0]
//   sigmoid:  y = 1 / (1 + exp(-x));  dx = dy * y * (1 - y)
//   fill:     dst = value
#pragma once
#include <cstdint>

namespace kernels::cpu {

void fill(int64_t rows, int64_t cols, float value, float* dst, int64_t ld_dst);
void copy(int64_t rows, int64_t cols, const float* src, int64_t ld_src, float* dst, int64_t ld_dst,
          bool accumulate);
void add(int64_t rows, int64_t cols, const float* a, int64_t lda, const float* b, int64_t ldb, float* dst,
         int64_t ld_dst);
void scale(int64_t rows, int64_t cols, float alpha, const float* src, int64_t ld_src, float* dst,
           int64_t ld_dst, bool accumulate);

void relu_forward(int64_t rows, int64_t cols, const float* x, int64_t ldx, float* y, int64_t ldy);
// Uses the forward output y: dx = dy where y > 0.
void relu_backward(int64_t rows, int64_t cols, const float* y, int64_t ldy, const float* dy,
                   int64_t ld_dy, float* dx, int64_t ldx, bool accumulate);

void sigmoid_forward(int64_t rows, int64_t cols, const float* x, int64_t ldx, float* y, int64_t ldy);
void sigmoid_backward(int64_t rows, int64_t cols, const float* y, int64_t ldy, const float* dy,
                      int64_t ld_dy, float* dx, int64_t ldx, bool accumulate);

// Sum of all elements, accumulated in double for a reference-quality result.
double sum(int64_t rows, int64_t cols, const float* x, int64_t ldx);

}  // namespace kernels::cpu

// The CUDA versions (kernels/cuda/*.cu) take the same arguments, device pointers, and run on the current
// stream of the CUDA context (kernels/cuda/context.h), asynchronously.
namespace kernels::cuda {

void fill(int64_t rows, int64_t cols, float value, float* dst, int64_t ld_dst);
void copy(int64_t rows, int64_t cols, const float* src, int64_t ld_src, float* dst, int64_t ld_dst,
          bool accumulate);
void add(int64_t rows, int64_t cols, const float* a, int64_t lda, const float* b, int64_t ldb, float* dst,
         int64_t ld_dst);
void scale(int64_t rows, int64_t cols, float alpha, const float* src, int64_t ld_src, float* dst,
           int64_t ld_dst, bool accumulate);
void relu_forward(int64_t rows, int64_t cols, const float* x, int64_t ldx, float* y, int64_t ldy);
void relu_backward(int64_t rows, int64_t cols, const float* y, int64_t ldy, const float* dy,
                   int64_t ld_dy, float* dx, int64_t ldx, bool accumulate);
void sigmoid_forward(int64_t rows, int64_t cols, const float* x, int64_t ldx, float* y, int64_t ldy);
void sigmoid_backward(int64_t rows, int64_t cols, const float* y, int64_t ldy, const float* dy,
                      int64_t ld_dy, float* dx, int64_t ldx, bool accumulate);
// Synchronises (the result comes back to the host).
double sum(int64_t rows, int64_t cols, const float* x, int64_t ldx);
// Column sums (bias gradients): out[c] (+)= sum_r x[r, c].
void column_sums(int64_t rows, int64_t cols, const float* x, int64_t ldx, float* out, bool accumulate);
// General strided copy of up to 8 dimensions (Tensor::copy_from between arbitrary views on the device).
void strided_copy(int ndim, const int64_t* shape, const float* src, const int64_t* src_strides, float* dst,
                  const int64_t* dst_strides);

}  // namespace kernels::cuda
