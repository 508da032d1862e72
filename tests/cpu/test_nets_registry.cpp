// make_net and load_weights: a save/load round trip gives the same logits; a file for another
// architecture, missing tensors and a head that does not fit are refused with every problem named;
// skipping the head loads an ImageNet backbone under a fresh binary head.
#include <cstdio>
#include <functional>
#include <map>

#include "engine/serialize.h"
#include "nets/densenet.h"
#include "nets/registry.h"
#include "support/gradcheck.h"

namespace {

using namespace engine;
using nets::Flavor;
using nets::Head;

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "test_nets_registry_" + name; }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const engine::Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::map<std::string, Tensor> state_map(const Module& m) {
  std::map<std::string, Tensor> out;
  for (const auto& [name, t] : m.state()) out[name] = t;
  return out;
}

TEST(Registry, KnownArchitecturesAndDefaults) {
  EXPECT_EQ(nets::arch_names(),
            (std::vector<std::string>{"densenet121", "densenet169", "densenet201", "inception_resnet_v2"}));
  EXPECT_EQ(nets::default_input_size("densenet201"), 224);
  EXPECT_EQ(nets::default_input_size("inception_resnet_v2"), 299);
  Generator gen(1);
  const std::string e = error_of([&] { nets::make_net("resnet50", Head::gap, Flavor::keras, 224, gen); });
  EXPECT_TRUE(contains(e, "unknown architecture 'resnet50'")) << e;
  EXPECT_TRUE(contains(e, "inception_resnet_v2")) << e;
  EXPECT_EQ(nets::normalized_arch("DenseNet-201"), "densenet201");
  EXPECT_EQ(nets::normalized_arch("InceptionResNetV2"), nets::normalized_arch("inception_resnet_v2"));
  EXPECT_EQ(nets::parse_head("flatten"), Head::flatten);
  EXPECT_EQ(nets::parse_flavor("torch"), Flavor::torch);
  EXPECT_TRUE(contains(error_of([] { nets::parse_head("avg"); }), "flatten")) << "lists the heads";
}

TEST(Registry, TheTestNetIsRegisteredBesideTheStudys) {
  EXPECT_EQ(nets::all_arch_names(), (std::vector<std::string>{"densenet121", "densenet169", "densenet201",
                                                              "inception_resnet_v2", "densenet_tiny"}));
  EXPECT_EQ(nets::default_input_size("densenet_tiny"), 224);
  Generator gen(1);
  auto tiny = nets::make_net("densenet_tiny", Head::gap, Flavor::torch, 64, gen);
  EXPECT_EQ(tiny->arch(), "densenet_tiny");
  const auto* densenet = dynamic_cast<const nets::DenseNet*>(tiny.get());
  ASSERT_NE(densenet, nullptr);
  EXPECT_EQ(densenet->config().block_layers, (std::vector<int64_t>{2, 2, 2, 2}));
  EXPECT_EQ(densenet->config().growth, 8);
  EXPECT_EQ(densenet->config().bottleneck, 32);
  EXPECT_EQ(densenet->config().stem_channels, 16);
  EXPECT_EQ(densenet->config().flavor, Flavor::torch);
  EXPECT_FALSE(densenet->config().memory_efficient);
  const std::string e = error_of([&] { nets::make_net("densenet_huge", Head::gap, Flavor::keras, 224, gen); });
  EXPECT_TRUE(contains(e, "densenet_tiny")) << "the test net is listed among the known: " << e;
}

TEST(Registry, NetOptionsReachTheNet) {
  // memory_efficient switches the DenseNets' recomputing mode (same numbers); Inception-ResNet-v2 ignores it.
  Generator gen_a(6), gen_b(6), data(7);
  auto plain = nets::make_net("densenet_tiny", Head::flatten, Flavor::keras, 32, gen_a);
  auto recomputing = nets::make_net("densenet_tiny", Head::flatten, Flavor::keras, 32, gen_b, {/*memory_efficient=*/true});
  EXPECT_TRUE(dynamic_cast<const nets::DenseNet&>(*recomputing).config().memory_efficient);
  const Tensor images = test_support::random_tensor({2, 32, 32, 3}, data);
  EXPECT_EQ(recomputing->forward(images).to_vector(), plain->forward(images).to_vector());
  Generator gen_c(8);
  EXPECT_NO_THROW(nets::make_net("inception_resnet_v2", Head::gap, Flavor::keras, 75, gen_c, {true}));
}

