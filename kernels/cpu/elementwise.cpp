// Elementwise kernels on the CPU over row-strided matrices [rows, cols] (see elementwise.h):
//   fill: dst = value      copy: dst (+)= src     add: dst = a + b     scale: dst (+)= alpha * src
//   relu: y = max(x, 0),  dx (+)= dy * [y > 0]
//   sigmoid: y = 1 / (1 + exp(-x)),  dx (+)= dy * y * (1 - y)
//   sum: sum of all elements, in double
// Every loop walks rows (threaded) and touches the first `cols` elements of each row only, never
// the gap up to the row stride. In-place calls (dst == src with the same stride) are allowed.
#include "kernels/elementwise.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace kernels::cpu {
namespace {

// Below this many elements a loop runs on one thread (starting OpenMP would cost more).
constexpr int64_t kParallelMinElements = 1 << 15;

// Applies op(r, c) to every element, rows threaded.
template <typename Op>
void for_each_element(int64_t rows, int64_t cols, Op op) {
  if (rows <= 0 || cols <= 0) return;
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) op(r, c);
}

inline void store(float* dst, float value, bool accumulate) {
  *dst = accumulate ? *dst + value : value;
}

// Overflow-free logistic: exp is only ever taken of a non-positive number.
inline float stable_sigmoid(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + std::exp(-x));
  const float e = std::exp(x);
  return e / (1.0f + e);
}

}  // namespace

void fill(int64_t rows, int64_t cols, float value, float* dst, int64_t ld_dst) {
  for_each_element(rows, cols, [=](int64_t r, int64_t c) { dst[r * ld_dst + c] = value; });
}

void copy(int64_t rows, int64_t cols, const float* src, int64_t ld_src, float* dst, int64_t ld_dst,
          bool accumulate) {
  for_each_element(rows, cols, [=](int64_t r, int64_t c) {
    store(dst + r * ld_dst + c, src[r * ld_src + c], accumulate);
  });
}

void add(int64_t rows, int64_t cols, const float* a, int64_t lda, const float* b, int64_t ldb,
         float* dst, int64_t ld_dst) {
  for_each_element(rows, cols, [=](int64_t r, int64_t c) {
    dst[r * ld_dst + c] = a[r * lda + c] + b[r * ldb + c];
  });
}

void scale(int64_t rows, int64_t cols, float alpha, const float* src, int64_t ld_src, float* dst,
           int64_t ld_dst, bool accumulate) {
  for_each_element(rows, cols, [=](int64_t r, int64_t c) {
    store(dst + r * ld_dst + c, alpha * src[r * ld_src + c], accumulate);
  });
}

void relu_forward(int64_t rows, int64_t cols, const float* x, int64_t ldx, float* y, int64_t ldy) {
  for_each_element(rows, cols, [=](int64_t r, int64_t c) {
    const float v = x[r * ldx + c];
    y[r * ldy + c] = v < 0.0f ? 0.0f : v;  // NaN stays NaN (as PyTorch), so a diverged run shows it
  });
}

void relu_backward(int64_t rows, int64_t cols, const float* y, int64_t ldy, const float* dy,
                   int64_t ld_dy, float* dx, int64_t ldx, bool accumulate) {
  for_each_element(rows, cols, [=](int64_t r, int64_t c) {
    const float g = y[r * ldy + c] > 0.0f ? dy[r * ld_dy + c] : 0.0f;
    store(dx + r * ldx + c, g, accumulate);
  });
}

void sigmoid_forward(int64_t rows, int64_t cols, const float* x, int64_t ldx, float* y,
                     int64_t ldy) {
  for_each_element(rows, cols, [=](int64_t r, int64_t c) {
    y[r * ldy + c] = stable_sigmoid(x[r * ldx + c]);
  });
}

void sigmoid_backward(int64_t rows, int64_t cols, const float* y, int64_t ldy, const float* dy,
                      int64_t ld_dy, float* dx, int64_t ldx, bool accumulate) {
  for_each_element(rows, cols, [=](int64_t r, int64_t c) {
    const float s = y[r * ldy + c];
    store(dx + r * ldx + c, dy[r * ld_dy + c] * s * (1.0f - s), accumulate);
  });
}

double sum(int64_t rows, int64_t cols, const float* x, int64_t ldx) {
  if (rows <= 0 || cols <= 0) return 0.0;
  // Fixed blocks of rows (their size depends on `rows` only), each summed in double, then added in
  // block order: the same result for any thread count.
  constexpr int64_t kMaxBlocks = 256;
  const int64_t block = std::max<int64_t>(1, (rows + kMaxBlocks - 1) / kMaxBlocks);
  const int64_t blocks = (rows + block - 1) / block;
  std::vector<double> partials(static_cast<size_t>(blocks), 0.0);
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
  for (int64_t b = 0; b < blocks; ++b) {
    double acc = 0.0;
    const int64_t end = std::min(rows, (b + 1) * block);
    for (int64_t r = b * block; r < end; ++r) {
      const float* xr = x + r * ldx;
      for (int64_t c = 0; c < cols; ++c) acc += xr[c];
    }
    partials[b] = acc;
  }
  double total = 0.0;
  for (double p : partials) total += p;
  return total;
}

}  // namespace kernels::cpu
