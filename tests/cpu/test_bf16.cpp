// The bf16 scalar (kernels/bf16.h): f32 -> bf16 rounding to nearest, ties to even, and the exact way
// back. Hand-picked cases (ties both ways, NaN with payloads and signs, infinities, subnormals, the
// largest finite value and the first f32 that rounds to Inf, signed zeros), then exhaustive checks:
// every one of the 65536 bf16 patterns round-trips, and a large sample of f32 patterns rounds as a
// reference written differently: the nearest of all finite bf16 values found by search in double
// arithmetic, ties broken towards the even pattern.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "kernels/bf16.h"

namespace {

using kernels::BFloat16;
using kernels::bf16_bits_from_f32;
using kernels::f32_bits;
using kernels::f32_from_bf16_bits;
using kernels::f32_from_bits;

uint16_t round_bits(uint32_t f32_pattern) { return bf16_bits_from_f32(f32_from_bits(f32_pattern)); }

bool is_bf16_nan(uint16_t b) { return (b & 0x7F80u) == 0x7F80u && (b & 0x007Fu) != 0; }

TEST(BFloat16, ExactValuesAreKept) {
  EXPECT_EQ(round_bits(0x3F800000u), 0x3F80u);  // 1
  EXPECT_EQ(round_bits(0xC0400000u), 0xC040u);  // -3
  EXPECT_EQ(static_cast<float>(BFloat16(1.0f)), 1.0f);
  EXPECT_EQ(static_cast<float>(BFloat16(-0.15625f)), -0.15625f);
  EXPECT_EQ(BFloat16::from_bits(0x4049).bits, 0x4049u);
  EXPECT_EQ(static_cast<float>(BFloat16::from_bits(0x4049)), 3.140625f);
}

TEST(BFloat16, BelowAndAboveTheMidpointRoundToTheNearer) {
  EXPECT_EQ(round_bits(0x3F807FFFu), 0x3F80u);  // just below the midpoint: down
  EXPECT_EQ(round_bits(0x3F808001u), 0x3F81u);  // just above: up
  EXPECT_EQ(round_bits(0xBF807FFFu), 0xBF80u);  // the same for negatives (magnitude)
  EXPECT_EQ(round_bits(0xBF808001u), 0xBF81u);
  EXPECT_EQ(static_cast<float>(BFloat16(1.0f + 1.0f / 256.0f + 1e-6f)), 1.0f + 1.0f / 128.0f);
}

TEST(BFloat16, TiesGoToEvenInBothDirections) {
  // 1 + 2^-8 lies halfway between 1 (0x3F80, even) and 1 + 2^-7 (0x3F81, odd): down to even.
  EXPECT_EQ(round_bits(0x3F808000u), 0x3F80u);
  EXPECT_EQ(BFloat16(1.0f + 1.0f / 256.0f).bits, 0x3F80u);
  // 1 + 3 * 2^-8 lies halfway between 0x3F81 (odd) and 0x3F82 (even): up to even.
  EXPECT_EQ(round_bits(0x3F818000u), 0x3F82u);
  EXPECT_EQ(BFloat16(1.0f + 3.0f / 256.0f).bits, 0x3F82u);
  // Negative ties, by magnitude.
  EXPECT_EQ(round_bits(0xBF808000u), 0xBF80u);
  EXPECT_EQ(round_bits(0xBF818000u), 0xBF82u);
  // A tie whose round-up carries into the exponent: 0x3FFF8000 is halfway between 0x3FFF (odd) and
  // 0x4000 (= 2, even).
  EXPECT_EQ(round_bits(0x3FFF8000u), 0x4000u);
  EXPECT_EQ(static_cast<float>(BFloat16::from_bits(round_bits(0x3FFF8000u))), 2.0f);
}

TEST(BFloat16, ZerosKeepTheirSign) {
  EXPECT_EQ(BFloat16(0.0f).bits, 0x0000u);
  EXPECT_EQ(BFloat16(-0.0f).bits, 0x8000u);
  EXPECT_TRUE(std::signbit(static_cast<float>(BFloat16::from_bits(0x8000))));
  EXPECT_EQ(static_cast<float>(BFloat16::from_bits(0x8000)), 0.0f);
}

TEST(BFloat16, InfinitiesStayInfinities) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(BFloat16(inf).bits, 0x7F80u);
  EXPECT_EQ(BFloat16(-inf).bits, 0xFF80u);
  EXPECT_EQ(static_cast<float>(BFloat16::from_bits(0x7F80)), inf);
  EXPECT_EQ(static_cast<float>(BFloat16::from_bits(0xFF80)), -inf);
}

