// CPU GEMM (kernels/gemm.h; OpenBLAS, or the built-in fallback, and on AVX-512 processors the own kernels
// of kernels/cpu/gemm_avx512.cpp for the convolutions' products) against direct loops in double: every transpose
// combination, padded leading dimensions whose gaps hold NaN (never read, never written), alpha and beta,
// k == 0, and C full of NaN before a beta == 0 product (C must not be read then); each case with the own
// kernels on and off. The product is the same bits for 1 and 2 threads, and inside a parallel region; with
// the own kernels, a row (rows form) or a column (sums form) is the same bits in any part of the product.
//
// Tolerance: a float result r matches the double reference e when |r - e| <= 1e-4 + 1e-4 * |e|
// (inputs uniform in [-1, 1), at most a few thousand products per element).
#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/gemm_avx512.h"
#include "kernels/gemm.h"
#include "support/kernel_cases.h"
#include "test_kernels_common.h"

namespace {

using namespace kernel_test;  // NOLINT(google-build-using-namespace): the shared test helpers
namespace cpu = kernels::cpu;

using test_support::GemmCase;

// The operands of one case: A stored [m, k] (or [k, m] transposed), B [k, n] (or [n, k]), C [m, n],
// each with row stride cols + pad. C starts as NaN when beta == 0, random otherwise.
struct GemmData {
  Matrix a, b, c;
  GemmData(const GemmCase& g, std::mt19937& rng)
      : a(random_matrix(g.transpose_a ? g.k : g.m, g.transpose_a ? g.m : g.k,
                        (g.transpose_a ? g.m : g.k) + g.pad, rng)),
        b(random_matrix(g.transpose_b ? g.n : g.k, g.transpose_b ? g.k : g.n,
                        (g.transpose_b ? g.k : g.n) + g.pad, rng)),
        c(g.beta == 0.0f ? Matrix(g.m, g.n, g.n + g.pad, kNaN)
                         : random_matrix(g.m, g.n, g.n + g.pad, rng)) {}
};

void run_gemm(const GemmCase& g, const GemmData& d, Matrix* c) {
  cpu::gemm(g.transpose_a, g.transpose_b, g.m, g.n, g.k, g.alpha, d.a.ptr(), d.a.ld, d.b.ptr(),
            d.b.ld, g.beta, c->ptr(), c->ld);
}

// C = alpha * op(A) op(B) + beta * C0, in double, straight from gemm.h (beta == 0: C0 is not read).
Reference gemm_reference(const GemmCase& g, const GemmData& d) {
  Reference ref(g.m, g.n);
  for (int64_t i = 0; i < g.m; ++i)
    for (int64_t j = 0; j < g.n; ++j) {
      double acc = 0.0;
      for (int64_t p = 0; p < g.k; ++p) {
        const double a = g.transpose_a ? d.a.at(p, i) : d.a.at(i, p);
        const double b = g.transpose_b ? d.b.at(j, p) : d.b.at(p, j);
        acc += a * b;
      }
      ref.at(i, j) = double(g.alpha) * acc + (g.beta != 0.0f ? double(g.beta) * d.c.at(i, j) : 0.0);
    }
  return ref;
}

class CpuGemm : public ::testing::TestWithParam<GemmCase> {};

// Restores the own kernels' setting at the end of a test.
class OwnKernels {
 public:
  OwnKernels() : was_on_(cpu::own_gemm_kernels()) {}
  ~OwnKernels() { cpu::use_own_gemm_kernels(was_on_); }
  OwnKernels(const OwnKernels&) = delete;
  OwnKernels& operator=(const OwnKernels&) = delete;

