// demo_tiny_cnn: trains the tiny CNN (nets/tiny_cnn.h) on the generated blob task (data/toy_blobs.h)
// with Adam and binary cross-entropy, printing the loss per epoch and the held-out accuracy.
// The first end-to-end run of the engine: every op, the autograd tape, the arena and the optimizer.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "data/toy_blobs.h"
#include "engine/engine.h"
#include "engine/training_step.h"
#include "nets/tiny_cnn.h"

namespace {

struct Args {
  std::string device = "auto";
  int epochs = 8;
  int64_t train_images = 512, test_images = 256, size = 24, batch = 32, width = 8;
  float lr = 1e-2f;
  uint64_t seed = 1;
  int threads = 0;
};

void usage() {
  std::printf(
      "usage: demo_tiny_cnn [--device auto|cpu|cuda] [--epochs N] [--images N] [--size PX] [--batch N]\n"
      "                     [--lr X] [--seed N] [--threads N]\n"
      "Trains a small CNN on generated images (a bright square present or not) and prints the loss per\n"
      "epoch and the held-out accuracy. Defaults: auto, 8 epochs, 512 images of 24 px, batch 32, Adam 1e-2.\n");
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      usage();
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "error: %s needs a value (see --help)\n", flag.c_str());
      std::exit(2);
    }
    const char* value = argv[++i];
    if (flag == "--device") a.device = value;
    else if (flag == "--epochs") a.epochs = std::atoi(value);
    else if (flag == "--images") a.train_images = std::atoll(value);
    else if (flag == "--size") a.size = std::atoll(value);
    else if (flag == "--batch") a.batch = std::atoll(value);
    else if (flag == "--lr") a.lr = std::strtof(value, nullptr);
    else if (flag == "--seed") a.seed = std::strtoull(value, nullptr, 10);
    else if (flag == "--threads") a.threads = std::atoi(value);
    else {
      std::fprintf(stderr, "error: unknown flag %s (see --help)\n", flag.c_str());
      std::exit(2);
    }
  }
  if (a.epochs < 1 || a.train_images < a.batch || a.batch < 1 || a.size < 8) {
    std::fprintf(stderr, "error: need epochs >= 1, batch >= 1, images >= batch, size >= 8\n");
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
    Adam adam(arena, Adam::pytorch(args.lr));
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
        ENGINE_CHECK(result.finite) << "the training loss became " << result.loss << "; try a lower --lr";
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
