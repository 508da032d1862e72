// End to end: the tiny CNN, built from the engine's ops, learns the generated task (the loss falls and
// the held-out accuracy is far above chance).
#include "data/toy_blobs.h"
#include "engine/training_step.h"
#include "nets/tiny_cnn.h"
#include "support/gradcheck.h"

namespace {

using namespace engine;

float accuracy(const Tensor& logits, const Tensor& labels) {
  const std::vector<float> z = logits.to_vector(), t = labels.to_vector();
  int correct = 0;
  for (size_t i = 0; i < z.size(); ++i) correct += (z[i] > 0) == (t[i] > 0.5f);
  return static_cast<float>(correct) / static_cast<float>(z.size());
}

TEST(EndToEnd, TinyCnnLearnsTheBlobTask) {
  Generator data_gen(1, 0), init_gen(1, 1);
  const data::ToyBatch train = data::make_toy_blobs(256, 16, data_gen);
  const data::ToyBatch test = data::make_toy_blobs(128, 16, data_gen);
  nets::TinyCnn net(8, init_gen);
  ParameterArena arena(net.named_parameters());
  Adam adam(arena, Adam::pytorch(1e-2f));
  TrainingStep step(net, arena, &adam);

  const int64_t batch = 32;
  float first_loss = 0, last_loss = 0;
  for (int epoch = 0; epoch < 6; ++epoch) {
    double epoch_loss = 0;
    for (int64_t b = 0; b < 256; b += batch) {
      const StepResult result = step.run(train.images.slice(0, b, b + batch), train.labels.slice(0, b, b + batch));
      ASSERT_TRUE(result.finite) << "epoch " << epoch << ", batch at " << b;
      epoch_loss += result.loss;
    }
    epoch_loss /= 256 / batch;
    if (epoch == 0) first_loss = static_cast<float>(epoch_loss);
    last_loss = static_cast<float>(epoch_loss);
  }
  EXPECT_LT(last_loss, 0.5f * first_loss) << "first epoch " << first_loss << ", last " << last_loss;
  net.eval();
  NoGradGuard no_grad;
  const float acc = accuracy(net.forward(test.images), test.labels);
  EXPECT_GT(acc, 0.85f) << "held-out accuracy";
}

}  // namespace
