// Parity with the reference implementations (torchvision, timm, Keras): shared code of the
// test_parity_*.cpp executables.
//
// The golden data are exported by weights_tools/export_golden.py (scripts/golden.sh) into
// $ENGINE_GOLDEN_DIR, or ../golden relative to the test's working directory (<build>/tests), i.e.
// <build>/golden. Each case folder holds weights.safetensors (the converted initial weights, in our names
// and layouts) and golden.safetensors (input, target, eval logits, act.<stage>, loss, grad.<name>,
// state.<name>, adam_losses; metadata arch, head, bn_flavor, adam, lr, input_size). A test skips with
// a message naming the command to run when its case is absent.
//
// Every comparison is elementwise, |ours - ref| <= atol_scale * max|ref| + rtol * |ref| (+ atol), i.e.
// relative to the tensor's own scale (worst measured ratio error/allowed on the build machine in brackets):
//   logits, activations (eval)      atol_scale 2e-5, rtol 1e-4   [0.39]
//   loss                            rtol 1e-5                    [0.29]
//   gradients (training)            atol_scale 5e-4, rtol 5e-3   [0.21]  + atol 1e-6 * the net's largest
//                                   gradient, for tensors whose true gradient is zero (round-off only)
//   BN running statistics           atol_scale 1e-5, rtol 1e-5   [0.17]
//   Adam-step losses                rtol 5e-3                    [0.48]
// Where the golden file's noise.<name> (the reference's own float32 result against float64) is larger,
// kNoiseFactor times it is allowed instead (capped at kMaxNoiseTolerance): deep nets with training-mode
// BN amplify round-off in their gradients, and no float32 implementation can beat that. The golden
// batch keeps every ReLU input away from the kink (weights_tools/export_golden.py), without which single
// gradients differ by 10-30% between any two implementations. Each test program prints the worst ratio
// of each kind at exit, so that a tolerance can be changed with evidence. docs/weights.md has the story.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/engine.h"
#include "engine/serialize.h"
#include "nets/registry.h"

namespace parity {

using engine::Tensor;

// One golden case: the name of its folder.
struct Case {
  std::string name;
};
inline void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }
inline std::string case_name(const ::testing::TestParamInfo<Case>& info) { return info.param.name; }

inline std::string golden_root() {
  const char* env = std::getenv("ENGINE_GOLDEN_DIR");
  return env && *env ? std::string(env) : std::string("../golden");
}

inline bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

struct Golden {
  std::string dir;
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> meta;

  const Tensor& at(const std::string& name) const {
    auto it = tensors.find(name);
    ENGINE_CHECK(it != tensors.end()) << dir << "/golden.safetensors has no tensor '" << name
                                      << "': re-export the golden data (scripts/golden.sh)";
    return it->second;
  }
  const std::string& meta_at(const std::string& key) const {
    auto it = meta.find(key);
    ENGINE_CHECK(it != meta.end()) << dir << "/golden.safetensors has no metadata '" << key << "'";
    return it->second;
  }
  std::string weights() const { return dir + "/weights.safetensors"; }
};

// The case's golden data (read once per process), or null when the files are absent.
inline const Golden* load_golden(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Golden>> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second.get();
  const std::string dir = golden_root() + "/" + name;
  std::unique_ptr<Golden> golden;
  if (file_exists(dir + "/golden.safetensors") && file_exists(dir + "/weights.safetensors")) {
    golden = std::make_unique<Golden>();
    golden->dir = dir;
    golden->tensors = engine::load_tensors(dir + "/golden.safetensors", &golden->meta);
  }
  return (cache[name] = std::move(golden)).get();
}

#define PARITY_GOLDEN_OR_SKIP(golden, case_name)                                                        \
  const ::parity::Golden* golden = ::parity::load_golden(case_name);                                    \
  if (!golden)                                                                                          \
  GTEST_SKIP() << "no golden data for '" << (case_name) << "' in " << ::parity::golden_root()           \
               << ": run scripts/golden.sh <build>/golden (or set ENGINE_GOLDEN_DIR)"

