// Memory layout and element types shared by every kernel, and the matrix view they take.
//
// Activations are NHWC. An activation [N, H, W, C] is seen by the kernels as a matrix of
// rows = N*H*W pixels and cols = C channels, with a row stride `ld` (elements from one pixel to the
// next). ld == C for a dense tensor; ld > C for a channel slice of a wider buffer (a DenseNet
// concatenation buffer, an Inception branch's slice of its block output). Kernels read and write
// only the first C elements of every row, never the gap.
//
// Convolution weights are OHWI: [out_channels, kernel_h, kernel_w, in_channels], dense. This is the
// layout of cuDNN's NHWC filters, and with it a convolution is one GEMM over im2col patches:
//   y[pixel, o] = sum_{kh, kw, i} patch[pixel, (kh, kw, i)] * w[o, (kh, kw, i)]
// Linear weights are [out, in] (as PyTorch), y = x w^T + b.
//
// Kernels know raw pointers and shapes only, never tensors: a matrix operand is a MatrixView
// (output) or ConstMatrixView (input), which carries its element type. Kernels take f32 unless their
// header says otherwise (the conversions of convert.h take bf16 too); one that is handed a type it
// does not take throws std::invalid_argument (f32(), bf16() below) instead of misreading the bytes.
// `accumulate == true` adds into the destination (gradient accumulation); false overwrites it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/bf16.h"

namespace kernels {

// Element types. f32 is the reference type; bf16 (kernels/bf16.h) is the storage type of the GPU's
// mixed-precision path (docs/precision.md).
enum class DType : uint8_t { f32, bf16 };

inline size_t dtype_size(DType t) { return t == DType::f32 ? 4 : 2; }
inline const char* dtype_name(DType t) { return t == DType::f32 ? "f32" : "bf16"; }

// Throws std::invalid_argument: a kernel was handed `got` where it supports only `supported`.
[[noreturn]] inline void unsupported_dtype(DType got, DType supported) {
  throw std::invalid_argument(std::string("kernels: a ") + dtype_name(got) +
                              " matrix was passed to a kernel that takes " + dtype_name(supported) +
                              " only; convert the tensor first");
}

// A (possibly row-strided) matrix [rows, cols] with row stride ld >= cols, of element type dtype,
// that a kernel writes (or reads and writes). data == nullptr marks an optional output as not
// wanted.
struct MatrixView {
  void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t ld = 0;
  DType dtype = DType::f32;

  MatrixView() = default;
  MatrixView(void* data, int64_t rows, int64_t cols, int64_t ld, DType dtype)
      : data(data), rows(rows), cols(cols), ld(ld), dtype(dtype) {}
  MatrixView(float* data, int64_t rows, int64_t cols, int64_t ld)
      : MatrixView(static_cast<void*>(data), rows, cols, ld, DType::f32) {}

  // The elements as f32; throws unless dtype == f32.
  float* f32() const {
    if (dtype != DType::f32) unsupported_dtype(dtype, DType::f32);
    return static_cast<float*>(data);
  }
  // The elements as bf16; throws unless dtype == bf16.
  BFloat16* bf16() const {
    if (dtype != DType::bf16) unsupported_dtype(dtype, DType::bf16);
    return static_cast<BFloat16*>(data);
  }
};

// The same for a matrix a kernel only reads; every MatrixView converts to one.
struct ConstMatrixView {
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t ld = 0;
  DType dtype = DType::f32;

  ConstMatrixView() = default;
  ConstMatrixView(const void* data, int64_t rows, int64_t cols, int64_t ld, DType dtype)
      : data(data), rows(rows), cols(cols), ld(ld), dtype(dtype) {}
  ConstMatrixView(const float* data, int64_t rows, int64_t cols, int64_t ld)
      : ConstMatrixView(static_cast<const void*>(data), rows, cols, ld, DType::f32) {}
  ConstMatrixView(
      const MatrixView& m)  // NOLINT(google-explicit-constructor): an output reads as input
      : ConstMatrixView(m.data, m.rows, m.cols, m.ld, m.dtype) {}