 private:
  bool was_on_;
};

TEST_P(CpuGemm, MatchesDoubleLoops) {
  const GemmCase g = GetParam();
  std::mt19937 rng(7);
  const GemmData d(g, rng);
  const Reference ref = gemm_reference(g, d);
  const OwnKernels restore;
  for (const bool own : {false, true}) {
    if (cpu::use_own_gemm_kernels(own) != own) continue;  // no AVX-512: the BLAS alone
    SCOPED_TRACE(own ? "own kernels where they take the product" : "BLAS");
    Matrix c = d.c;
    run_gemm(g, d, &c);
    EXPECT_TRUE(matches(c, ref));
  }
}

TEST_P(CpuGemm, SameBitsForOneAndTwoThreads) {
  const GemmCase g = GetParam();
  std::mt19937 rng(8);
  const GemmData d(g, rng);
  const int threads = cpu::num_threads();
  Matrix c[2] = {d.c, d.c};
  for (int t = 0; t < 2; ++t) {
    cpu::set_num_threads(t + 1);
    run_gemm(g, d, &c[t]);
  }
  cpu::set_num_threads(threads);
  EXPECT_TRUE(bitwise_equal(c[0], c[1]));
}

// Inside a parallel region (a kernel's own parallel loop) gemm runs the same parts one after the other:
// the same bits as outside. gemm_serial is the same for 1 and 2 threads too (one call).
TEST_P(CpuGemm, SameBitsInsideAParallelRegionAndAsOneSerialCall) {
  const GemmCase g = GetParam();
  std::mt19937 rng(9);
  const GemmData d(g, rng);
  const int threads = cpu::num_threads();
  cpu::set_num_threads(2);
  Matrix outside = d.c, inside = d.c, serial[2] = {d.c, d.c};
  run_gemm(g, d, &outside);
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    run_gemm(g, d, &inside);
  }
  for (int t = 0; t < 2; ++t) {
    cpu::set_num_threads(t + 1);
    cpu::gemm_serial(g.transpose_a, g.transpose_b, g.m, g.n, g.k, g.alpha, d.a.ptr(), d.a.ld, d.b.ptr(), d.b.ld,
                     g.beta, serial[t].ptr(), serial[t].ld);
  }
  cpu::set_num_threads(threads);
  EXPECT_TRUE(bitwise_equal(outside, inside));
  EXPECT_TRUE(bitwise_equal(serial[0], serial[1]));
  EXPECT_TRUE(matches(serial[0], gemm_reference(g, d)));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CpuGemm,
    ::testing::Values(GemmCase{"nn", 7, 5, 3, false, false, 0, 1.0f, 0.0f},
                      GemmCase{"nt_padded", 13, 9, 11, false, true, 3, 1.0f, 0.0f},
                      GemmCase{"tn_alpha_beta", 17, 6, 19, true, false, 2, 0.5f, 1.0f},
                      GemmCase{"tt_negative_alpha", 5, 8, 4, true, true, 1, -1.5f, 0.25f},
                      GemmCase{"k0_beta0_zeroes_c", 4, 3, 0, false, false, 1, 1.0f, 0.0f},
                      GemmCase{"k0_scales_c", 4, 3, 0, false, false, 1, 1.0f, 2.0f},
                      GemmCase{"linear_head", 8, 1, 1920, false, true, 0, 1.0f, 1.0f},
                      GemmCase{"wide_short", 3, 700, 64, false, false, 5, 1.0f, 0.0f},
                      GemmCase{"tall_narrow", 1031, 7, 33, false, false, 0, 1.0f, 0.0f},
                      GemmCase{"weight_gradient_tn", 24, 40, 300, true, false, 4, 1.0f, 1.0f},
                      // Large enough to be split in two (rows, then columns), at a row that is not a
                      // multiple of 12 (OpenBLAS's AVX2 kernels round a row by its place in a block of 12).
                      GemmCase{"split_rows", 1000, 64, 100, false, true, 0, 1.0f, 0.0f},
                      GemmCase{"split_columns_beta", 40, 900, 200, true, false, 3, 1.0f, 0.5f},
                      // The own kernels' forms (gemm_avx512.cpp) with every kind of tail: rows not a multiple
                      // of a tile's, panels of 1-4 vectors with a masked last one, k over several blocks of
                      // 128 and not a multiple of 16 (the transposing pack's edge), B read in place (at most
                      // 64 columns) or packed, beta 0, 1 and 0.5.
                      GemmCase{"rows_form_tails", 203, 70, 300, false, true, 3, 1.0f, 0.0f},
                      GemmCase{"rows_form_accumulate", 97, 48, 129, false, false, 5, 1.0f, 1.0f},
                      GemmCase{"rows_form_widest", 50, 256, 20, false, true, 0, 1.0f, 0.5f},
                      GemmCase{"rows_form_one_row", 1, 33, 17, false, true, 1, 1.0f, 0.0f},
                      GemmCase{"rows_form_wide_packed", 70, 300, 150, false, false, 2, 1.0f, 0.0f},
                      GemmCase{"rows_form_wide_transposed", 40, 333, 140, false, true, 1, 1.0f, 1.0f},
                      GemmCase{"sums_form_tails", 37, 100, 260, true, false, 2, 1.0f, 1.0f},
                      GemmCase{"sums_form_widest", 96, 33, 513, true, false, 0, 1.0f, 0.0f}),
    test_support::case_name<GemmCase>);