// A net built as the case describes, with the case's converted weights loaded (every tensor checked),
// on `device` (the GPU variants of these tests in tests/gpu/test_parity_gpu.cpp pass a CUDA device).
inline std::shared_ptr<nets::Net> make_loaded_net(const Golden& golden, engine::Device device = engine::Device::cpu()) {
  engine::Generator gen(7);
  const Tensor& input = golden.at("input");  // [N, H, W, 3]
  auto net = nets::make_net(golden.meta_at("arch"), nets::parse_head(golden.meta_at("head")),
                            nets::parse_flavor(golden.meta_at("bn_flavor")), input.size(1), gen);
  const engine::Module::LoadReport report = nets::load_weights(*net, golden.weights(), false);
  ENGINE_CHECK(report.missing.empty() && report.unexpected.empty() && report.skipped.empty())
      << "loading " << golden.weights() << ": " << report.missing.size() << " missing, "
      << report.unexpected.size() << " unexpected, " << report.skipped.size() << " skipped";
  net->to(device);
  return net;
}

struct Tolerance {
  double atol_scale;  // times max|ref|
  double rtol;        // times |ref_i|
  double atol = 0;    // absolute
};

inline constexpr Tolerance kActivations{2e-5, 1e-4};
inline constexpr Tolerance kLoss{0.0, 1e-5};
inline constexpr Tolerance kGradients{5e-4, 5e-3};
inline constexpr Tolerance kBnStatistics{1e-5, 1e-5};
inline constexpr Tolerance kAdamLosses{0.0, 5e-3};
// Where the reference's own float32 round-off (noise.*: its float32 result against float64) is larger,
// we allow this many times it.
inline constexpr double kNoiseFactor = 5.0;
// ... but never more than this (relative): a tensor whose true value is zero has a huge relative
// round-off, and must still be checked (against kGradientFloor).
inline constexpr double kMaxNoiseTolerance = 1e-2;
// Gradients: an absolute floor of this times the largest gradient of the net, for tensors whose true
// gradient is zero (e.g. the bias of a convolution that feeds a training-mode BN: the BN removes it), so
// that their round-off, not their value, is compared.
inline constexpr double kGradientFloor = 1e-6;

// The tolerance `base` widened to kNoiseFactor times the golden round-off `noise.<name>` (relative to
// the tensor's max for atol_scale, elementwise for rtol-only tolerances), when the golden file has it.
inline Tolerance with_noise(const Golden& golden, const std::string& name, Tolerance base) {
  auto it = golden.tensors.find("noise." + name);
  if (it == golden.tensors.end()) return base;
  const std::vector<float> noise = it->second.to_vector();
  const double worst = noise.empty() ? 0.0 : *std::max_element(noise.begin(), noise.end());
  const double widened = std::min(kNoiseFactor * worst, kMaxNoiseTolerance);
  if (base.atol_scale > 0)
    base.atol_scale = std::max(base.atol_scale, widened);
  else
    base.rtol = std::max(base.rtol, widened);
  return base;
}

// The worst ratio |ours - ref| / allowed seen per kind of tensor in this process (printed at exit).
struct Worst {
  double ratio = 0;
  std::string where;
};
inline std::map<std::string, Worst>& worst_by_kind() {
  static std::map<std::string, Worst> worst;
  return worst;
}
inline void print_worst() {
  for (const auto& [kind, w] : worst_by_kind())
    std::cout << "[parity] worst " << kind << ": " << w.ratio << " of the tolerance (" << w.where << ")\n";
}

