// Element-type conversion on the CPU (see convert.h): rows threaded, each row one simd loop over the
// first cols elements with convert_element of kernels/bf16.h's rounding.
#include "kernels/convert.h"

namespace kernels::cpu {
namespace {

// Below this many elements the loop runs on one thread (starting OpenMP would cost more).
constexpr int64_t kParallelMinElements = 1 << 15;

}  // namespace

void convert(ConstMatrixView src_view, MatrixView dst_view) {
  const ConvertOperands o = convert_operands("convert", src_view, dst_view);
  const int64_t rows = o.rows, cols = o.cols, ld_in = o.ld_in, ld_out = o.ld_out;
  if (rows <= 0 || cols <= 0) return;
  with_typed_pointers(o, [=](const auto* in, auto* out) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
    for (int64_t r = 0; r < rows; ++r) {
      const auto* in_row = in + r * ld_in;
      auto* out_row = out + r * ld_out;
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) convert_element(in_row[c], out_row[c]);
    }
  });
}

}  // namespace kernels::cpu
