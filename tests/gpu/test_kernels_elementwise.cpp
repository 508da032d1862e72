// GPU elementwise kernels (kernels/cuda/elementwise.cu) against the CPU reference
// (kernels/cpu/elementwise.cpp): fill, copy, add, scale, relu and sigmoid forward/backward, sum,
// column_sums, strided_copy. Row-strided operands have NaN in their input gaps (a kernel that reads a
// gap produces NaN) and a sentinel in their output gaps (a kernel that writes one is caught); outputs
// are NaN before every overwrite. Tolerances (atol + rtol |ref|), per op:
//   fill, copy, add, relu, scale (overwrite and accumulate), scaled_residual: exact (the same roundings:
//     the CUDA maps round each product on its own, no FMA)
//   relu/sigmoid backward accumulate: 1e-6 + 1e-6 |ref|
//   sigmoid: 1e-7 + 2e-6 |ref| (expf differs by an ulp or two)
//   sum (double): 1e-12 relative (summation order);  column_sums: 1e-6 + 1e-6 |ref| (float result)
// The maps take 16-byte loads where operands are aligned (the shapes below have dense, strided with a
// packable stride, odd and tail cases), element loads where not (MisalignedOperandsMatchCpu); all-bf16
// operands run natively and must give the CPU emulation's values (Bf16MatchesCpuEmulation); bf16 sum and
// column_sums equal the sums of the widened values bit for bit (Bf16SumsEqualTheSumsOfTheWidenedValues).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "engine/tensor.h"
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

// The two backends' maps behind one interface (the bf16 test runs the same calls on both).
#define ELEMENTWISE_BACKEND(Name, ns)                                                                    \
  struct Name {                                                                                          \
    void fill(kernels::MatrixView y, float v) const { ns::fill(y, v); }                                 \
    void copy(kernels::ConstMatrixView x, kernels::MatrixView y, bool acc) const { ns::copy(x, y, acc); } \
    void scale(float a, kernels::ConstMatrixView x, kernels::MatrixView y, bool acc) const {            \
      ns::scale(a, x, y, acc);                                                                           \
    }                                                                                                    \
    void add(kernels::ConstMatrixView a, kernels::ConstMatrixView b, kernels::MatrixView y) const {     \
      ns::add(a, b, y);                                                                                  \
    }                                                                                                    \
    void relu_forward(kernels::ConstMatrixView x, kernels::MatrixView y) const { ns::relu_forward(x, y); } \
    void relu_backward(kernels::ConstMatrixView y, kernels::ConstMatrixView dy, kernels::MatrixView dx,  \
                       bool acc) const {                                                                 \
      ns::relu_backward(y, dy, dx, acc);                                                                 \
    }                                                                                                    \
    void sigmoid_forward(kernels::ConstMatrixView x, kernels::MatrixView y) const {                      \
      ns::sigmoid_forward(x, y);                                                                         \
    }                                                                                                    \
    void sigmoid_backward(kernels::ConstMatrixView y, kernels::ConstMatrixView dy, kernels::MatrixView dx, \
                          bool acc) const {                                                              \
      ns::sigmoid_backward(y, dy, dx, acc);                                                              \
    }                                                                                                    \
  }
ELEMENTWISE_BACKEND(CpuKernels, kernels::cpu);
ELEMENTWISE_BACKEND(CudaKernels, kernels::cuda);
#undef ELEMENTWISE_BACKEND


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
    expect_same(
        o, start,
        CUDA_AND_CPU((const float* a, const float*, float* y),
                     copy({a, R, C, L}, {y, R, C, L}, accumulate)),
        0, 0);
    expect_same(
        o, start,
        CUDA_AND_CPU((const float* a, const float*, float* y),
                     scale(-1.75f, {a, R, C, L}, {y, R, C, L}, accumulate)),
        0, 0);
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