// Elementwise comparison with the tolerance; records the worst ratio under `kind`.
inline ::testing::AssertionResult close(const std::string& kind, const std::string& what, const Tensor& ours,
                                        const Tensor& ref, const Tolerance& tol) {
  if (ours.shape() != ref.shape())
    return ::testing::AssertionFailure() << what << ": shape " << ours.str() << ", reference " << ref.str();
  const std::vector<float> a = ours.to_vector(), b = ref.to_vector();
  double ref_max = 0;
  for (float v : b) ref_max = std::max(ref_max, static_cast<double>(std::fabs(v)));
  const double floor = 1e-30 + tol.atol;
  double worst = 0, worst_diff = 0;
  size_t worst_index = 0;
  bool finite = true;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) finite = false;
    const double diff = std::fabs(static_cast<double>(a[i]) - b[i]);
    const double allowed = floor + tol.atol_scale * ref_max + tol.rtol * std::fabs(b[i]);
    const double ratio = diff / allowed;
    if (ratio > worst || !std::isfinite(ratio)) {
      worst = std::isfinite(ratio) ? ratio : INFINITY;
      worst_diff = diff;
      worst_index = i;
    }
  }
  Worst& w = worst_by_kind()[kind];
  if (worst > w.ratio) w = {worst, what};
  if (finite && worst <= 1.0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": |ours - ref| = " << worst_diff << " at element " << worst_index << " (ours "
         << a[worst_index] << ", ref " << b[worst_index] << "), " << worst << " times the tolerance (atol "
         << tol.atol_scale << " * max|ref| " << ref_max << " + rtol " << tol.rtol << " * |ref| + " << tol.atol << ")"
         << (finite ? "" : "; ours has non-finite values");
}

// mean over the batch of BCEWithLogits(logits[:, 0], target): the golden loss.
inline Tensor golden_loss(const Tensor& logits, const Tensor& target) {
  return engine::bce_with_logits(engine::slice_channels(logits, 0, 1), target);
}

// With ENGINE_PARITY_DUMP=<folder>, writes our gradients (grad.<name>) and BN statistics (state.<name>)
// to <folder>/<case>.<what>.safetensors, to study a difference with the golden file side by side.
inline void dump(const Golden& golden, const std::string& what, const std::shared_ptr<nets::Net>& net) {
  const char* folder = std::getenv("ENGINE_PARITY_DUMP");
  if (!folder || !*folder) return;
  engine::NamedTensors out;
  for (const auto& [name, p] : net->named_parameters())
    if (p.grad().defined()) out.emplace_back("grad." + name, p.grad());
  for (const auto& [name, b] : net->named_buffers()) out.emplace_back("state." + name, b);
  const std::string case_name = golden.dir.substr(golden.dir.find_last_of('/') + 1);
  engine::save_tensors(std::string(folder) + "/" + case_name + "." + what + ".safetensors", out);
}

// ---- The four checks of a case ------------------------------------------------------------------

inline void check_weights_metadata(const Golden& golden) {
  std::map<std::string, std::string> meta;
  engine::load_tensors(golden.weights(), &meta);
  for (const char* key : {"arch", "source", "head", "bn_flavor"})
    EXPECT_EQ(meta[key], golden.meta_at(key)) << "metadata '" << key << "' of " << golden.weights();
  EXPECT_TRUE(meta.count("preprocess")) << golden.weights() << " has no 'preprocess' metadata";
  auto net = make_loaded_net(golden);
  EXPECT_EQ(net->state().size(), engine::load_tensors(golden.weights()).size());
}

inline void check_eval(const Golden& golden, engine::Device device = engine::Device::cpu()) {
  auto net = make_loaded_net(golden, device);
  net->eval();
  engine::NoGradGuard no_grad;
  nets::StageMap stages;
  const Tensor logits = net->forward_with_stages(golden.at("input").to(device), stages);
  EXPECT_TRUE(close("eval logits", golden.dir + " logits", logits, golden.at("logits"), kActivations));
  for (const std::string& stage : net->stage_names()) {
    ASSERT_TRUE(stages.count(stage)) << "the net did not report stage " << stage;
    EXPECT_TRUE(close("eval activations", golden.dir + " act." + stage, stages.at(stage),
                      golden.at("act." + stage), kActivations));
  }
}

