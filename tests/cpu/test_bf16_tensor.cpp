// bf16 tensors (engine/tensor.h) on the CPU: storage of 2 bytes an element, to(DType) both ways
// (rounded to nearest even one way, exact the other, bit for bit as kernels/bf16.h), values in and out
// (from_vector, to_vector, item, fill_), views and copies, and the plain errors of ops and methods
// that take f32 only.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "engine/check.h"
#include "engine/ops.h"
#include "engine/tensor.h"
#include "test_bf16_common.h"

namespace {

using namespace engine;

using bf16_test::bf16_bits;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(Bf16Tensor, StorageIsTwoBytesAnElement) {
  const Tensor t = Tensor::empty({3, 5}, Device::cpu(), DType::bf16);
  EXPECT_EQ(t.dtype(), DType::bf16);
  EXPECT_EQ(t.storage()->nbytes(), 30u);
  EXPECT_EQ(t.str(), "Tensor[3, 5] bf16 cpu");
  // An offset view points 2 bytes an element into the storage.
  const Tensor row = t.slice(0, 1, 2);
  EXPECT_EQ(static_cast<const char*>(row.raw_data()) - static_cast<const char*>(t.raw_data()), 10);
}

TEST(Bf16Tensor, ToBf16RoundsEveryElementAsTheScalarAndBackIsExact) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const std::vector<float> values = {1.0f,        1.0f + 1.0f / 256.0f,  1.0f + 3.0f / 256.0f,  -2.5f,
                                     nan,         inf,                   -inf,                  -0.0f,
                                     3.4e38f,     std::ldexp(1.0f, -140), 0.1f,                 65504.0f};
  const Tensor f32 = Tensor::from_vector({3, 4}, values);
  const Tensor bf16 = f32.to(DType::bf16);
  ASSERT_EQ(bf16.dtype(), DType::bf16);
  EXPECT_EQ(bf16.shape(), f32.shape());
  const std::vector<uint16_t> bits = bf16_bits(bf16);
  for (size_t i = 0; i < values.size(); ++i)
    EXPECT_EQ(bits[i], kernels::bf16_bits_from_f32(values[i])) << "element " << i;
  EXPECT_EQ(bits[1], 0x3F80u);  // a tie, down to even
  EXPECT_EQ(bits[2], 0x3F82u);  // a tie, up to even
  EXPECT_EQ(bits[8], 0x7F80u);  // past the midpoint above the largest finite: Inf
  // Back to f32: exactly the bf16 values.
  const std::vector<float> back = bf16.to(DType::f32).to_vector();
  const std::vector<float> direct = bf16.to_vector();
  for (size_t i = 0; i < values.size(); ++i) {
    const float expected = kernels::f32_from_bf16_bits(bits[i]);
    uint32_t a, b, e;
    std::memcpy(&a, &back[i], 4);
    std::memcpy(&b, &direct[i], 4);
    std::memcpy(&e, &expected, 4);
    EXPECT_EQ(a, e) << "element " << i;
    EXPECT_EQ(b, e) << "element " << i;
  }
  EXPECT_TRUE(std::isnan(back[4]));
  EXPECT_TRUE(std::signbit(back[7]));
}

TEST(Bf16Tensor, ALargeTensorConvertsEveryElementRowsAndTail) {
  // 3 rows of the CPU table's 4096-element conversion rows and a tail of 123, threaded.
  const int64_t n = 3 * 4096 + 123;
  std::vector<float> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[size_t(i)] = std::sin(0.01f * float(i)) * 100.0f + 1.0f / 256.0f;
  const Tensor bf16 = Tensor::from_vector({n}, values).to(DType::bf16);
  const std::vector<uint16_t> bits = bf16_bits(bf16);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(bits[size_t(i)], kernels::bf16_bits_from_f32(values[size_t(i)])) << "element " << i;
  const std::vector<float> back = bf16.to_vector();
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(back[size_t(i)], kernels::f32_from_bf16_bits(bits[size_t(i)])) << i;
}

TEST(Bf16Tensor, ToTheSameDtypeIsTheTensorItself) {
  const Tensor t = Tensor::from_vector({2}, {1.0f, 2.0f}, Device::cpu(), DType::bf16);
  EXPECT_TRUE(t.to(DType::bf16).same(t));
  const Tensor f = Tensor::from_vector({2}, {1.0f, 2.0f});
  EXPECT_TRUE(f.to(DType::f32).same(f));
}

TEST(Bf16Tensor, FromVectorRoundsAndItemReadsBack) {
  const Tensor t = Tensor::from_vector({2, 2}, {1.0f, 3.14159265f, -1e-3f, 300.7f}, Device::cpu(), DType::bf16);
  EXPECT_EQ(t.dtype(), DType::bf16);
  EXPECT_EQ(t.to_vector(), (std::vector<float>{1.0f, 3.140625f, kernels::f32_from_bf16_bits(0xBA83), 300.0f}));
  EXPECT_EQ(t.slice(1, 1, 2).slice(0, 0, 1).item(), 3.140625f);
  EXPECT_THROW(Tensor::from_vector({3}, {1.0f, 2.0f}, Device::cpu(), DType::bf16), engine::Error);
}