TEST(Registry, SaveLoadRoundTripGivesTheSameLogits) {
  Generator gen_a(2), gen_b(3), data(4);
  auto a = nets::make_net("densenet121", Head::gap, Flavor::keras, 32, gen_a);
  auto b = nets::make_net("densenet121", Head::gap, Flavor::keras, 32, gen_b);
  // Give the BN statistics non-trivial values so that the buffers' round trip matters too.
  for (const auto& [name, t] : a->named_buffers()) t.copy_from(test_support::random_tensor(t.shape(), data, 0.5f, 1.5f));
  a->eval();
  b->eval();
  const Tensor images = test_support::random_tensor({2, 48, 48, 3}, data);
  NoGradGuard no_grad;
  const std::vector<float> expected = a->forward(images).to_vector();
  ASSERT_NE(b->forward(images).to_vector(), expected);  // different seeds, different nets

  const std::string path = temp_path("roundtrip.safetensors");
  save_tensors(path, a->state(), {{"arch", "DenseNet-121"}, {"source", "test"}});
  const Module::LoadReport report = nets::load_weights(*b, path, /*skip_head=*/false);
  EXPECT_EQ(report.loaded.size(), a->state().size());
  EXPECT_TRUE(report.skipped.empty());
  EXPECT_EQ(b->forward(images).to_vector(), expected);
  std::remove(path.c_str());
}

TEST(Registry, LoadErrorsNameEveryProblem) {
  Generator gen(5);
  auto net = nets::make_net("densenet121", Head::imagenet, Flavor::keras, 32, gen);
  const NamedTensors state = net->state();

  // A file converted for another architecture is refused before anything is compared.
  const std::string other = temp_path("other_arch.safetensors");
  save_tensors(other, state, {{"arch", "inception_resnet_v2"}});
  std::string e = error_of([&] { nets::load_weights(*net, other, false); });
  EXPECT_TRUE(contains(e, "holds weights for 'inception_resnet_v2'")) << e;
  EXPECT_TRUE(contains(e, "densenet121")) << e;
  std::remove(other.c_str());

  // Missing tensors are all listed, with the file's name.
  NamedTensors partial;
  for (const auto& [name, t] : state)
    if (name != "features.denseblock2.denselayer3.conv2.weight" && name != "features.norm5.running_var")
      partial.emplace_back(name, t);
  const std::string missing = temp_path("missing.safetensors");
  save_tensors(missing, partial, {{"arch", "densenet121"}});
  e = error_of([&] { nets::load_weights(*net, missing, false); });
  EXPECT_TRUE(contains(e, "features.denseblock2.denselayer3.conv2.weight")) << e;
  EXPECT_TRUE(contains(e, "features.norm5.running_var")) << e;
  EXPECT_TRUE(contains(e, "2 missing from the file")) << e;
  EXPECT_TRUE(contains(e, missing)) << e;
  EXPECT_FALSE(contains(e, "the backbone matches")) << e;  // no head advice when the backbone is incomplete
  std::remove(missing.c_str());

  // A file that is not there.
  e = error_of([&] { nets::load_weights(*net, temp_path("nowhere.safetensors"), false); });
  EXPECT_TRUE(contains(e, "nowhere.safetensors")) << e;
}

TEST(Registry, SkipHeadLoadsAnImagenetBackboneUnderABinaryHead) {
  Generator gen_a(6), gen_b(7);
  auto imagenet = nets::make_net("densenet121", Head::imagenet, Flavor::keras, 64, gen_a);
  auto study = nets::make_net("densenet121", Head::flatten, Flavor::keras, 64, gen_b);
  const std::string with_top = temp_path("with_top.safetensors");
  save_tensors(with_top, imagenet->state(), {{"arch", "densenet121"}});

  // Without skipping, the 1000-class head does not fit the flatten head: named, with the advice.
  std::string e = error_of([&] { nets::load_weights(*study, with_top, false); });
  EXPECT_TRUE(contains(e, "classifier.weight: file [1000, 1024], model [1, 4096]")) << e;
  EXPECT_TRUE(contains(e, "the file's head does not fit")) << e;

  const std::vector<float> head_before = state_map(*study).at("classifier.weight").to_vector();
  const Module::LoadReport report = nets::load_weights(*study, with_top, /*skip_head=*/true);
  EXPECT_EQ(report.skipped, (std::vector<std::string>{"classifier.weight", "classifier.bias"}));
  EXPECT_EQ(report.loaded.size(), imagenet->state().size() - 2);
  const auto loaded = state_map(*study);
  for (const auto& [name, t] : imagenet->state()) {
    if (name.rfind("classifier.", 0) == 0) continue;
    EXPECT_EQ(loaded.at(name).to_vector(), t.to_vector()) << name;
  }
  EXPECT_EQ(loaded.at("classifier.weight").to_vector(), head_before);  // the fresh head stays
  std::remove(with_top.c_str());

  // A file without a head (Keras's _notop): refused without skip_head, with the advice; fine with it.
  NamedTensors notop;
  for (const auto& [name, t] : imagenet->state())
    if (name.rfind("classifier.", 0) != 0) notop.emplace_back(name, t);
  const std::string no_top = temp_path("notop.safetensors");
  save_tensors(no_top, notop, {});
  e = error_of([&] { nets::load_weights(*study, no_top, false); });
  EXPECT_TRUE(contains(e, "the file has no head")) << e;
  EXPECT_TRUE(contains(e, "classifier.bias")) << e;
  EXPECT_NO_THROW(nets::load_weights(*study, no_top, true));
  std::remove(no_top.c_str());
}

}  // namespace
