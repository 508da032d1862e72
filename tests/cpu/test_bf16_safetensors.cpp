// bf16 tensors in safetensors files (engine/serialize.h): a bf16 tensor is written as BF16 and read
// back bit for bit (LoadAs::stored), or widened exactly into f32 (LoadAs::f32, the default); a file
// holding F32 and BF16 side by side keeps each dtype. Then the reference implementations, when
// ENGINE_PYTHON names a Python with torch and safetensors: they read our BF16 file (its bits equal
// torch's own rounding of the same f32 values) and write one that we read bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "engine/safetensors.h"
#include "engine/serialize.h"
#include "support/temp_path.h"
#include "test_bf16_common.h"

namespace {

using namespace engine;

using bf16_test::bf16_bits;

std::vector<uint32_t> f32_bits(const std::vector<float>& values) {
  std::vector<uint32_t> bits(values.size());
  if (!bits.empty()) std::memcpy(bits.data(), values.data(), bits.size() * 4);
  return bits;
}

// Values with every kind of rounding: ties both ways, NaN, infinities, signed zero, subnormals, past
// the largest finite bf16, and ordinary numbers.
std::vector<float> awkward_values() {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> v = {1.0f + 1.0f / 256.0f, 1.0f + 3.0f / 256.0f, -(1.0f + 1.0f / 256.0f),
                          std::numeric_limits<float>::quiet_NaN(), inf, -inf, -0.0f, 0.0f,
                          std::ldexp(1.0f, -133), std::ldexp(1.0f, -134), std::ldexp(3.0f, -134),
                          std::numeric_limits<float>::max(), 3.3895e38f, 1e-40f};
  for (int i = 0; v.size() < 60; ++i) v.push_back(std::sin(0.37f * float(i)) * std::pow(10.0f, float(i % 9 - 4)));
  return v;
}

class Bf16Safetensors : public test_support::TempDirTest {};

TEST_F(Bf16Safetensors, Bf16TensorsWriteAsBf16AndReadBackBitForBit) {
  const std::vector<float> values = awkward_values();
  const Tensor f32 = Tensor::from_vector({6, 10}, values);
  const Tensor bf16 = f32.to(DType::bf16);
  const Tensor strided = bf16.slice(1, 3, 7);  // written densely
  const std::string path = dir_ + "/mixed.safetensors";
  save_tensors(path, {{"w", bf16}, {"s", strided}, {"f", f32}}, {{"kind", "mixed"}});

  const safetensors::Reader reader(path);
  EXPECT_EQ(reader.info("w").dtype, safetensors::DType::BF16);
  EXPECT_EQ(reader.info("w").nbytes(), 120u);
  EXPECT_EQ(reader.info("s").dtype, safetensors::DType::BF16);
  EXPECT_EQ(reader.info("f").dtype, safetensors::DType::F32);

  std::map<std::string, std::string> metadata;
  const auto stored = load_tensors(path, &metadata, LoadAs::stored);
  EXPECT_EQ(metadata.at("kind"), "mixed");
  EXPECT_EQ(stored.at("w").dtype(), DType::bf16);
  EXPECT_EQ(stored.at("w").shape(), (Shape{6, 10}));
  EXPECT_EQ(bf16_bits(stored.at("w")), bf16_bits(bf16));
  EXPECT_EQ(stored.at("s").shape(), (Shape{6, 4}));
  EXPECT_EQ(bf16_bits(stored.at("s")), bf16_bits(strided));
  EXPECT_EQ(stored.at("f").dtype(), DType::f32);  // F32 stays f32
  EXPECT_EQ(f32_bits(stored.at("f").to_vector()), f32_bits(values));

  // The default reads BF16 into f32, widened exactly.
  const auto widened = load_tensors(path);
  EXPECT_EQ(widened.at("w").dtype(), DType::f32);
  EXPECT_EQ(f32_bits(widened.at("w").to_vector()), f32_bits(bf16.to_vector()));
  const std::vector<uint16_t> bits = bf16_bits(bf16);
  const std::vector<float> read = widened.at("w").to_vector();
  for (size_t i = 0; i < bits.size(); ++i)
    EXPECT_EQ(f32_bits({read[i]})[0], uint32_t(bits[i]) << 16) << "element " << i;
}

TEST_F(Bf16Safetensors, ABf16ScalarAndAnEmptyTensorRoundTrip) {
  const std::string path = dir_ + "/small.safetensors";
  save_tensors(path, {{"scalar", Tensor::scalar(-2.75f).to(DType::bf16)},
                      {"empty", Tensor::empty({0, 3}, Device::cpu(), DType::bf16)}});
  const auto stored = load_tensors(path, nullptr, LoadAs::stored);
  EXPECT_EQ(stored.at("scalar").dtype(), DType::bf16);
  EXPECT_EQ(stored.at("scalar").item(), -2.75f);
  EXPECT_EQ(stored.at("empty").shape(), (Shape{0, 3}));
  EXPECT_EQ(stored.at("empty").dtype(), DType::bf16);
}

// The reference implementations on our files, and ours on theirs.
TEST_F(Bf16Safetensors, TorchReadsOursAndWeReadTorchs) {
  const char* python = std::getenv("ENGINE_PYTHON");
  if (!python || !*python) GTEST_SKIP() << "set ENGINE_PYTHON to a python with torch and safetensors; scripts/test.sh does";
  const std::string quoted = "'" + std::string(python) + "'";
  if (std::system((quoted + " -c 'import torch, safetensors.torch' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << "ENGINE_PYTHON (" << python << ") cannot import torch and safetensors";

  const std::vector<float> values = awkward_values();
  const Tensor f32 = Tensor::from_vector({60}, values);
  const std::string ours = dir_ + "/ours.safetensors", theirs = dir_ + "/theirs.safetensors";
  save_tensors(ours, {{"bf16", f32.to(DType::bf16)}, {"f32", f32}});
  std::ofstream(dir_ + "/check.py") << R"(import sys, torch
from safetensors.torch import load_file, save_file
ours = load_file(sys.argv[1])
assert ours["bf16"].dtype == torch.bfloat16, ours["bf16"].dtype
assert ours["f32"].dtype == torch.float32
ref = ours["f32"].to(torch.bfloat16)  # torch's round to nearest even
got, want = ours["bf16"].view(torch.int16), ref.view(torch.int16)
nan = torch.isnan(ours["f32"])
assert torch.equal(got[~nan], want[~nan]), (got[~nan] != want[~nan]).nonzero()
assert torch.isnan(ours["bf16"][nan]).all()
save_file({"bf16": ref, "f32": ours["f32"]}, sys.argv[2])
print("ok")
)";
  const std::string out = dir_ + "/out.txt";
  const std::string command =
      quoted + " '" + dir_ + "/check.py' '" + ours + "' '" + theirs + "' >'" + out + "' 2>&1";
  const int status = std::system(command.c_str());
  std::ifstream output(out);
  std::stringstream text;
  text << output.rdbuf();
  ASSERT_EQ(status, 0) << "torch disagrees with our BF16 file:\n" << text.str();

  const auto stored = load_tensors(theirs, nullptr, LoadAs::stored);
  ASSERT_EQ(stored.at("bf16").dtype(), DType::bf16);
  const std::vector<uint16_t> theirs_bits = bf16_bits(stored.at("bf16"));
  const std::vector<uint16_t> ours_bits = bf16_bits(f32.to(DType::bf16));
  for (size_t i = 0; i < values.size(); ++i) {
    if (std::isnan(values[i])) {
      EXPECT_TRUE(std::isnan(kernels::f32_from_bf16_bits(theirs_bits[i])));
      continue;
    }
    EXPECT_EQ(theirs_bits[i], ours_bits[i]) << "element " << i << " (" << values[i] << ")";
  }
  const auto widened = load_tensors(theirs);
  const std::vector<float> read = widened.at("bf16").to_vector();
  for (size_t i = 0; i < values.size(); ++i)
    EXPECT_EQ(f32_bits({read[i]})[0], uint32_t(theirs_bits[i]) << 16) << "element " << i;
}

}  // namespace