TEST(Bf16Tensor, NonContiguousViewsConvertAndCopy) {
  std::vector<float> values(24);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.1f * float(i) - 1.0f;
  const Tensor f32 = Tensor::from_vector({2, 3, 4}, values);
  const Tensor slice = f32.slice(2, 1, 3);  // a channel slice: row-strided
  const Tensor bf16_slice = slice.to(DType::bf16);
  EXPECT_TRUE(bf16_slice.is_contiguous());
  const std::vector<float> sliced = slice.to_vector();
  const std::vector<float> got = bf16_slice.to_vector();
  ASSERT_EQ(got.size(), sliced.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(got[i], kernels::f32_from_bf16_bits(kernels::bf16_bits_from_f32(sliced[i]))) << i;

  // A strided bf16 view of a bf16 tensor: clone, to_vector and copy_from into a slice.
  const Tensor whole = f32.to(DType::bf16);
  const Tensor bf16_view = whole.slice(2, 1, 3);
  EXPECT_EQ(bf16_view.to_vector(), got);
  EXPECT_EQ(bf16_view.clone().to_vector(), got);
  const Tensor target = Tensor::zeros({2, 3, 4}).to(DType::bf16);
  target.slice(2, 2, 4).copy_from(bf16_view);
  const std::vector<float> placed = target.to_vector();
  for (int64_t p = 0; p < 6; ++p) {
    EXPECT_EQ(placed[size_t(p * 4 + 0)], 0.0f);
    EXPECT_EQ(placed[size_t(p * 4 + 2)], got[size_t(p * 2 + 0)]);
    EXPECT_EQ(placed[size_t(p * 4 + 3)], got[size_t(p * 2 + 1)]);
  }
}

TEST(Bf16Tensor, FillRoundsTheValue) {
  const Tensor t = Tensor::empty({2, 5}, Device::cpu(), DType::bf16);
  t.fill_(1.0f + 1.0f / 256.0f);  // a tie: 1
  EXPECT_EQ(t.to_vector(), std::vector<float>(10, 1.0f));
  t.slice(1, 1, 3).fill_(-3.0f);
  EXPECT_EQ(t.to_vector(), (std::vector<float>{1, -3, -3, 1, 1, 1, -3, -3, 1, 1}));
}

TEST(Bf16Tensor, F32OnlyMethodsSayToConvert) {
  const Tensor t = Tensor::from_vector({2, 2}, {1, -2, 3, -4}, Device::cpu(), DType::bf16);
  EXPECT_NE(error_of([&] { (void)t.data(); }).find("data() needs an f32 tensor, this one is bf16"),
            std::string::npos);
  const std::string copy_error = error_of([&] { Tensor::zeros({2, 2}).copy_from(t); });
  EXPECT_NE(copy_error.find("copy_from: a bf16 tensor into a f32 one; convert it with to(DType) first"),
            std::string::npos)
      << copy_error;
  // Per-channel parameters stay f32: a bf16 gamma is refused by name.
  const Tensor x = Tensor::from_vector({2, 2}, {1, 2, 3, 4}, Device::cpu(), DType::bf16);
  const std::string bn_error = error_of([&] {
    (void)batch_norm(x, Tensor::ones({2}, Device::cpu(), DType::bf16), Tensor(), Tensor::zeros({2}),
                     Tensor::ones({2}), true, {});
  });
  EXPECT_NE(bn_error.find("bf16"), std::string::npos) << bn_error;
}

TEST(Bf16Tensor, OpsTakeBf16ActivationsAndKeepTheirDtype) {
  const Tensor t = Tensor::from_vector({2, 2}, {1, -2, 3, -4}, Device::cpu(), DType::bf16);
  const Tensor r = relu(t);
  EXPECT_EQ(r.dtype(), DType::bf16);
  EXPECT_EQ(r.to_vector(), (std::vector<float>{1, 0, 3, 0}));
  // linear: bf16 x, the f32 weight's bf16 working copy, f32 accumulation, y rounded once.
  const Tensor w = Tensor::from_vector({1, 2}, {1.0f, 1.0f / 3.0f});
  const Tensor y = linear(t, w, Tensor());
  EXPECT_EQ(y.dtype(), DType::bf16);
  const float third = static_cast<float>(kernels::BFloat16(1.0f / 3.0f));
  EXPECT_EQ(y.to_vector(), (std::vector<float>{static_cast<float>(kernels::BFloat16(1.0f - 2.0f * third)),
                                               static_cast<float>(kernels::BFloat16(3.0f - 4.0f * third))}));
}

TEST(Bf16Tensor, DeviceCopiesKeepTheDtype) {
  const Tensor t = Tensor::from_vector({3}, {1.5f, -2.0f, 0.25f}, Device::cpu(), DType::bf16);
  const Tensor moved = t.to(Device::cpu());
  EXPECT_EQ(moved.dtype(), DType::bf16);
  EXPECT_EQ(bf16_bits(moved), bf16_bits(t));
}

}  // namespace