// The own kernels take the products they were measured faster on and leave the rest to the BLAS, whatever
// the batch: never by m in the rows form (A as stored) or k in the sums form (A^T B), the sides a batch's size
// sets.
TEST(CpuGemmOwnKernels, TakeTheSameProductsForAnyBatch) {
  namespace avx512 = kernels::cpu::avx512;
  if (!avx512::cpu_has_avx512()) GTEST_SKIP() << "no AVX-512F: the own kernels take nothing here";
  for (const int64_t batch_side : {1, 47, 48, 100000}) {
    EXPECT_TRUE(avx512::suits(false, true, batch_side, 32, 1088, 1.0f));    // x * w^T, 32 outputs
    EXPECT_TRUE(avx512::suits(false, false, batch_side, 256, 32, 1.0f));    // dy * w, 256 inputs
    EXPECT_TRUE(avx512::suits(false, true, batch_side, 1088, 384, 1.0f));   // wider, over 384 products
    EXPECT_FALSE(avx512::suits(false, false, batch_side, 1152, 32, 1.0f));  // wide over 32: the BLAS
    EXPECT_FALSE(avx512::suits(false, true, batch_side, 15, 64, 1.0f));     // under one vector
    EXPECT_TRUE(avx512::suits(true, false, 128, 1152, batch_side, 1.0f));   // dy^T * x, 128 outputs
    EXPECT_FALSE(avx512::suits(true, false, 129, 1152, batch_side, 1.0f));  // 129 outputs: the BLAS
    EXPECT_FALSE(avx512::suits(true, true, 32, 64, batch_side, 1.0f));      // A^T B^T: the BLAS
    EXPECT_FALSE(avx512::suits(false, true, batch_side, 32, 64, 0.5f));     // alpha != 1: the BLAS
  }
}

// A row of the rows form (a column of the sums form) is the same bits whichever part of the product computes
// it: its sums run over k in the same blocks in the same order (what keeps a process's half of a batch equal
// to the same rows of the whole batch, and the result independent of the thread count).
TEST(CpuGemmOwnKernels, AnElementIsTheSameBitsInAnyPartOfTheProduct) {
  const OwnKernels restore;
  if (!cpu::use_own_gemm_kernels(true)) GTEST_SKIP() << "no AVX-512F: the own kernels do not run here";
  std::mt19937 rng(10);
  {  // rows form: C[300, 40] = A[300, 200] B[40, 200]^T, rows [0, 300) against [0, 7), [7, 150), [150, 300)
    const Matrix a = random_matrix(300, 200, 200, rng), b = random_matrix(40, 200, 200, rng);
    Matrix whole(300, 40, 40, 0.0f), parts(300, 40, 40, 0.0f);
    cpu::gemm_serial(false, true, 300, 40, 200, 1.0f, a.ptr(), 200, b.ptr(), 200, 0.0f, whole.ptr(), 40);
    for (const auto& [begin, end] : {std::pair<int64_t, int64_t>{0, 7}, {7, 150}, {150, 300}})
      cpu::gemm_serial(false, true, end - begin, 40, 200, 1.0f, a.ptr() + begin * 200, 200, b.ptr(), 200, 0.0f,
                       parts.ptr() + begin * 40, 40);
    EXPECT_TRUE(bitwise_equal(whole, parts));
  }
  {  // sums form: C[32, 100] = A[500, 32]^T B[500, 100], columns [0, 100) against [0, 17), [17, 100)
    const Matrix a = random_matrix(500, 32, 32, rng), b = random_matrix(500, 100, 100, rng);
    Matrix whole(32, 100, 100, 0.0f), parts(32, 100, 100, 0.0f);
    cpu::gemm_serial(true, false, 32, 100, 500, 1.0f, a.ptr(), 32, b.ptr(), 100, 0.0f, whole.ptr(), 100);
    for (const auto& [begin, end] : {std::pair<int64_t, int64_t>{0, 17}, {17, 100}})
      cpu::gemm_serial(true, false, 32, end - begin, 500, 1.0f, a.ptr(), 32, b.ptr() + begin, 100, 0.0f,
                       parts.ptr() + begin, 100);
    EXPECT_TRUE(bitwise_equal(whole, parts));
  }
}

