// CPU conversion kernel (kernels/convert.h) against the scalar of kernels/bf16.h, element by element
// and bit for bit: f32 -> bf16 (rounded), bf16 -> f32 (exact), f32 -> f32 and bf16 -> bf16 (copies
// that keep every bit). Operands are row-strided with poisoned gaps (a sentinel pattern in the output
// gaps must survive); shapes that disagree are refused with the kernel's name.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <ostream>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/convert.h"

namespace {

using kernels::BFloat16;
using kernels::DType;
using kernels::f32_from_bits;

constexpr uint16_t kBf16Gap = 0xDEAD;
constexpr uint32_t kF32Gap = 0xDEADBEEF;

// rows x cols values, every kind of f32 on purpose: ties, NaNs with payloads, infinities, subnormals,
// values past the largest finite bf16, and random patterns.
std::vector<uint32_t> interesting_f32(size_t n, uint32_t seed) {
  const std::vector<uint32_t> special = {0x3F808000u, 0x3F818000u, 0xBF808000u, 0x7F800001u, 0xFF812345u,
                                         0x7FC00000u, 0x7F800000u, 0xFF800000u, 0x00000001u, 0x807FFFFFu,
                                         0x7F7F7FFFu, 0x7F7F8000u, 0x7F7FFFFFu, 0x80000000u, 0x00000000u};
  std::mt19937 rng(seed);
  std::vector<uint32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = i < special.size() ? special[i] : uint32_t(rng());
  return v;
}

// A row-strided matrix of raw element patterns (uint32_t for f32, uint16_t for bf16) with `gap` in
// the columns [cols, ld) of every row.
template <typename Bits>
struct Patterns {
  int64_t rows, cols, ld;
  std::vector<Bits> data;
  Patterns(int64_t r, int64_t c, int64_t l, Bits gap) : rows(r), cols(c), ld(l), data(size_t(r * l), gap) {}
  Bits& at(int64_t r, int64_t c) { return data[size_t(r * ld + c)]; }
  void expect_gaps(Bits gap, const char* what) const {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = cols; c < ld; ++c) ASSERT_EQ(data[size_t(r * ld + c)], gap) << what << " wrote a gap";
  }
};

struct Shape {
  int64_t rows, cols, ld_in, ld_out;
};

void PrintTo(const Shape& s, std::ostream* os) {
  *os << "[" << s.rows << ", " << s.cols << "] ld " << s.ld_in << " -> " << s.ld_out;
}

class Convert : public ::testing::TestWithParam<Shape> {};

TEST_P(Convert, F32ToBf16RoundsEachElementAsTheScalar) {
  const Shape s = GetParam();
  Patterns<uint32_t> in(s.rows, s.cols, s.ld_in, kF32Gap);
  Patterns<uint16_t> out(s.rows, s.cols, s.ld_out, kBf16Gap);
  const std::vector<uint32_t> values = interesting_f32(size_t(s.rows * s.cols), 1);
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t c = 0; c < s.cols; ++c) in.at(r, c) = values[size_t(r * s.cols + c)];
  kernels::cpu::convert({in.data.data(), s.rows, s.cols, s.ld_in, DType::f32},
                        {out.data.data(), s.rows, s.cols, s.ld_out, DType::bf16});
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t c = 0; c < s.cols; ++c)
      ASSERT_EQ(out.at(r, c), kernels::bf16_bits_from_f32(f32_from_bits(in.at(r, c))))
          << "element (" << r << ", " << c << ") from 0x" << std::hex << in.at(r, c);
  out.expect_gaps(kBf16Gap, "f32 -> bf16");
}

TEST_P(Convert, Bf16ToF32IsExactAndSameTypeCopiesKeepEveryBit) {
  const Shape s = GetParam();
  Patterns<uint16_t> in(s.rows, s.cols, s.ld_in, kBf16Gap);
  std::mt19937 rng(2);
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t c = 0; c < s.cols; ++c) in.at(r, c) = uint16_t(rng());
  in.at(0, 0) = 0x7F81;  // a signalling NaN: widened and copied unchanged
  Patterns<uint32_t> wide(s.rows, s.cols, s.ld_out, kF32Gap);
  kernels::cpu::convert({in.data.data(), s.rows, s.cols, s.ld_in, DType::bf16},
                        {wide.data.data(), s.rows, s.cols, s.ld_out, DType::f32});
  Patterns<uint16_t> copy(s.rows, s.cols, s.ld_out, kBf16Gap);
  kernels::cpu::convert({in.data.data(), s.rows, s.cols, s.ld_in, DType::bf16},
                        {copy.data.data(), s.rows, s.cols, s.ld_out, DType::bf16});
  Patterns<uint32_t> f32_copy(s.rows, s.cols, s.ld_out, kF32Gap);
  kernels::cpu::convert({wide.data.data(), s.rows, s.cols, s.ld_out, DType::f32},
                        {f32_copy.data.data(), s.rows, s.cols, s.ld_out, DType::f32});
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t c = 0; c < s.cols; ++c) {
      ASSERT_EQ(wide.at(r, c), uint32_t(in.at(r, c)) << 16) << "element (" << r << ", " << c << ")";
      ASSERT_EQ(copy.at(r, c), in.at(r, c));
      ASSERT_EQ(f32_copy.at(r, c), wide.at(r, c));
    }
  wide.expect_gaps(kF32Gap, "bf16 -> f32");
  copy.expect_gaps(kBf16Gap, "bf16 -> bf16");
  f32_copy.expect_gaps(kF32Gap, "f32 -> f32");
}

// Dense, row-strided on either side, a single row and column, large enough to run threaded.
INSTANTIATE_TEST_SUITE_P(Shapes, Convert,
                         ::testing::Values(Shape{4, 8, 8, 8}, Shape{7, 5, 9, 6}, Shape{1, 33, 33, 40},
                                           Shape{19, 1, 3, 1}, Shape{300, 130, 131, 133}),
                         [](const ::testing::TestParamInfo<Shape>& info) {
                           const Shape s = info.param;
                           return std::to_string(s.rows) + "x" + std::to_string(s.cols) + "_ld" +
                                  std::to_string(s.ld_in) + "_" + std::to_string(s.ld_out);
                         });

TEST(ConvertEdges, EmptyMatricesAreANoOp) {
  kernels::cpu::convert({static_cast<const float*>(nullptr), 0, 4, 4},
                        {nullptr, 0, 4, 4, DType::bf16});
  kernels::cpu::convert({static_cast<const float*>(nullptr), 3, 0, 0},
                        {nullptr, 3, 0, 0, DType::bf16});
}

TEST(ConvertEdges, ShapesThatDisagreeAreRefusedNamingTheKernel) {
  std::vector<float> in(12);
  std::vector<BFloat16> out(12);
  try {
    kernels::cpu::convert({in.data(), 3, 4, 4}, {out.data(), 4, 3, 3, DType::bf16});
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("convert"), std::string::npos) << e.what();
  }
}

TEST(ConvertEdges, F32OnlyKernelsRefuseBf16Views) {
  std::vector<BFloat16> data(4);
  const kernels::ConstMatrixView view(data.data(), 2, 2, 2, DType::bf16);
  try {
    (void)view.f32();
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("a bf16 matrix was passed to a kernel that takes f32 only"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(view.bf16(), data.data());
}

}  // namespace