inline void check_training_step(const Golden& golden, engine::Device device = engine::Device::cpu()) {
  auto net = make_loaded_net(golden, device);
  net->train();
  net->zero_grad();
  const Tensor loss = golden_loss(net->forward(golden.at("input").to(device)), golden.at("target").to(device));
  EXPECT_TRUE(close("loss", golden.dir + " loss", loss.view({1}), golden.at("loss"), with_noise(golden, "loss", kLoss)));
  loss.backward();

  std::set<std::string> golden_grads, golden_state;
  for (const auto& [name, t] : golden.tensors) {
    if (name.rfind("grad.", 0) == 0) golden_grads.insert(name.substr(5));
    if (name.rfind("state.", 0) == 0) golden_state.insert(name.substr(6));
  }
  double largest_gradient = 0;
  for (const std::string& name : golden_grads)
    for (float g : golden.at("grad." + name).to_vector())
      largest_gradient = std::max(largest_gradient, static_cast<double>(std::fabs(g)));
  std::set<std::string> ours_grads, ours_state;
  int failures = 0;
  for (const auto& [name, p] : net->named_parameters()) {
    ours_grads.insert(name);
    ASSERT_TRUE(p.grad().defined()) << name << " received no gradient";
    Tolerance tol = with_noise(golden, "grad." + name, kGradients);
    tol.atol = kGradientFloor * largest_gradient;
    const auto result = close("gradients", golden.dir + " grad." + name, p.grad(), golden.at("grad." + name), tol);
    if (!result && ++failures <= 20) ADD_FAILURE() << result.message();
  }
  EXPECT_EQ(failures, 0) << failures << " gradients differ (first 20 listed)";
  EXPECT_EQ(ours_grads, golden_grads) << "parameter names differ from the golden gradients";
  failures = 0;
  for (const auto& [name, b] : net->named_buffers()) {
    ours_state.insert(name);
    const auto result = close("bn statistics", golden.dir + " state." + name, b, golden.at("state." + name),
                              kBnStatistics);
    if (!result && ++failures <= 20) ADD_FAILURE() << result.message();
  }
  EXPECT_EQ(failures, 0) << failures << " BN statistics differ (first 20 listed)";
  EXPECT_EQ(ours_state, golden_state) << "buffer names differ from the golden BN statistics";
  dump(golden, "training", net);
}

inline void check_adam_steps(const Golden& golden, engine::Device device = engine::Device::cpu()) {
  auto net = make_loaded_net(golden, device);
  net->train();
  const std::string convention = golden.meta_at("adam");
  const float lr = std::stof(golden.meta_at("lr"));
  ASSERT_TRUE(convention == "pytorch" || convention == "keras") << "unknown Adam convention " << convention;
  engine::ParameterArena arena(net->named_parameters());
  engine::Adam adam(arena, convention == "keras" ? engine::Adam::keras(lr) : engine::Adam::pytorch(lr));
  const Tensor input = golden.at("input").to(device);
  const Tensor target = golden.at("target").to(device);
  const std::vector<float> expected = golden.at("adam_losses").to_vector();
  std::vector<float> losses;
  for (size_t step = 0; step <= expected.size(); ++step) {
    arena.zero_grad();
    const Tensor loss = golden_loss(net->forward(input), target);
    if (step > 0) losses.push_back(loss.item());
    if (step < expected.size()) {
      loss.backward();
      adam.step();
    }
  }
  EXPECT_TRUE(close("adam losses", golden.dir + " adam_losses", Tensor::from_vector({static_cast<int64_t>(losses.size())}, losses),
                    golden.at("adam_losses"), with_noise(golden, "adam_losses", kAdamLosses)));
}

