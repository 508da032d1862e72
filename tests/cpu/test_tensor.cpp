// Tensors, views, row matrices, concatenation without copies, modules, device choice.
#include "engine/ops/common.h"
#include "support/gradcheck.h"

#include <cmath>

namespace {

using namespace engine;

TEST(Tensor, CreationAndViews) {
  Tensor t = Tensor::from_vector({2, 3}, {0, 1, 2, 3, 4, 5});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_TRUE(t.is_contiguous());
  Tensor col = t.slice(1, 1, 3);
  EXPECT_EQ(col.shape(), (Shape{2, 2}));
  EXPECT_FALSE(col.is_contiguous());
  EXPECT_EQ(col.to_vector(), (std::vector<float>{1, 2, 4, 5}));
  EXPECT_EQ(col.storage(), t.storage());  // a view shares storage
  col.fill_(9);
  EXPECT_EQ(t.to_vector(), (std::vector<float>{0, 9, 9, 3, 9, 9}));
  EXPECT_EQ(t.view({3, 2}).shape(), (Shape{3, 2}));
  EXPECT_THROW(col.view({4}), engine::Error);
  EXPECT_THROW(t.slice(1, 2, 4), engine::Error);
  EXPECT_THROW(t.view({5}), engine::Error);
}

TEST(Tensor, ChannelSliceIsARowMatrixWithTheBufferStride) {
  Tensor buffer = Tensor::zeros({2, 3, 4, 10});
  Tensor slice = buffer.slice(-1, 4, 7);
  ASSERT_TRUE(detail::is_row_matrix(slice));
  const detail::Rows r = detail::as_rows(slice);
  EXPECT_EQ(r.rows, 24);
  EXPECT_EQ(r.cols, 3);
  EXPECT_EQ(r.ld, 10);
  EXPECT_EQ(r.data, buffer.data() + 4);
  // A slice along H is not one row matrix (rows jump between images).
  EXPECT_FALSE(detail::is_row_matrix(buffer.slice(1, 0, 2).slice(-1, 0, 3)));
  // A batch slice of a dense tensor still is.
  EXPECT_TRUE(detail::is_row_matrix(buffer.slice(0, 1, 2)));
}

TEST(Tensor, ConcatOfAdjacentSlicesIsAViewAndCopiesNothing) {
  Tensor buffer = Tensor::zeros({2, 2, 2, 6});
  Tensor a = buffer.slice(-1, 0, 2), b = buffer.slice(-1, 2, 5);
  a.fill_(1);
  b.fill_(2);
  Tensor cat = concat_channels({a, b});
  EXPECT_EQ(cat.shape(), (Shape{2, 2, 2, 5}));
  EXPECT_EQ(cat.storage(), buffer.storage());
  EXPECT_EQ(cat.data(), buffer.data());
  // Not adjacent (order swapped): a copy with the right values.
  Tensor swapped = concat_channels({b, a});
  EXPECT_NE(swapped.storage(), buffer.storage());
  const std::vector<float> v = swapped.to_vector();
  EXPECT_EQ(std::vector<float>(v.begin(), v.begin() + 5), (std::vector<float>{2, 2, 2, 1, 1}));
}

TEST(Tensor, ConvWritesIntoAChannelSliceOfABlockBuffer) {
  // The memory-efficient DenseNet pattern: each layer writes its new channels into the block buffer,
  // and the next layer's input is a view over all channels so far.
  Generator gen(3);
  Tensor buffer = Tensor::zeros({1, 4, 4, 6});
  Tensor x0 = buffer.slice(-1, 0, 2);
  x0.copy_from(test_support::random_tensor({1, 4, 4, 2}, gen));
  Tensor w = test_support::random_tensor({4, 3, 3, 2}, gen);
  Tensor out = conv2d(x0, w, Tensor(), Conv2dOptions::symmetric(1), buffer.slice(-1, 2, 6));
  Tensor reference = conv2d(x0.contiguous(), w, Tensor(), Conv2dOptions::symmetric(1));
  EXPECT_EQ(out.to_vector(), reference.to_vector());
  Tensor features = concat_channels({x0, out});
  EXPECT_EQ(features.data(), buffer.data());
  EXPECT_EQ(features.shape(), (Shape{1, 4, 4, 6}));
}

class TinyNet : public Module {
 public:
  explicit TinyNet(Generator& gen) {
    conv = register_module("conv", std::make_shared<Conv2d>(Conv2dSpec{3, 4, 3, 3, Conv2dOptions::symmetric(1), false}, gen));
    bn = register_module("bn", std::make_shared<BatchNorm>(BatchNormSpec{4, BatchNormOptions::torch(), true, true}));
    fc = register_module("fc", std::make_shared<Linear>(4, 1, true, gen));
  }
  std::shared_ptr<Conv2d> conv;
  std::shared_ptr<BatchNorm> bn;
  std::shared_ptr<Linear> fc;
};

TEST(Module, HierarchicalNamesModesAndLoading) {
  Generator gen(4);
  TinyNet net(gen);
  std::vector<std::string> names;
  for (const auto& [name, t] : net.named_parameters()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"conv.weight", "bn.weight", "bn.bias", "fc.weight", "fc.bias"}));
  std::vector<std::string> buffers;
  for (const auto& [name, t] : net.named_buffers()) buffers.push_back(name);
  EXPECT_EQ(buffers, (std::vector<std::string>{"bn.running_mean", "bn.running_var"}));
  EXPECT_EQ(net.num_parameters(), 4 * 3 * 3 * 3 + 4 + 4 + 4 + 1);
  net.eval();
  EXPECT_FALSE(net.bn->is_training());
  net.train();
  EXPECT_TRUE(net.bn->is_training());

  // Loading by name: values land in the model; every problem is reported at once.
  std::map<std::string, Tensor> file;
  for (const auto& [name, t] : net.state()) file[name] = Tensor::full(t.shape(), 0.5f);
  Module::LoadReport report = net.load_state(file);
  EXPECT_EQ(report.loaded.size(), 7u);
  EXPECT_EQ(net.fc->bias.item(), 0.5f);

  file["fc.weight"] = Tensor::zeros({2, 4});
  file["extra.weight"] = Tensor::zeros({1});
  file.erase("bn.bias");
  try {
    net.load_state(file);
    FAIL() << "expected an error";
  } catch (const engine::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("fc.weight: file [2, 4], model [1, 4]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("bn.bias"), std::string::npos) << msg;
    EXPECT_NE(msg.find("extra.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("hint"), std::string::npos) << msg;
  }
  // Skipping the head: fc.* is neither loaded nor required.
  file.erase("extra.weight");
  file["bn.bias"] = Tensor::zeros({4});
  report = net.load_state(file, {"fc."});
  EXPECT_EQ(report.skipped, (std::vector<std::string>{"fc.weight", "fc.bias"}));
}

TEST(Device, CpuAlwaysWorksAndAutoFallsBack) {
  EXPECT_EQ(select_device("cpu"), Device::cpu());
  if (!cuda_available()) {
    EXPECT_EQ(select_device("auto"), Device::cpu());
    EXPECT_THROW(select_device("cuda"), engine::Error);
    EXPECT_FALSE(probe_devices().reason.empty());
  }
  EXPECT_THROW(select_device("gpu"), engine::Error);
  // A malformed index is the user's mistake, with a plain message (it once escaped as std::invalid_argument).
  for (const char* request : {"cuda:abc", "cuda:", "cuda:-1", "cuda:1x", "cuda:99999999999"}) {
    try {
      select_device(request);
      ADD_FAILURE() << request << " was accepted";
    } catch (const engine::UserError& e) {
      EXPECT_NE(std::string(e.what()).find("use cuda or cuda:N"), std::string::npos) << e.what();
    }
  }
}

TEST(Check, ErrorsNameFileLineAndExpression) {
  try {
    Tensor::from_vector({2, 2}, {1, 2, 3});
    FAIL() << "expected an error";
  } catch (const engine::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("tensor.cpp:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("3 values do not fill shape [2, 2]"), std::string::npos) << msg;
  }
}

TEST(Random, StreamsAreReproducibleAndIndependent) {
  Generator a(42, 0), b(42, 0), c(42, 1);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const uint64_t va = a.next_u64();
    EXPECT_EQ(va, b.next_u64());
    differs |= va != c.next_u64();
  }
  EXPECT_TRUE(differs);
  // Moments of the normal and uniform draws.
  Generator g(7);
  double s = 0, s2 = 0, u = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double z = g.normal();
    s += z;
    s2 += z * z;
    u += g.uniform();
  }
  EXPECT_NEAR(s / n, 0.0, 0.01);
  EXPECT_NEAR(s2 / n, 1.0, 0.02);
  EXPECT_NEAR(u / n, 0.5, 0.005);
  // Generator state round trip.
  Generator h(9);
  h.next_u64();
  const Generator::State st = h.state();
  const uint64_t next = h.next_u64();
  h.set_state(st);
  EXPECT_EQ(h.next_u64(), next);
}

TEST(Random, InitialisersHaveTheirVariances) {
  Generator g(8);
  Tensor w = Tensor::empty({64, 3, 3, 32});  // fan_in 288, fan_out 576
  init_kaiming_normal(w, g);
  double s2 = 0;
  for (float v : w.to_vector()) s2 += double(v) * v;
  EXPECT_NEAR(s2 / w.numel(), 2.0 / 288, 0.05 * 2.0 / 288);
  Tensor d = Tensor::empty({100, 400});
  init_glorot_uniform(d, g);
  const float limit = std::sqrt(6.0f / 500.0f);
  float max_abs = 0;
  for (float v : d.to_vector()) max_abs = std::max(max_abs, std::fabs(v));
  EXPECT_LE(max_abs, limit);
  EXPECT_GT(max_abs, 0.95f * limit);
}

}  // namespace
