// Helpers shared by the bf16 tensor tests (tests/cpu/test_bf16_*.cpp): the raw bf16 patterns of a
// tensor, for bit-for-bit comparisons.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "engine/tensor.h"

namespace bf16_test {

// The bf16 patterns of a bf16 tensor (any device, any strides), row-major.
inline std::vector<uint16_t> bf16_bits(const engine::Tensor& t) {
  EXPECT_EQ(t.dtype(), engine::DType::bf16);
  const engine::Tensor host = t.to(engine::Device::cpu()).contiguous();
  std::vector<uint16_t> bits(static_cast<size_t>(host.numel()));
  if (!bits.empty()) std::memcpy(bits.data(), host.raw_data(), bits.size() * 2);
  return bits;
}

}  // namespace bf16_test