// Inception-ResNet-v2's residual tail: y = act(x + scale * up) and its backward (dx, dup), with and
// without the ReLU, bit for bit the CPU's (the product and the sum rounded separately on both).
TEST_P(CudaElementwise, ScaledResidualMatchesCpuBitForBit) {
  SKIP_WITHOUT_CUDA();
  const MatrixCase c = GetParam();
  const Operands o(c, 29);
  const int64_t R = c.rows, C = c.cols, L = c.ld;
  for (const bool relu : {false, true}) {
    SCOPED_TRACE(relu ? "relu" : "no relu");
    expect_same(
        o, o.poisoned_output(),
        CUDA_AND_CPU((const float* x, const float* up, float* y),
                     scaled_residual_forward(0.17f, {x, R, C, L}, {up, R, C, L}, {y, R, C, L}, relu)),
        0, 0);
    // Backward: `a` plays y (its sign is the ReLU's mask), `b` dy; two outputs.
    DeviceBuffer y(o.a), dy(o.b), dx(o.poisoned_output()), dup(o.poisoned_output());
    kernels::cuda::scaled_residual_backward(0.17f, {y.get(), R, C, L}, {dy.get(), R, C, L}, {dx.get(), R, C, L},
                                            {dup.get(), R, C, L}, relu);
    std::vector<float> dx_ref = o.poisoned_output(), dup_ref = o.poisoned_output();
    kernels::cpu::scaled_residual_backward(0.17f, {o.a.data(), R, C, L}, {o.b.data(), R, C, L},
                                           {dx_ref.data(), R, C, L}, {dup_ref.data(), R, C, L}, relu);
    const std::vector<float> dx_got = dx.download(), dup_got = dup.download();
    EXPECT_TRUE(bitwise_equal(dx_got, dx_ref)) << "dx (gaps included)";
    EXPECT_TRUE(bitwise_equal(dup_got, dup_ref)) << "dup (gaps included)";
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

// Operands that start 4 bytes past a 16-byte boundary cannot take the 16-byte loads: the element path
// must give the same results (and leave the gaps alone).
TEST_P(CudaElementwise, MisalignedOperandsMatchCpu) {
  SKIP_WITHOUT_CUDA();
  const MatrixCase c = GetParam();
  const Operands o(c, 71);
  const int64_t R = c.rows, C = c.cols, L = c.ld;
  auto shifted = [](const std::vector<float>& v) {
    std::vector<float> w(v.size() + 1, kGapSentinel);
    std::copy(v.begin(), v.end(), w.begin() + 1);
    return w;
  };
  const std::vector<float> start = shifted(o.out_prior);
  DeviceBuffer a(shifted(o.a)), b(shifted(o.b)), out(start);
  kernels::cuda::add({a.get() + 1, R, C, L}, {b.get() + 1, R, C, L}, {out.get() + 1, R, C, L});
  kernels::cuda::relu_backward({a.get() + 1, R, C, L}, {b.get() + 1, R, C, L}, {out.get() + 1, R, C, L}, true);
  std::vector<float> expected = o.out_prior;
  kernels::cpu::add({o.a.data(), R, C, L}, {o.b.data(), R, C, L}, {expected.data(), R, C, L});
  kernels::cpu::relu_backward({o.a.data(), R, C, L}, {o.b.data(), R, C, L}, {expected.data(), R, C, L}, true);
  const std::vector<float> got_shifted = out.download();
  const std::vector<float> got(got_shifted.begin() + 1, got_shifted.end());
  EXPECT_EQ(got_shifted[0], kGapSentinel);
  EXPECT_TRUE(close(dense_part(got, R, C, L), dense_part(expected, R, C, L), 0, 0));
  EXPECT_TRUE(gaps_untouched(got, o.out_prior, R, C, L));
}

// All-bf16 operands run the maps natively (8 bf16 a thread where aligned): the CPU emulation's values
// (widen, f32, one rounding): bitwise for fill, copy, add, scale and relu; sigmoid within one bf16 ulp
// (expf differs by an ulp, which may move a rounding); accumulating backward within one bf16 ulp (FMA).
TEST_P(CudaElementwise, Bf16MatchesCpuEmulation) {
  SKIP_WITHOUT_CUDA();
  const MatrixCase c = GetParam();
  const Operands o(c, 83);
  const int64_t R = c.rows, C = c.cols, L = c.ld;
  using engine::Tensor;
  auto bf16 = [&](const std::vector<float>& v, engine::Device d) {
    return Tensor::from_vector({R, L}, v, d, kernels::DType::bf16);
  };
  auto view = [&](const Tensor& t) { return kernels::MatrixView(t.raw_data(), R, C, L, kernels::DType::bf16); };
  // Every map once, each into its own output, on `device`.
  auto run = [&](engine::Device d, bool accumulate) {
    const Tensor a = bf16(o.a, d), b = bf16(o.b, d);
    const std::vector<float> start = accumulate ? o.out_prior : o.poisoned_output();
    std::vector<Tensor> outs;
    for (int i = 0; i < 9; ++i) outs.push_back(bf16(start, d));
    auto run_on = [&](auto backend) {
      backend.fill(view(outs[0]), 0.3f);
      backend.copy(view(a), view(outs[1]), accumulate);
      backend.scale(-1.75f, view(a), view(outs[2]), accumulate);
      backend.add(view(a), view(b), view(outs[3]));
      backend.relu_forward(view(a), view(outs[4]));
      backend.relu_backward(view(a), view(b), view(outs[5]), accumulate);
      backend.sigmoid_forward(view(a), view(outs[6]));
      backend.sigmoid_backward(view(a), view(b), view(outs[7]), accumulate);
    };
    if (d.is_cpu())
      run_on(CpuKernels{});
    else
      run_on(CudaKernels{});
    std::vector<std::vector<float>> values;
    for (const Tensor& t : outs) values.push_back(dense_part(t.to_vector(), R, C, L));
    return values;
  };
  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(accumulate ? "accumulate" : "overwrite");
    const auto ref = run(engine::Device::cpu(), accumulate), got = run(engine::Device::cuda(), accumulate);
    const char* names[8] = {"fill", "copy", "scale", "add", "relu_forward", "relu_backward", "sigmoid_forward",
                            "sigmoid_backward"};
    for (int i = 0; i < 8; ++i) {
      const bool one_ulp = i >= 6 || (accumulate && (i == 2 || i == 5));
      EXPECT_TRUE(one_ulp ? close(got[size_t(i)], ref[size_t(i)], 1e-6, 8e-3) : bitwise_equal(got[size_t(i)], ref[size_t(i)]))
          << names[i];
    }
  }
}

// sum and column_sums read bf16 natively, each element widened exactly and summed in double in the f32
// kernels' order: the sums of the widened f32 copy (what the emulation ran) bit for bit.
TEST_P(CudaElementwise, Bf16SumsEqualTheSumsOfTheWidenedValues) {
  SKIP_WITHOUT_CUDA();
  const MatrixCase c = GetParam();
  const Operands o(c, 89);
  const int64_t R = c.rows, C = c.cols, L = c.ld;
  const engine::Tensor x = engine::Tensor::from_vector({R, L}, o.a, engine::Device::cuda(), kernels::DType::bf16);
  const engine::Tensor widened = x.to(kernels::DType::f32);
  const kernels::ConstMatrixView bf16_view(x.raw_data(), R, C, L, kernels::DType::bf16);
  const kernels::ConstMatrixView f32_view(widened.raw_data(), R, C, L, kernels::DType::f32);
  const double native = kernels::cuda::sum(bf16_view), reference = kernels::cuda::sum(f32_view);
  EXPECT_EQ(std::memcmp(&native, &reference, sizeof(double)), 0) << native << " vs " << reference;
  const std::vector<float> prior = away_from_zero(size_t(C), 90);
  for (bool accumulate : {false, true}) {
    DeviceBuffer got(accumulate ? prior : std::vector<float>(size_t(C), kNaN));
    DeviceBuffer want(accumulate ? prior : std::vector<float>(size_t(C), kNaN));
    kernels::cuda::column_sums(bf16_view, got.get(), accumulate);
    kernels::cuda::column_sums(f32_view, want.get(), accumulate);
    EXPECT_TRUE(bitwise_equal(got.download(), want.download())) << "column_sums, accumulate " << accumulate;
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
                      MatrixCase{"long_column_100003x1", 100003, 1, 1},
                      // More rows than a grid covers, so a thread steps across row ends again and again:
                      // the element path (odd columns) and the 16-byte path (columns and stride of 8s: 10
                      // f32 or 5 bf16 packs a row, 600,010 or 300,005 packs against a grid of 8 blocks of
                      // 256 threads per SM, 270,336 threads on 132 SMs; neither 10 nor 5 divides it)
                      MatrixCase{"carry_70001x7_ld9", 70001, 7, 9},
                      MatrixCase{"carry_packed_60001x40_ld48", 60001, 40, 48}),
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