// ---- bf16 mixed precision against the same golden data (tests/cpu/test_parity_bf16.cpp) ---------------
//
// The net keeps its f32 weights; the input enters as bf16 (as TrainingStep::activation_input does) and
// every op runs on bf16 activations (docs/precision.md). Compared with the golden f32 results by relative
// L2, ||ours - ref|| / ||ref||, per tensor: bf16 storage rounding (8 significant bits) accumulated over a
// deep net is not an elementwise-bounded error.

// ||ours - ref||, ||ref|| (L2, in double) and the inner product <ours, ref>.
struct L2 {
  double difference = 0, reference = 0, inner = 0;
};
inline L2 l2_difference(const Tensor& ours, const Tensor& ref) {
  const std::vector<float> a = ours.to_vector(), b = ref.to_vector();
  ENGINE_CHECK(a.size() == b.size()) << "l2_difference of " << ours.str() << " and " << ref.str();
  double diff = 0, norm = 0, inner = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    diff += d * d;
    norm += static_cast<double>(b[i]) * b[i];
    inner += static_cast<double>(a[i]) * b[i];
  }
  return {std::sqrt(diff), std::sqrt(norm), inner};
}
inline double relative_l2(const Tensor& ours, const Tensor& ref) {
  const L2 l2 = l2_difference(ours, ref);
  return l2.difference / std::max(l2.reference, 1e-300);
}

// The golden cases are ill-conditioned for bf16 (deep nets at random initialisation on small noise images,
// two images of opposite labels whose BCE gradients nearly cancel): an f32 net whose only change is its input
// and weights rounded to bf16, i.e. the values bf16 storage starts from, already moves the logits by
// several percent and the training step's gradients by 40-90%. So each bf16 result is bounded twice:
// absolutely, and by a multiple of that sensitivity (the "rounded" pass below), which shows that the
// rounding of the activations between layers adds little to what rounding the inputs does. The eval logits
// are also held to the reference framework's own bf16: the golden data carry PyTorch's CPU autocast
// (bfloat16) logits of the same net and input (`logits_bf16_reference`), and ours may deviate from the
// golden f32 logits by at most `reference` times as much as those do. Bounds and measured values:
// tests/cpu/test_parity_bf16.cpp and docs/precision.md.
struct Bf16Bounds {
  double logits;           // eval logits, relative L2
  double loss;             // training-mode loss, relative: at most loss + sensitivity times the rounded pass's
                           // (one scalar: its rounded-pass deviation can be near zero by chance)
  double all_grads;        // every parameter gradient together, relative L2
  double cosine;           // ... and their cosine similarity with the golden ones at least this (a zero, a
                           // random or a sign-flipped gradient has about 0 or below)
  double grad;             // each parameter gradient, relative L2 (against at least `grad_floor` of the largest)
  double grad_floor;       // times the largest gradient norm of the net (a gradient that is zero in exact
                           // arithmetic, e.g. a bias feeding a training-mode BN, is compared to that)
  double sensitivity;      // every result's deviation at most this times the rounded f32 pass's
  double reference;        // the eval logits' deviation at most this times PyTorch autocast bf16's
};

// The bounds of tests/cpu/test_parity_bf16.cpp (measured values there and in docs/precision.md), also
// used by the GPU variant in tests/gpu/test_parity_gpu.cpp.
inline constexpr Bf16Bounds kBf16Bounds{/*logits*/ 0.2, /*loss*/ 0.1, /*all_grads*/ 2.5, /*cosine*/ 0.2,
                                        /*grad*/ 3.0, /*grad_floor*/ 1e-3, /*sensitivity*/ 3.5,
                                        /*reference*/ 2.5};

