// A whole net in bf16 on the CPU (docs/precision.md): densenet_tiny's forward and backward with bf16
// activations (conv, BN, ReLU, pooling, the block buffers' concatenation, the head) against the same net
// in f32. The CPU runs every bf16 kernel by emulation (widen, f32 arithmetic, one rounding per stored
// value), so the difference is bf16 storage rounding alone, accumulated over the net's depth.
// Tolerances, relative L2 (||a - b|| / ||b||), loss within 1e-2 relative in both modes:
//   eval mode (BN on running statistics, a well-conditioned function): logits 2e-2, all parameter
//     gradients together 5e-2, the input's gradient 0.25 (measured: 8e-3, 2.6e-2, 0.12);
//   training mode at random initialisation is ill-conditioned (batch statistics over 8 images of a net
//     whose BNs cancel most of the signal): rounding only the f32 net's input to bf16 already moves the
//     gradients by ~26%. There the bf16 net must stay within 3x that sensitivity (measured ~1.5-2x), and
//     the logits within 6e-2 (measured 3.9e-2).
#include <cmath>
#include <cstdio>
#include <map>

#include "engine/optim.h"
#include "engine/training_step.h"
#include "nets/registry.h"
#include "support/gradcheck.h"

namespace {

using namespace engine;
using nets::Flavor;
using nets::Head;

double relative_l2(const std::vector<float>& actual, const std::vector<float>& expected) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    diff += (double(actual[i]) - expected[i]) * (double(actual[i]) - expected[i]);
    norm += double(expected[i]) * expected[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

struct Pass {
  std::vector<float> logits;
  float loss = 0;
  std::map<std::string, std::vector<float>> grads;
  std::vector<float> image_grad;
};

Pass run(nets::Net& net, const Tensor& images_f32, const Tensor& targets, DType dtype) {
  net.zero_grad();
  const Tensor images = images_f32.to(dtype);
  images.impl()->requires_grad = true;
  const Tensor logits = net.forward(images);
  EXPECT_EQ(logits.dtype(), dtype);
  const Tensor loss = bce_with_logits(logits, targets);
  EXPECT_EQ(loss.dtype(), DType::f32);
  loss.backward();
  Pass p;
  p.logits = logits.to_vector();
  p.loss = loss.item();
  for (const auto& [name, t] : net.named_parameters()) {
    EXPECT_TRUE(t.grad().defined()) << name;
    if (!t.grad().defined()) continue;
    EXPECT_EQ(t.grad().dtype(), DType::f32) << name << ": weight gradients stay f32";
    p.grads[name] = t.grad().to_vector();
  }
  EXPECT_EQ(images.grad().dtype(), dtype);
  p.image_grad = images.grad().to_vector();
  return p;
}

// All parameter gradients as one vector (a per-tensor comparison is meaningless where a gradient is zero
// in exact arithmetic: a BN's gamma feeding only training-mode BNs with beta = 0 is scale-invariant).
std::vector<float> all_grads(const Pass& p) {
  std::vector<float> v;
  for (const auto& [name, g] : p.grads) v.insert(v.end(), g.begin(), g.end());
  return v;
}

struct Deviation {
  double logits, grads, image_grad;
};
Deviation deviation(const Pass& p, const Pass& ref) {
  return {relative_l2(p.logits, ref.logits), relative_l2(all_grads(p), all_grads(ref)),
          relative_l2(p.image_grad, ref.image_grad)};
}

void compare(bool training) {
  Generator gen(21), data(22);
  auto net = nets::make_net("densenet_tiny", Head::gap, Flavor::torch, 64, gen);
  net->train(training);
  const Tensor images = test_support::random_tensor({8, 64, 64, 3}, data, 0.0f, 1.0f);
  const Tensor targets = Tensor::from_vector({8}, {1, 0, 0, 1, 1, 1, 0, 0});
  const Pass f32 = run(*net, images, targets, DType::f32);
  const Pass bf16 = run(*net, images, targets, DType::bf16);
  // The net's own sensitivity: f32 throughout, only the input rounded to bf16.
  const Pass rounded = run(*net, images.to(DType::bf16).to(DType::f32), targets, DType::f32);
  const Deviation d = deviation(bf16, f32), base = deviation(rounded, f32);
  EXPECT_NEAR(bf16.loss, f32.loss, 1e-2 * std::abs(f32.loss));
  if (training) {  // ill-conditioned: bounded by the net's own sensitivity to rounding its input
    EXPECT_LT(d.logits, 6e-2);
    EXPECT_LT(d.logits, 3 * base.logits);
    EXPECT_LT(d.grads, 3 * base.grads);
    EXPECT_LT(d.image_grad, 3 * base.image_grad);
  } else {
    EXPECT_LT(d.logits, 2e-2);
    EXPECT_LT(d.grads, 5e-2);
    EXPECT_LT(d.image_grad, 0.25);
  }
  std::printf("%s: rel L2 bf16 vs f32 (f32 on the bf16-rounded input vs f32): logits %.3g (%.3g), all "
              "parameter grads %.3g (%.3g), input grad %.3g (%.3g); loss %.6g vs %.6g\n",
              training ? "training" : "eval", d.logits, base.logits, d.grads, base.grads, d.image_grad,
              base.image_grad, bf16.loss, f32.loss);
}

TEST(Bf16Net, DenseNetTinyForwardAndBackwardFollowF32) {
  compare(true);
  compare(false);
}

}  // namespace

// ---- Training in bf16 --------------------------------------------------------------------------------

namespace {

// A learnable task: label 1 images carry a brighter red channel (+0.25 on average, under noise).
struct Batch {
  Tensor images, labels;
};
Batch make_batch(Generator& gen, int64_t n, int64_t size) {
  std::vector<float> labels(static_cast<size_t>(n));
  const Tensor noise = test_support::random_tensor({n, size, size, 3}, gen, 0.0f, 1.0f);
  std::vector<float> pixels = noise.to_vector();
  for (int64_t i = 0; i < n; ++i) {
    labels[static_cast<size_t>(i)] = static_cast<float>(i % 2);
    if (i % 2 == 1)
      for (int64_t p = 0; p < size * size; ++p) pixels[static_cast<size_t>((i * size * size + p) * 3)] += 0.25f;
  }
  return {Tensor::from_vector({n, size, size, 3}, pixels), Tensor::from_vector({n}, labels)};
}

// The share of `held_out` a net classifies right (eval mode, logit > 0 for label 1), on the activations
// of `precision` (bf16: the images converted before the forward, as the evaluate app does).
double accuracy(nets::Net& net, const Batch& held_out, Precision precision) {
  net.train(false);
  NoGradGuard no_grad;
  const Tensor images = precision == Precision::bf16 ? held_out.images.to(DType::bf16) : held_out.images;
  const std::vector<float> z = net.forward(images).to_vector(), t = held_out.labels.to_vector();
  int correct = 0;
  for (size_t i = 0; i < z.size(); ++i) correct += (z[i] > 0) == (t[i] > 0.5f);
  return static_cast<double>(correct) / static_cast<double>(z.size());
}

struct TrainingRun {
  std::vector<double> losses;
  double held_out_accuracy = 0;
};

// densenet_tiny from initialisation `seed`, `steps` Adam steps (lr 1e-3) over the cycled `batches`.
TrainingRun train_run(Precision precision, const std::vector<Batch>& batches, const Batch& held_out, int steps,
                      uint64_t seed) {
  Generator gen(seed);
  auto net = nets::make_net("densenet_tiny", Head::gap, Flavor::torch, 32, gen);
  net->train(true);
  ParameterArena arena(net->named_parameters());
  Adam adam(arena, Adam::pytorch(1e-3f));
  StepOptions options;
  options.precision = precision;
  TrainingStep step(*net, arena, &adam, options);
  TrainingRun run;
  for (int s = 0; s < steps; ++s) {
    const Batch& b = batches[static_cast<size_t>(s) % batches.size()];
    const StepResult r = step.run(b.images, b.labels);
    EXPECT_TRUE(r.finite) << "step " << s;
    EXPECT_EQ(r.logits.dtype(), precision == Precision::bf16 ? DType::bf16 : DType::f32);
    run.losses.push_back(r.loss);
  }
  for (const auto& [name, t] : net->named_parameters())
    EXPECT_EQ(t.dtype(), DType::f32) << name << ": the master weights stay f32";
  run.held_out_accuracy = accuracy(*net, held_out, precision);
  return run;
}

double mean_of(const std::vector<double>& v, size_t begin, size_t end) {
  double s = 0;
  for (size_t i = begin; i < end; ++i) s += v[i];
  return s / static_cast<double>(end - begin);
}

// densenet_tiny, 50 Adam steps (lr 1e-3) over 5 cycled batches of 8 images 32x32, from the same
// initialisation, in f32 and in bf16 mixed precision. Bound: the bf16 curve learns as the f32 one does
// (the mean loss of the last 10 steps falls below half the first 10 steps' in both; measured 0.63 ->
// 0.11), its last-10 mean is within 0.05 (absolute) of f32's (measured 0.003), and step by step the two
// stay within 0.15 of each other (measured 0.11: rounding changes the trajectory, not where it goes).
// Held-out accuracy (256 images of the same task neither run trains on, eval mode, each run on its own
// precision's activations): both above 0.85, and bf16 within 0.1 of f32 (measured 0.934 against 0.941).
// One pair of runs differs by the trajectory's chance (over 8 initialisations the per-seed difference
// ranged from -0.047 to +0.035 when the weight gradient was still f32, f32 itself from 0.906 to 0.977),
// so the same comparison over 8 initialisations (seeds 31-38) bounds the means: bf16's within 0.03 of
// f32's (measured 0.942 against 0.944, a difference of 0.002; the standard error of that mean difference
// is about 0.009).
TEST(Bf16Training, DenseNetTinyFollowsTheF32LossCurve) {
  Generator data(32);
  std::vector<Batch> batches;
  for (int i = 0; i < 5; ++i) batches.push_back(make_batch(data, 8, 32));
  const Batch held_out = make_batch(data, 256, 32);  // images neither run trains on
  const int steps = 50;
  const TrainingRun f32_run = train_run(Precision::f32, batches, held_out, steps, 31);
  const TrainingRun bf16_run = train_run(Precision::bf16, batches, held_out, steps, 31);
  const std::vector<double>& f32 = f32_run.losses;
  const std::vector<double>& bf16 = bf16_run.losses;
  const double f32_first = mean_of(f32, 0, 10), f32_last = mean_of(f32, steps - 10, steps);
  const double bf16_first = mean_of(bf16, 0, 10), bf16_last = mean_of(bf16, steps - 10, steps);
  double worst = 0;
  for (int s = 0; s < steps; ++s) worst = std::max(worst, std::abs(bf16[s] - f32[s]));
  std::printf("loss, first 10 / last 10 steps: f32 %.4f / %.4f, bf16 %.4f / %.4f; largest step difference %.4f; "
              "held-out accuracy f32 %.4f, bf16 %.4f\n",
              f32_first, f32_last, bf16_first, bf16_last, worst, f32_run.held_out_accuracy, bf16_run.held_out_accuracy);
  EXPECT_LT(f32_last, 0.5 * f32_first) << "the f32 run learns";
  EXPECT_LT(bf16_last, 0.5 * bf16_first) << "the bf16 run learns";
  EXPECT_NEAR(bf16_last, f32_last, 0.05);
  EXPECT_LT(worst, 0.15);
  EXPECT_GT(f32_run.held_out_accuracy, 0.85);
  EXPECT_GT(bf16_run.held_out_accuracy, 0.85);
  EXPECT_NEAR(bf16_run.held_out_accuracy, f32_run.held_out_accuracy, 0.1);

  // The held-out accuracy over 8 initialisations (the one above among them).
  double f32_sum = f32_run.held_out_accuracy, bf16_sum = bf16_run.held_out_accuracy;
  const uint64_t seeds = 8;
  for (uint64_t seed = 32; seed < 31 + seeds; ++seed) {
    f32_sum += train_run(Precision::f32, batches, held_out, steps, seed).held_out_accuracy;
    bf16_sum += train_run(Precision::bf16, batches, held_out, steps, seed).held_out_accuracy;
  }
  const double f32_mean = f32_sum / seeds, bf16_mean = bf16_sum / seeds;
  std::printf("held-out accuracy over %d initialisations: f32 %.4f, bf16 %.4f\n", static_cast<int>(seeds), f32_mean,
              bf16_mean);
  EXPECT_NEAR(bf16_mean, f32_mean, 0.03);
}

}  // namespace

namespace {

// Inception-ResNet-v2's residual blocks (add, scale), branch concatenations and 'same' pooling in bf16:
// a forward and backward at its smallest input, eval mode, against f32: every op of the net runs in bf16.
// The logits within 2e-2 relative L2 (measured 1.1e-2; every stage's features within 1.4e-2). The
// gradients are ill-conditioned here: with two images of opposite labels and sigmoid(z) near 1/2 the two
// BCE gradients nearly cancel in every weight gradient, so the logits' 1% moves the late layers'
// gradients by ~13% (rounding the f32 net's input alone moves the logits 8x less, and those gradients
// 8x less). Bounds: all parameter gradients together 0.3 (measured 0.15), the input's gradient 0.6
// (measured 0.35); the op table holds each op's bf16 backward to its rounding.
TEST(Bf16Net, InceptionResNetV2ForwardAndBackwardFollowF32) {
  Generator gen(41), data(42);
  auto net = nets::make_net("inception_resnet_v2", Head::gap, Flavor::keras, 75, gen);
  net->train(false);
  const Tensor images = test_support::random_tensor({2, 75, 75, 3}, data, 0.0f, 1.0f);
  const Tensor targets = Tensor::from_vector({2}, {1, 0});
  const Pass f32 = run(*net, images, targets, DType::f32);
  const Pass bf16 = run(*net, images, targets, DType::bf16);
  const Pass rounded = run(*net, images.to(DType::bf16).to(DType::f32), targets, DType::f32);
  const Deviation d = deviation(bf16, f32), base = deviation(rounded, f32);
  std::printf("inception_resnet_v2 eval, bf16 vs f32 (f32 on the rounded input vs f32): logits %.3g (%.3g), all "
              "parameter grads %.3g (%.3g), input grad %.3g (%.3g)\n",
              d.logits, base.logits, d.grads, base.grads, d.image_grad, base.image_grad);
  EXPECT_LT(d.logits, 2e-2);
  EXPECT_LT(d.grads, 0.3);
  EXPECT_LT(d.image_grad, 0.6);
}

}  // namespace

namespace {

// The memory-efficient DenseNet (every BN+ReLU recomputed in backward) in bf16: the recompute repeats
// the forward's bf16 roundings, so logits and every gradient equal the plain graph's bit for bit.
TEST(Bf16Net, MemoryEfficientDenseNetTinyEqualsThePlainGraph) {
  Generator gen_a(51), gen_b(51), data(52);
  nets::NetOptions efficient;
  efficient.memory_efficient = true;
  auto plain = nets::make_net("densenet_tiny", Head::gap, Flavor::torch, 32, gen_a);
  auto recomputing = nets::make_net("densenet_tiny", Head::gap, Flavor::torch, 32, gen_b, efficient);
  plain->train(true);
  recomputing->train(true);
  const Tensor images = test_support::random_tensor({4, 32, 32, 3}, data, 0.0f, 1.0f);
  const Tensor targets = Tensor::from_vector({4}, {1, 0, 0, 1});
  const Pass a = run(*plain, images, targets, DType::bf16);
  const Pass b = run(*recomputing, images, targets, DType::bf16);
  EXPECT_EQ(a.logits, b.logits);
  EXPECT_EQ(a.image_grad, b.image_grad);
  for (const auto& [name, g] : a.grads) EXPECT_EQ(g, b.grads.at(name)) << name;
}

}  // namespace