TEST(BFloat16, LargestFiniteAndTheFirstValueThatRoundsToInf) {
  // 0x7F7F = (2 - 2^-7) * 2^127 = 3.3895314e38, the largest finite bf16.
  EXPECT_EQ(static_cast<float>(BFloat16::from_bits(0x7F7F)), 3.3895313892515355e38f);
  EXPECT_EQ(round_bits(0x7F7F0000u), 0x7F7Fu);
  EXPECT_EQ(round_bits(0x7F7F7FFFu), 0x7F7Fu);  // the last f32 below the midpoint: stays finite
  // The midpoint to 2^128 is a tie with the odd 0x7F7F: RNE rounds it (and everything above) to Inf.
  EXPECT_EQ(round_bits(0x7F7F8000u), 0x7F80u);
  EXPECT_EQ(round_bits(0x7F7FFFFFu), 0x7F80u);  // FLT_MAX
  EXPECT_EQ(BFloat16(std::numeric_limits<float>::max()).bits, 0x7F80u);
  EXPECT_EQ(round_bits(0xFF7F7FFFu), 0xFF7Fu);
  EXPECT_EQ(round_bits(0xFF7F8000u), 0xFF80u);  // -Inf
}

TEST(BFloat16, SubnormalsRoundAsIeeeDoes) {
  // The smallest bf16 subnormal is 0x0001 = 2^-133; f32 subnormals below half of it go to zero.
  EXPECT_EQ(static_cast<float>(BFloat16::from_bits(0x0001)), std::ldexp(1.0f, -133));
  EXPECT_EQ(round_bits(0x00000001u), 0x0000u);  // the smallest f32 subnormal: to +0
  EXPECT_EQ(round_bits(0x80000001u), 0x8000u);  // and to -0
  EXPECT_EQ(round_bits(0x00008000u), 0x0000u);  // 2^-134: a tie between 0 (even) and 0x0001
  EXPECT_EQ(round_bits(0x00008001u), 0x0001u);  // just above it
  EXPECT_EQ(round_bits(0x00018000u), 0x0002u);  // a tie between 0x0001 and 0x0002 (even)
  // The largest subnormal rounds up into the smallest normal, 2^-126.
  EXPECT_EQ(round_bits(0x007FFFFFu), 0x0080u);
  EXPECT_EQ(static_cast<float>(BFloat16::from_bits(0x0080)), std::numeric_limits<float>::min());
  EXPECT_EQ(round_bits(0x007F7FFFu), 0x007Fu);  // the largest bf16 subnormal
  EXPECT_EQ(round_bits(0x807FFFFFu), 0x8080u);
}

TEST(BFloat16, NanStaysAQuietNanOfTheSameSignNeverInf) {
  EXPECT_EQ(BFloat16(std::numeric_limits<float>::quiet_NaN()).bits, 0x7FC0u);
  EXPECT_EQ(round_bits(0xFFC00000u), 0xFFC0u);  // negative quiet NaN keeps its sign
  // Signalling NaNs whose payload lies only in the low 16 bits: rounding would carry them into Inf.
  EXPECT_EQ(round_bits(0x7F800001u), 0x7FC0u);
  EXPECT_EQ(round_bits(0xFF80FFFFu), 0xFFC0u);
  EXPECT_EQ(round_bits(0x7FFFFFFFu), 0x7FFFu);  // all payload bits: kept, not carried over
  EXPECT_EQ(round_bits(0x7FA50000u), 0x7FE5u);  // the upper payload bits survive, quiet bit set
  EXPECT_EQ(round_bits(0xFF812345u), 0xFFC1u);
  for (uint32_t payload = 1; payload < (1u << 23); payload = payload * 3 + 1) {
    for (uint32_t sign : {0u, 0x80000000u}) {
      const uint16_t b = round_bits(sign | 0x7F800000u | payload);
      ASSERT_TRUE(is_bf16_nan(b)) << std::hex << payload;
      ASSERT_TRUE(b & 0x0040u) << "quiet bit, payload " << std::hex << payload;
      ASSERT_EQ(b & 0x8000u, sign >> 16);
      ASSERT_TRUE(std::isnan(f32_from_bf16_bits(b)));
    }
  }
}