  const float* f32() const {
    if (dtype != DType::f32) unsupported_dtype(dtype, DType::f32);
    return static_cast<const float*>(data);
  }
  const BFloat16* bf16() const {
    if (dtype != DType::bf16) unsupported_dtype(dtype, DType::bf16);
    return static_cast<const BFloat16*>(data);
  }
};

// Throw std::invalid_argument naming `kernel` unless the view m is [rows, cols] (check_shape), has
// the shape of the view `like` (check_same_shape), or is dense (check_dense: ld == cols).
template <typename View>
void check_shape(const char* kernel, const View& m, int64_t rows, int64_t cols) {
  if (m.cols == cols && (m.rows == rows || cols == 0)) return;  // [any, 0] has no elements
  throw std::invalid_argument(std::string("kernels: ") + kernel + ": expected a [" +
                              std::to_string(rows) + ", " + std::to_string(cols) +
                              "] matrix, got [" + std::to_string(m.rows) + ", " +
                              std::to_string(m.cols) + "]");
}
template <typename View, typename Like>
void check_same_shape(const char* kernel, const View& m, const Like& like) {
  check_shape(kernel, m, like.rows, like.cols);
}
template <typename View>
void check_dense(const char* kernel, const View& m) {
  if (m.ld != m.cols)
    throw std::invalid_argument(
        std::string("kernels: ") + kernel + ": expected a dense matrix, got row stride " +
        std::to_string(m.ld) + " for " + std::to_string(m.cols) + " columns");
}

// A kernel's operands after its checks (the <family>_operands functions of each family header, shared
// by both backends): the typed pointers and row strides, in the order a kernel binds them, e.g.
//   const auto [x, ldx, y, ldy] = window_forward_operands("max_pool2d_forward", g, x_view, y_view);
// The Matrix* forms lead with the [rows, cols] every operand has.
struct ReadWrite {
  const float* in;
  int64_t ld_in;
  float* out;
  int64_t ld_out;
};
struct ReadRead {
  const float* in;
  int64_t ld_in;
  const float* in2;
  int64_t ld_in2;
};
struct ReadReadWrite {
  const float* in;
  int64_t ld_in;
  const float* in2;
  int64_t ld_in2;
  float* out;  // null where an optional output is not wanted
  int64_t ld_out;
};
struct MatrixReadWrite {
  int64_t rows, cols;
  const float* in;
  int64_t ld_in;
  float* out;
  int64_t ld_out;
};
struct MatrixReadReadWrite {
  int64_t rows, cols;
  const float* in;
  int64_t ld_in;
  const float* in2;
  int64_t ld_in2;
  float* out;  // null where an optional output is not wanted
  int64_t ld_out;
};

// For the geometry g of a windowed op (Conv2dGeometry, Pool2dGeometry: input_rows(),
// input_channels(), output_rows(), output_channels()): throw std::invalid_argument naming `kernel`
// unless m is g's input [input_rows, input_channels] (check_input) or its output (check_output).
template <typename Geometry, typename View>
void check_input(const char* kernel, const Geometry& g, const View& m) {
  check_shape(kernel, m, g.input_rows(), g.input_channels());
}
template <typename Geometry, typename View>
void check_output(const char* kernel, const Geometry& g, const View& m) {
  check_shape(kernel, m, g.output_rows(), g.output_channels());
}

// A windowed op's forward operands (x g's input, y its output), checked and unpacked; bound as
// [x, ldx, y, ldy].
template <typename Geometry>
ReadWrite window_forward_operands(const char* kernel, const Geometry& g, ConstMatrixView x,
                                  MatrixView y) {
  check_input(kernel, g, x);
  check_output(kernel, g, y);
  return {x.f32(), x.ld, y.f32(), y.ld};
}

}  // namespace kernels
