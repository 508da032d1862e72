// demo_tiny_cnn: trains the tiny CNN (nets/tiny_cnn.h) on the generated blob task (data/toy_blobs.h)
// with Adam and binary cross-entropy, printing the loss per epoch and the held-out accuracy.
// The first end-to-end run of the engine: every op, the autograd tape, the arena and the optimizer.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "data/toy_blobs.h"
#include "engine/engine.h"
#include "engine/training_step.h"
#include "experiment/flags.h"
#include "nets/tiny_cnn.h"

namespace {

struct Args {
  std::string device = "auto";
  int epochs = 8;
  int64_t train_images = 512, test_images = 256, size = 24, batch = 32, width = 8;
  double lr = 1e-2;
  uint64_t seed = 1;
  int threads = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  experiment::FlagParser flags(
      "demo_tiny_cnn",
      "Trains a small CNN on generated images (a bright square present or not) with Adam and prints the loss\n"
      "per epoch and the held-out accuracy (on 256 more images).");
  flags.add("--device", &a.device, "auto | cpu | cuda", "D");
  flags.add("-e,--epochs", &a.epochs, "training epochs", 1, 100000);
  flags.add("--images", &a.train_images, "training images (at least --batch)", 1, 1000000);
  flags.add("--size", &a.size, "image side, in pixels", 8, 1024, "PX");
  flags.add("-b,--batch", &a.batch, "images per batch", 1, 65536);
  flags.add("--lr", &a.lr, "Adam learning rate (greater than 0)", "X");
  flags.add("--seed", &a.seed, "seed of the images and the initialisation");
  flags.add("-j,--threads", &a.threads, "CPU threads (0: OMP_NUM_THREADS or every core)", 0, 1024);
  if (!experiment::parse_flags_or_exit(flags, argc, argv)) std::exit(0);
  std::string error;
  const float lr = static_cast<float>(a.lr);  // Adam's hyperparameters are floats
  if (!(lr > 0) || !std::isfinite(lr)) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", a.lr);
    error = std::string("--lr must be a positive float, got ") + text;
  }
  if (a.train_images < a.batch)
    error = "--images (" + std::to_string(a.train_images) + ") must be at least --batch (" + std::to_string(a.batch) + ")";
  if (!error.empty()) {
    std::fprintf(stderr, "error: %s (see --help)\n", error.c_str());
    std::exit(2);
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace engine;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines appear as they happen, in order with stderr
  const Args args = parse(argc, argv);
  try {
    if (args.threads > 0) engine::set_num_threads(args.threads);
    const Device device = select_device(args.device);
    Generator data_gen(args.seed, 0), init_gen(args.seed, 1);
    const data::ToyBatch train = data::make_toy_blobs(args.train_images, args.size, data_gen);
    const data::ToyBatch test = data::make_toy_blobs(args.test_images, args.size, data_gen);

    nets::TinyCnn net(args.width, init_gen);
    net.to(device);
    ParameterArena arena(net.named_parameters());
    Adam adam(arena, Adam::pytorch(static_cast<float>(args.lr)));
    TrainingStep step(net, arena, &adam);
    std::printf("tiny CNN, %lld parameters, on %s; %lld training images of %lldx%lld, batch %lld\n",
                static_cast<long long>(net.num_parameters()), device.str().c_str(),
                static_cast<long long>(args.train_images), static_cast<long long>(args.size),
                static_cast<long long>(args.size), static_cast<long long>(args.batch));

    const int64_t steps = args.train_images / args.batch;
    for (int epoch = 1; epoch <= args.epochs; ++epoch) {
      const auto start = std::chrono::steady_clock::now();
      double loss_sum = 0;
      net.train();
      for (int64_t s = 0; s < steps; ++s) {
        const int64_t b = s * args.batch;
        const Tensor images = train.images.slice(0, b, b + args.batch).to(device);
        const Tensor labels = train.labels.slice(0, b, b + args.batch).to(device);
        const StepResult result = step.run(images, labels);
        ENGINE_USER_CHECK(result.finite) << "the training loss became " << result.loss << "; try a lower --lr";
        loss_sum += result.loss;
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("epoch %2d  train loss %.4f  %.0f images/s\n", epoch, loss_sum / steps,
                  static_cast<double>(steps * args.batch) / seconds);
    }

    net.eval();
    NoGradGuard no_grad;
    const std::vector<float> logits = net.forward(test.images.to(device)).to_vector();
    const std::vector<float> labels = test.labels.to_vector();
    int correct = 0;
    for (size_t i = 0; i < logits.size(); ++i) correct += (logits[i] > 0) == (labels[i] > 0.5f);
    std::printf("held-out accuracy %.1f%% on %zu images (chance 50%%)\n", 100.0 * correct / logits.size(),
                logits.size());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