// A loaded net with every parameter rounded to bf16 and back (f32 values that bf16 represents exactly).
inline std::shared_ptr<nets::Net> make_rounded_net(const Golden& golden, engine::Device device) {
  auto net = make_loaded_net(golden, device);
  for (auto& [name, p] : net->named_parameters()) p.copy_from(p.to(engine::DType::bf16).to(engine::DType::f32));
  return net;
}
inline Tensor rounded_input(const Golden& golden, engine::Device device) {
  return golden.at("input").to(device).to(engine::DType::bf16).to(engine::DType::f32);
}

struct Bf16EvalDeviation {
  double logits = 0, rounded_logits = 0;  // relative L2 of the bf16 pass, and of the rounded f32 pass
  double reference_logits = 0;            // ... and of the reference framework's own bf16 pass
};

// Eval mode (BN on running statistics): the logits on bf16 activations against the golden f32 logits.
inline Bf16EvalDeviation check_bf16_eval(const Golden& golden, const Bf16Bounds& bounds,
                                         engine::Device device = engine::Device::cpu()) {
  engine::NoGradGuard no_grad;
  Bf16EvalDeviation d;
  {
    auto net = make_loaded_net(golden, device);
    net->eval();
    const Tensor logits = net->forward(golden.at("input").to(device).to(engine::DType::bf16));
    EXPECT_EQ(logits.dtype(), engine::DType::bf16);
    d.logits = relative_l2(logits, golden.at("logits"));
  }
  {
    auto net = make_rounded_net(golden, device);
    net->eval();
    d.rounded_logits = relative_l2(net->forward(rounded_input(golden, device)), golden.at("logits"));
  }
  EXPECT_LE(d.logits, bounds.logits) << golden.dir << ": bf16 logits, relative L2 against the golden f32 logits";
  EXPECT_LE(d.logits, bounds.sensitivity * d.rounded_logits)
      << golden.dir << ": bf16 logits against the f32 net on bf16-rounded input and weights (" << d.rounded_logits << ")";
  d.reference_logits = relative_l2(golden.at("logits_bf16_reference"), golden.at("logits"));
  EXPECT_LE(d.logits, bounds.reference * d.reference_logits)
      << golden.dir << ": bf16 logits against the reference framework's own bf16 (PyTorch autocast), which deviates "
      << d.reference_logits << " from the golden f32 logits";
  return d;
}

// The bf16 training step's deviations from the golden f32 one, and the rounded f32 pass's.
struct Bf16StepDeviation {
  double loss = 0, rounded_loss = 0;            // relative
  double all_grads = 0, rounded_all_grads = 0;  // relative L2 of every parameter gradient together
  double cosine = 0;                            // their cosine similarity with the golden gradients
  double worst_grad = 0;                        // the largest per-tensor relative L2 (with the floor)
  std::string worst_name;
};

struct StepGradients {
  double loss = 0;
  std::map<std::string, L2> l2;  // per parameter, against the golden gradient
};

// One training-mode forward and backward (BCE on the golden labels) of `net` on `input`.
inline StepGradients step_against_golden(const Golden& golden, nets::Net& net, const Tensor& input, engine::Device device) {
  net.train();
  net.zero_grad();
  const Tensor loss = golden_loss(net.forward(input), golden.at("target").to(device));
  loss.backward();
  StepGradients s;
  s.loss = loss.item();
  for (const auto& [name, p] : net.named_parameters()) {
    if (!p.grad().defined()) {
      ADD_FAILURE() << name << " received no gradient";
      continue;
    }
    EXPECT_EQ(p.grad().dtype(), engine::DType::f32) << name << ": parameter gradients stay f32";
    s.l2[name] = l2_difference(p.grad(), golden.at("grad." + name));
  }
  return s;
}