// Storage sized while the own kernels were off is never packed into after they are switched on: the product
// runs on the BLAS instead.
TEST(CpuGemmPreparedB, StorageSizedWithTheKernelsOffIsNeverPackedInto) {
  const OwnKernels restore;
  if (!cpu::use_own_gemm_kernels(true)) GTEST_SKIP() << "no AVX-512F: the own kernels do not run here";
  cpu::use_own_gemm_kernels(false);
  const int64_t floats = cpu::gemm_prepared_b_floats(true, 200, 300);
  EXPECT_EQ(floats, 0);
  cpu::use_own_gemm_kernels(true);
  std::mt19937 rng(12);
  const Matrix b = random_matrix(200, 300, 300, rng);
  const cpu::PreparedGemmB prepared = cpu::prepare_gemm_b(true, 200, 300, b.ptr(), 300, nullptr, floats);
  EXPECT_FALSE(prepared.own);
  EXPECT_GT(cpu::gemm_prepared_b_floats(true, 200, 300), 0);
}

// A B made ready once (prepare_gemm_b, a convolution's weight for its chunks) gives the bits of gemm_serial on
// the same operands, for B^T and B, packed or read in place, with the own kernels on and off.
TEST(CpuGemmPreparedB, GivesTheBitsOfGemmSerial) {
  const OwnKernels restore;
  std::mt19937 rng(11);
  const Matrix a = random_matrix(150, 300, 301, rng);
  for (const bool own : {false, true}) {
    if (cpu::use_own_gemm_kernels(own) != own) continue;
    for (const bool transpose_b : {true, false})
      for (const int64_t n : {40, 64, 200}) {
        SCOPED_TRACE(std::string(own ? "own" : "BLAS") + (transpose_b ? ", B^T" : ", B") + ", n " + std::to_string(n));
        const int64_t k = 300, ldb = (transpose_b ? k : n) + 3;
        const Matrix b = random_matrix(transpose_b ? n : k, transpose_b ? k : n, ldb, rng);
        std::vector<float> storage(size_t(cpu::gemm_prepared_b_floats(transpose_b, n, k)));
        const cpu::PreparedGemmB prepared =
            cpu::prepare_gemm_b(transpose_b, n, k, b.ptr(), ldb, storage.data(), int64_t(storage.size()));
        EXPECT_EQ(prepared.own, own);
        Matrix expected = random_matrix(150, n, n + 1, rng), got = expected;
        for (const float beta : {0.0f, 1.0f}) {
          cpu::gemm_serial(false, transpose_b, 150, n, k, 1.0f, a.ptr(), a.ld, b.ptr(), ldb, beta, expected.ptr(),
                           expected.ld);
          cpu::gemm_serial_prepared(150, a.ptr(), a.ld, prepared, beta, got.ptr(), got.ld);
          EXPECT_TRUE(bitwise_equal(expected, got)) << "beta " << beta;
        }
      }
  }
}

}  // namespace
