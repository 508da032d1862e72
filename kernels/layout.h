// Memory layout shared by every kernel.
//
// Activations are NHWC, float32. An activation [N, H, W, C] is seen by the kernels as a matrix of
// rows = N*H*W pixels and cols = C channels, with a row stride `ld` (elements from one pixel to the
// next). ld == C for a dense tensor; ld > C for a channel slice of a wider buffer (a DenseNet
// concatenation buffer, an Inception branch's slice of its block output). Kernels read and write only
// the first C elements of every row, never the gap.
//
// Convolution weights are OHWI: [out_channels, kernel_h, kernel_w, in_channels], dense. This is the
// layout of cuDNN's NHWC filters, and with it a convolution is one GEMM over im2col patches:
//   y[pixel, o] = sum_{kh, kw, i} patch[pixel, (kh, kw, i)] * w[o, (kh, kw, i)]
// Linear weights are [out, in] (as PyTorch), y = x w^T + b.
//
// Kernels know raw pointers and shapes only, never tensors. `accumulate == true` adds into the
// destination (gradient accumulation); false overwrites it.
#pragma once
#include <cstdint>

namespace kernels {

// A (possibly row-strided) NHWC activation seen as a matrix [rows, cols] with row stride ld.
struct MatrixShape {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t ld = 0;
};

}  // namespace kernels