TEST(BFloat16, EveryBf16PatternRoundTripsThroughF32) {
  for (uint32_t pattern = 0; pattern <= 0xFFFFu; ++pattern) {
    const uint16_t b = static_cast<uint16_t>(pattern);
    const float f = f32_from_bf16_bits(b);
    ASSERT_EQ(f32_bits(f), pattern << 16) << std::hex << pattern;  // bf16 -> f32 is exact
    if (is_bf16_nan(b)) {
      // A quiet NaN comes back as it was; a signalling one comes back quieted, sign and payload kept.
      ASSERT_EQ(bf16_bits_from_f32(f), b | 0x0040u) << std::hex << pattern;
    } else {
      ASSERT_EQ(bf16_bits_from_f32(f), b) << std::hex << pattern;
    }
  }
}

// The reference: the finite bf16 values in increasing order as doubles, and for a finite f32 x the
// nearest one by search and double arithmetic (every f32 and bf16 value and their differences are
// exact in double), ties to the even pattern. 2^128, the value past the largest finite, stands for
// Inf: x at or past the midpoint to it rounds there (IEEE overflow under round-to-nearest).
class Bf16Reference {
 public:
  Bf16Reference() {
    for (uint32_t b = 0; b < 0x7F80u; ++b) positive_.push_back(value(b));
    positive_.push_back(std::ldexp(1.0, 128));  // index 0x7F80: Inf
    EXPECT_TRUE(std::is_sorted(positive_.begin(), positive_.end()));
  }

  uint16_t round(float x) const {
    const double magnitude = std::fabs(double(x));
    const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    if (std::isinf(x)) return sign | 0x7F80;
    const auto above = std::lower_bound(positive_.begin(), positive_.end(), magnitude);
    if (above == positive_.end()) return sign | 0x7F80;
    size_t index = size_t(above - positive_.begin());
    if (*above != magnitude && index > 0) {
      const double up = *above - magnitude, down = magnitude - positive_[index - 1];
      if (down < up || (down == up && (index - 1) % 2 == 0)) --index;
    }
    return static_cast<uint16_t>(sign | index);
  }

 private:
  // A finite non-negative bf16 pattern's value from its fields e (8 bits) and m (7 bits):
  // (1 + m / 128) * 2^(e - 127) when normal, m / 128 * 2^-126 when subnormal (e == 0).
  static double value(uint32_t b) {
    const uint32_t e = b >> 7, m = b & 0x7F;
    if (e == 0) return std::ldexp(double(m) / 128.0, -126);
    return (1.0 + double(m) / 128.0) * std::ldexp(1.0, int(e) - 127);
  }
  std::vector<double> positive_;
};

TEST(BFloat16, SampledF32PatternsRoundAsTheReference) {
  const Bf16Reference reference;
  auto check = [&](uint32_t pattern) {
    const float x = f32_from_bits(pattern);
    if (std::isnan(x)) return true;
    const uint16_t got = bf16_bits_from_f32(x), want = reference.round(x);
    EXPECT_EQ(got, want) << "f32 0x" << std::hex << pattern << " (" << x << ")";
    return got == want;
  };
  // Every 257th pattern (all exponents, varied low bits), ...
  for (uint64_t pattern = 0; pattern <= 0xFFFFFFFFu; pattern += 257)
    if (!check(uint32_t(pattern))) return;
  // ... the neighbourhood of every rounding boundary (ties, one ulp either side, truncation points)
  // for every bf16 pattern, ...
  for (uint32_t b = 0; b <= 0xFFFFu; ++b)
    for (uint32_t low : {0x0000u, 0x0001u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu})
      if (!check(b << 16 | low)) return;
  // ... and random patterns.
  std::mt19937 rng(7);
  for (int i = 0; i < 1000000; ++i)
    if (!check(uint32_t(rng()))) return;
}

}  // namespace
