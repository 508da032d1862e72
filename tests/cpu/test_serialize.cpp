// Tensors to safetensors and back, through a module's state, with conversions from other float types.
#include <cstdio>
#include <fstream>

#include "engine/safetensors.h"
#include "engine/serialize.h"
#include "support/gradcheck.h"

namespace {

using namespace engine;

std::string temp_path(const char* name) { return ::testing::TempDir() + name; }

TEST(Serialize, RoundTripKeepsValuesShapesAndMetadata) {
  Generator gen(1);
  const Tensor a = test_support::random_tensor({2, 3, 4, 5}, gen);
  const Tensor strided = test_support::random_tensor({3, 8}, gen).slice(1, 2, 6);  // written densely
  const std::string path = temp_path("roundtrip.safetensors");
  save_tensors(path, {{"a", a}, {"s", strided}, {"scalar", Tensor::scalar(3.5f)}}, {{"arch", "tiny"}});
  std::map<std::string, std::string> meta;
  const auto loaded = load_tensors(path, &meta);
  EXPECT_EQ(meta.at("arch"), "tiny");
  EXPECT_EQ(loaded.at("a").to_vector(), a.to_vector());
  EXPECT_EQ(loaded.at("s").shape(), (Shape{3, 4}));
  EXPECT_EQ(loaded.at("s").to_vector(), strided.to_vector());
  EXPECT_EQ(loaded.at("scalar").item(), 3.5f);
  std::remove(path.c_str());
}

TEST(Serialize, HalfAndBfloatAreConvertedOnLoad) {
  const std::string path = temp_path("halves.safetensors");
  // 1.0, -2.0, 0.5 and a subnormal 2^-24 in IEEE half; 1.0 and -3.0 in bfloat16.
  const uint16_t half[4] = {0x3c00, 0xc000, 0x3800, 0x0001};
  const uint16_t bf16[2] = {0x3f80, 0xc040};
  safetensors::write(path, {{"h", safetensors::DType::F16, {4}, half, sizeof half},
                            {"b", safetensors::DType::BF16, {2}, bf16, sizeof bf16}});
  const auto loaded = load_tensors(path);
  EXPECT_EQ(loaded.at("h").to_vector(), (std::vector<float>{1.0f, -2.0f, 0.5f, 5.9604645e-8f}));
  EXPECT_EQ(loaded.at("b").to_vector(), (std::vector<float>{1.0f, -3.0f}));
  std::remove(path.c_str());
}

TEST(Serialize, IntegerTensorsAreAClearError) {
  const std::string path = temp_path("ints.safetensors");
  const int32_t values[2] = {1, 2};
  safetensors::write(path, {{"idx", safetensors::DType::I32, {2}, values, sizeof values}});
  try {
    load_tensors(path);
    FAIL() << "expected an error";
  } catch (const engine::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'idx' has dtype I32"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
}

}  // namespace
