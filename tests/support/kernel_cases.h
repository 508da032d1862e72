// Parameters and helpers the CPU and GPU kernel tests (tests/{cpu,gpu}/test_kernels_*.cpp) share:
// the GEMM case, convolution and pooling geometries, and the name generator of a
// value-parameterised suite whose case has a `name` (the test is then Suite.Test/<name>).
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <string>

#include "kernels/conv.h"
#include "kernels/pool.h"

namespace test_support {

// One GEMM: C[m, n] = alpha * op(A) op(B) + beta * C, every leading dimension cols + pad.
struct GemmCase {
  const char* name;
  int64_t m, n, k;
  bool transpose_a, transpose_b;
  int64_t pad;  // extra elements in every leading dimension
  float alpha, beta;
};

inline void PrintTo(const GemmCase& c, std::ostream* os) { *os << c.name; }

// A convolution or pooling case of the GPU tests: its geometry and the row strides of x/dx and y/dy
// (>= their channel counts).
template <typename Geometry>
struct StridedCase {
  const char* name;
  Geometry g;
  int64_t ldx, ldy;
};
template <typename Geometry>
void PrintTo(const StridedCase<Geometry>& c, std::ostream* os) {
  *os << c.name;
}

// The geometry of a convolution / pooling case, its fields in declaration order.
inline kernels::Conv2dGeometry conv_geometry(int64_t batch, int64_t in_h, int64_t in_w, int64_t in_c,
                                             int64_t out_c, int64_t kernel_h, int64_t kernel_w,
                                             int64_t stride_h, int64_t stride_w, int64_t pad_top,
                                             int64_t pad_bottom, int64_t pad_left, int64_t pad_right) {
  kernels::Conv2dGeometry g;
  g.batch = batch, g.in_h = in_h, g.in_w = in_w, g.in_c = in_c, g.out_c = out_c;
  g.kernel_h = kernel_h, g.kernel_w = kernel_w, g.stride_h = stride_h, g.stride_w = stride_w;
  g.pad_top = pad_top, g.pad_bottom = pad_bottom, g.pad_left = pad_left, g.pad_right = pad_right;
  return g;
}
inline kernels::Pool2dGeometry pool_geometry(int64_t batch, int64_t in_h, int64_t in_w,
                                             int64_t channels, int64_t kernel_h, int64_t kernel_w,
                                             int64_t stride_h, int64_t stride_w, int64_t pad_top,
                                             int64_t pad_bottom, int64_t pad_left, int64_t pad_right) {
  kernels::Pool2dGeometry g;
  g.batch = batch, g.in_h = in_h, g.in_w = in_w, g.channels = channels;
  g.kernel_h = kernel_h, g.kernel_w = kernel_w, g.stride_h = stride_h, g.stride_w = stride_w;
  g.pad_top = pad_top, g.pad_bottom = pad_bottom, g.pad_left = pad_left, g.pad_right = pad_right;
  return g;
}

// For INSTANTIATE_TEST_SUITE_P(..., test_support::case_name<Case>).
template <typename Case>
std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return std::string(info.param.name);
}

}  // namespace test_support
