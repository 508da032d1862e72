// GPU elementwise kernels (kernels/cuda/elementwise.cu) against the CPU reference
// (kernels/cpu/elementwise.cpp): fill, copy, add, scale, relu and sigmoid forward/backward, sum,
// column_sums, strided_copy. Row-strided operands have NaN in their input gaps (a kernel that reads a
// gap produces NaN) and a sentinel in their output gaps (a kernel that writes one is caught); outputs
// are NaN before every overwrite. Tolerances (atol + rtol |ref|), per op:
//   fill, copy, add, relu, scale (overwrite): exact (the same single rounding)
//   scale/copy accumulate, relu/sigmoid backward accumulate: 1e-6 + 1e-6 |ref| (the GPU may fuse
//     the multiply-add into one FMA where the CPU rounds twice)
//   sigmoid: 1e-7 + 2e-6 |ref| (expf differs by an ulp or two)
//   sum (double): 1e-12 relative (summation order);  column_sums: 1e-6 + 1e-6 |ref| (float result)
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/elementwise.h"
#include "support/kernel_cases.h"

#ifdef ENGINE_WITH_CUDA

namespace {

using namespace gpu_test;

struct MatrixCase {
  const char* name;
  int64_t rows, cols, ld;
};

void PrintTo(const MatrixCase& c, std::ostream* os) { *os << c.name; }

class CudaElementwise : public ::testing::TestWithParam<MatrixCase> {};

// Inputs (NaN gaps) and outputs (sentinel gaps) for one case.
struct Operands {
  int64_t rows, cols, ld;
  std::vector<float> a, b, out_prior;  // strided host matrices
  Operands(const MatrixCase& c, uint64_t seed) : rows(c.rows), cols(c.cols), ld(c.ld) {
    const size_t n = size_t(rows * cols);
    a = strided(away_from_zero(n, seed), rows, cols, ld, kNaN);
    b = strided(away_from_zero(n, seed + 1), rows, cols, ld, kNaN);
    out_prior = strided(away_from_zero(n, seed + 2), rows, cols, ld, kGapSentinel);
  }
  std::vector<float> poisoned_output() const {
    return strided(std::vector<float>(size_t(rows * cols), kNaN), rows, cols, ld, kGapSentinel);
  }
};

// Runs `gpu` and `cpu` on the same output start values and compares the outputs (valid part by
// tolerance, gaps bitwise untouched).
template <typename Gpu, typename Cpu>
void expect_same(const Operands& o, const std::vector<float>& start, Gpu gpu, Cpu cpu, double atol,
                 double rtol) {
  DeviceBuffer a(o.a), b(o.b), out(start);
  gpu(a.get(), b.get(), out.get());
  const std::vector<float> got = out.download();
  std::vector<float> expected = start;
  cpu(o.a.data(), o.b.data(), expected.data());
  EXPECT_TRUE(close(dense_part(got, o.rows, o.cols, o.ld),
                    dense_part(expected, o.rows, o.cols, o.ld), atol, rtol));
  EXPECT_TRUE(gaps_untouched(got, start, o.rows, o.cols, o.ld));
}

TEST_P(CudaElementwise, FillCopyAddScale) {
  SKIP_WITHOUT_CUDA();
  const MatrixCase c = GetParam();
  const Operands o(c, 11);
  const int64_t R = c.rows, C = c.cols, L = c.ld;
  expect_same(
      o, o.poisoned_output(),
      CUDA_AND_CPU((const float*, const float*, float* y), fill({y, R, C, L}, 0.375f)),
      0, 0);
  for (bool accumulate : {false, true}) {
    const std::vector<float> start = accumulate ? o.out_prior : o.poisoned_output();
    const double tol = accumulate ? 1e-6 : 0.0;
    expect_same(
        o, start,
        CUDA_AND_CPU((const float* a, const float*, float* y),
                     copy({a, R, C, L}, {y, R, C, L}, accumulate)),
        tol, tol);
    expect_same(
        o, start,
        CUDA_AND_CPU((const float* a, const float*, float* y),
                     scale(-1.75f, {a, R, C, L}, {y, R, C, L}, accumulate)),
        tol, tol);
  }
  expect_same(
      o, o.poisoned_output(),
      CUDA_AND_CPU((const float* a, const float* b, float* y),
                   add({a, R, C, L}, {b, R, C, L}, {y, R, C, L})),
      0, 0);
}

TEST_P(CudaElementwise, ReluAndSigmoid) {
  SKIP_WITHOUT_CUDA();
  const MatrixCase c = GetParam();
  const Operands o(c, 23);
  const int64_t R = c.rows, C = c.cols, L = c.ld;
  expect_same(
      o, o.poisoned_output(),
      CUDA_AND_CPU((const float* x, const float*, float* y),
                   relu_forward({x, R, C, L}, {y, R, C, L})),
      0, 0);
  expect_same(
      o, o.poisoned_output(),
      CUDA_AND_CPU((const float* x, const float*, float* y),
                   sigmoid_forward({x, R, C, L}, {y, R, C, L})),
      1e-7, 2e-6);
  // Backward: `a` plays the forward output y (relu: its sign matters; sigmoid: any value), `b` dy.
  for (bool accumulate : {false, true}) {
    const std::vector<float> start = accumulate ? o.out_prior : o.poisoned_output();
    const double tol = accumulate ? 1e-6 : 0.0;
    expect_same(
        o, start,
        CUDA_AND_CPU((const float* y, const float* dy, float* dx),
                     relu_backward({y, R, C, L}, {dy, R, C, L}, {dx, R, C, L}, accumulate)),
        tol, tol);
    expect_same(
        o, start,
        CUDA_AND_CPU((const float* y, const float* dy, float* dx),
                     sigmoid_backward({y, R, C, L}, {dy, R, C, L}, {dx, R, C, L}, accumulate)),
        1e-6, 1e-6);
  }
}

TEST_P(CudaElementwise, InPlaceScale) {
  SKIP_WITHOUT_CUDA();
  const MatrixCase c = GetParam();
  const Operands o(c, 31);
  DeviceBuffer x(o.a);
  kernels::cuda::scale(3.0f, {x.get(), c.rows, c.cols, c.ld}, {x.get(), c.rows, c.cols, c.ld},
                       false);
  std::vector<float> expected = o.a;
  kernels::cpu::scale(3.0f, {expected.data(), c.rows, c.cols, c.ld},
                      {expected.data(), c.rows, c.cols, c.ld}, false);
  EXPECT_TRUE(close(dense_part(x.download(), c.rows, c.cols, c.ld),
                    dense_part(expected, c.rows, c.cols, c.ld), 0, 0));
}

TEST_P(CudaElementwise, SumIsDeterministicAndMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const MatrixCase c = GetParam();
  const Operands o(c, 41);
  DeviceBuffer x(o.a);
  const double gpu = kernels::cuda::sum({x.get(), c.rows, c.cols, c.ld});
  const double again = kernels::cuda::sum({x.get(), c.rows, c.cols, c.ld});
  const double cpu = kernels::cpu::sum({o.a.data(), c.rows, c.cols, c.ld});
  double abs_sum = 0.0;
  for (float v : dense_part(o.a, c.rows, c.cols, c.ld)) abs_sum += std::fabs(v);
  EXPECT_NEAR(gpu, cpu, 1e-12 * abs_sum);
  EXPECT_EQ(std::memcmp(&gpu, &again, sizeof(double)), 0) << "sum differs between runs";
}

TEST_P(CudaElementwise, ColumnSums) {
  SKIP_WITHOUT_CUDA();
  const MatrixCase c = GetParam();
  const Operands o(c, 53);
  // CPU reference: out[c] (+)= sum_r x[r, c], in double, written as float(sum + old).
  const std::vector<float> prior = away_from_zero(size_t(c.cols), 54);
  for (bool accumulate : {false, true}) {
    std::vector<float> expected(static_cast<size_t>(c.cols));
    for (int64_t j = 0; j < c.cols; ++j) {
      double s = 0.0;
      for (int64_t r = 0; r < c.rows; ++r) s += o.a[size_t(r * c.ld + j)];
      expected[size_t(j)] = float(s + (accumulate ? double(prior[size_t(j)]) : 0.0));
    }
    DeviceBuffer x(o.a);
    DeviceBuffer out(accumulate ? prior : std::vector<float>(size_t(c.cols), kNaN));
    kernels::cuda::column_sums({x.get(), c.rows, c.cols, c.ld}, out.get(), accumulate);
    const std::vector<float> first = out.download();
    EXPECT_TRUE(close(first, expected, 1e-6, 1e-6)) << "accumulate " << accumulate;
    out.upload(accumulate ? prior : std::vector<float>(size_t(c.cols), kNaN));
    kernels::cuda::column_sums({x.get(), c.rows, c.cols, c.ld}, out.get(), accumulate);
    EXPECT_TRUE(bitwise_equal(out.download(), first));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaElementwise,
    ::testing::Values(MatrixCase{"one", 1, 1, 1}, MatrixCase{"odd_7x3_ld5", 7, 3, 5},
                      // DenseNet: a growth-rate slice (32 of 160 channels) of 56x56 at batch 4
                      MatrixCase{"densenet_slice_12544x32_ld160", 12544, 32, 160},
                      MatrixCase{"densenet_56x56x128_b4", 12544, 128, 128},
                      // DenseNet-201's last block: 7x7x1920 at batch 4, as a slice of 1952
                      MatrixCase{"densenet_7x7x1920_ld1952", 196, 1920, 1952},
                      // Inception-ResNet-v2: a 192-channel branch of the 17x17x1088 block output
                      MatrixCase{"irv2_17x17_192_of_1088", 1156, 192, 1088},
                      MatrixCase{"long_column_100003x1", 100003, 1, 1}),
    test_support::case_name<MatrixCase>);

TEST(CudaStridedCopy, TransposedViewAndEightDims) {
  SKIP_WITHOUT_CUDA();
  // A 4-d [2, 3, 4, 5] view whose source is the dense [5, 4, 3, 2] tensor read transposed.
  const std::vector<int64_t> shape{2, 3, 4, 5};
  const std::vector<int64_t> src_strides{1, 2, 6, 24};  // src is [5, 4, 3, 2] dense
  const std::vector<int64_t> dst_strides{60, 20, 5, 1};
  const std::vector<float> src = away_from_zero(120, 61);
  std::vector<float> expected(120);
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 4; ++k)
        for (int64_t l = 0; l < 5; ++l)
          expected[size_t(i * 60 + j * 20 + k * 5 + l)] = src[size_t(i + 2 * j + 6 * k + 24 * l)];
  DeviceBuffer s(src), d(120);
  kernels::cuda::strided_copy(4, shape.data(), s.get(), src_strides.data(), d.get(),
                              dst_strides.data());
  EXPECT_TRUE(close(d.download(), expected, 0, 0));

  // 8 dimensions, the destination a strided view (every other element) of a larger buffer.
  const std::vector<int64_t> shape8{2, 1, 3, 1, 2, 2, 1, 3};  // 72 elements
  std::vector<int64_t> dense8(8), dst8(8);
  int64_t stride = 1;
  for (int d8 = 7; d8 >= 0; --d8) {
    dense8[size_t(d8)] = stride;
    dst8[size_t(d8)] = 2 * stride;
    stride *= shape8[size_t(d8)];
  }
  const std::vector<float> src8 = away_from_zero(72, 62);
  std::vector<float> start8(144, kGapSentinel), expected8 = start8;
  for (size_t i = 0; i < 72; ++i) expected8[2 * i] = src8[i];
  DeviceBuffer s8(src8), d8(start8);
  kernels::cuda::strided_copy(8, shape8.data(), s8.get(), dense8.data(), d8.get(), dst8.data());
  EXPECT_TRUE(bitwise_equal(d8.download(), expected8));

  // More than 8 dimensions is an error, not a silent partial copy.
  const std::vector<int64_t> nine(9, 1);
  EXPECT_THROW(kernels::cuda::strided_copy(9, nine.data(), s.get(), nine.data(), d.get(), nine.data()),
               std::runtime_error);
}

TEST(CudaElementwiseEdges, EmptyShapesWriteNothing) {
  SKIP_WITHOUT_CUDA();
  DeviceBuffer out(std::vector<float>(4, kGapSentinel));
  kernels::cuda::fill({out.get(), 0, 4, 4}, 1.0f);
  kernels::cuda::copy({out.get(), 4, 0, 4}, {out.get(), 4, 0, 4}, false);
  EXPECT_EQ(kernels::cuda::sum({out.get(), 0, 3, 3}), 0.0);
  EXPECT_TRUE(bitwise_equal(out.download(), std::vector<float>(4, kGapSentinel)));
}

}  // namespace

#else

TEST(CudaElementwise, NotBuilt) { GTEST_SKIP() << "no CUDA device: this build has no CUDA backend"; }

#endif