// Every parameter gradient together: the relative L2 and the cosine similarity against the golden ones.
inline double all_relative(const StepGradients& s) {
  double diff = 0, norm = 0;
  for (const auto& [name, e] : s.l2) {
    diff += e.difference * e.difference;
    norm += e.reference * e.reference;
  }
  return std::sqrt(diff / std::max(norm, 1e-300));
}
inline double all_cosine(const StepGradients& s) {
  double inner = 0, ours = 0, ref = 0;  // ||ours||^2 = ||ours - ref||^2 + 2 <ours, ref> - ||ref||^2
  for (const auto& [name, e] : s.l2) {
    inner += e.inner;
    ref += e.reference * e.reference;
    ours += e.difference * e.difference + 2 * e.inner - e.reference * e.reference;
  }
  return inner / std::sqrt(std::max(ours * ref, 1e-300));
}

// The training step on bf16 activations against the golden f32 step: the loss, every parameter gradient
// (f32) one by one and all together.
inline Bf16StepDeviation check_bf16_training_step(const Golden& golden, const Bf16Bounds& bounds,
                                                  engine::Device device = engine::Device::cpu()) {
  auto net = make_loaded_net(golden, device);
  const StepGradients bf16 = step_against_golden(golden, *net, golden.at("input").to(device).to(engine::DType::bf16), device);
  net = make_rounded_net(golden, device);
  const StepGradients rounded = step_against_golden(golden, *net, rounded_input(golden, device), device);
  const double ref_loss = golden.at("loss").item();
  Bf16StepDeviation d;
  d.loss = std::fabs(bf16.loss - ref_loss) / std::fabs(ref_loss);
  d.rounded_loss = std::fabs(rounded.loss - ref_loss) / std::fabs(ref_loss);
  d.all_grads = all_relative(bf16);
  d.rounded_all_grads = all_relative(rounded);
  d.cosine = all_cosine(bf16);
  EXPECT_LE(d.loss, bounds.loss + bounds.sensitivity * d.rounded_loss)
      << golden.dir << ": bf16 loss " << bf16.loss << ", rounded f32 " << rounded.loss << ", golden " << ref_loss;
  EXPECT_LE(d.all_grads, bounds.all_grads) << golden.dir << ": all bf16 gradients together";
  EXPECT_LE(d.all_grads, bounds.sensitivity * d.rounded_all_grads)
      << golden.dir << ": all bf16 gradients together, against the rounded f32 pass's " << d.rounded_all_grads;
  EXPECT_GE(d.cosine, bounds.cosine) << golden.dir << ": all bf16 gradients together, cosine with the golden ones";

  double largest_norm = 0;
  for (const auto& [name, e] : bf16.l2) largest_norm = std::max(largest_norm, e.reference);
  int failures = 0;
  for (const auto& [name, e] : bf16.l2) {
    const double relative = e.difference / std::max(e.reference, bounds.grad_floor * largest_norm);
    if (relative > d.worst_grad) {
      d.worst_grad = relative;
      d.worst_name = name;
    }
    if (!(relative <= bounds.grad) && ++failures <= 20)
      ADD_FAILURE() << golden.dir << " grad." << name << ": relative L2 " << relative << " > " << bounds.grad
                    << " (norm " << e.reference << ", the net's largest " << largest_norm << ")";
  }
  EXPECT_EQ(failures, 0) << failures << " bf16 gradients differ (first 20 listed)";
  if (std::getenv("ENGINE_PARITY_BF16_LIST")) {  // every tensor's deviation, largest first, for setting bounds
    std::vector<std::pair<double, std::string>> rows;
    for (const auto& [name, e] : bf16.l2) rows.emplace_back(e.difference / std::max(e.reference, 1e-300), name);
    std::sort(rows.rbegin(), rows.rend());
    for (const auto& [relative, name] : rows)
      std::cout << "[bf16] " << relative << " " << name << " norm " << bf16.l2.at(name).reference / largest_norm
                << " rounded f32 " << rounded.l2.at(name).difference / std::max(rounded.l2.at(name).reference, 1e-300)
                << "\n";
  }
  return d;
}

// Prints the worst ratios when the test program ends.
class WorstPrinter : public ::testing::Environment {
 public:
  void TearDown() override { print_worst(); }
};

}  // namespace parity
