// forward: runs one of the study's nets on an input batch read from a safetensors file and writes the
// logits and every stage activation to another, so that anyone can compare our nets with torchvision, timm
// or Keras at any input size.
//
//   forward --arch densenet201 --head imagenet --weights W.safetensors --input X.safetensors
//           --output Y.safetensors [--mode eval|train] [--device cpu|cuda|auto] [--flavor keras|torch]
//           [--skip-head] [--input-size S] [--seed N]
//
// X holds "input": NHWC [N, H, W, 3] images, already preprocessed. Y receives "logits" [N, classes] and
// "act.<stage>" for each stage (DenseNet: stem, block1..block4, features; Inception-ResNet-v2: stem,
// mixed_5b, block35, mixed_6a, block17, mixed_7a, block8, features), NHWC; in train mode also
// "state.<name>" for every BN running statistic after the pass. Y is written atomically.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/engine.h"
#include "experiment/flags.h"
#include "engine/serialize.h"
#include "nets/registry.h"

namespace {

struct Args {
  std::string arch, head = "imagenet", weights, input, output, mode = "eval", device = "cpu", flavor = "keras";
  bool skip_head = false;
  int64_t input_size = 0;  // 0: the input's height
  uint64_t seed = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  experiment::FlagParser flags(
      "forward",
      "Runs a net on X's \"input\" (NHWC [N, H, W, 3], preprocessed) and writes \"logits\" and \"act.<stage>\" for "
      "every stage (plus \"state.<name>\" BN statistics in train mode) to Y, atomically. Without --weights the net "
      "keeps its random initialisation (seed --seed): a test mode only.");
  flags.add("--arch", &a.arch, "densenet121 | densenet169 | densenet201 | inception_resnet_v2 (required)", "A");
  flags.add("--input", &a.input, "safetensors file holding \"input\" (required)", "X");
  flags.add("-o,--output", &a.output, "safetensors file to write (required)", "Y");
  flags.add("--weights", &a.weights, "converted weights (safetensors)", "W");
  flags.add("--head", &a.head, "flatten | gap | imagenet", "H");
  flags.add("--mode", &a.mode, "eval | train", "M");
  flags.add("--device", &a.device, "cpu | cuda | auto", "D");
  flags.add("--flavor", &a.flavor, "BN convention of train mode and DenseNet's eps: keras (1.001e-5) | torch (1e-5)", "F");
  flags.add_switch("--skip-head", &a.skip_head, "load the backbone only (a file without a head, or another head)");
  flags.add("--input-size", &a.input_size, "sizes the flatten head; 0: the input's height", "S");
  flags.add("--seed", &a.seed, "seed of the random initialisation");
  if (!experiment::parse_flags_or_exit(flags, argc, argv)) std::exit(0);
  std::string missing;
  if (a.arch.empty()) missing += " --arch";
  if (a.input.empty()) missing += " --input";
  if (a.output.empty()) missing += " --output";
  if (!missing.empty()) {
    std::fprintf(stderr, "error: missing%s (see --help)\n", missing.c_str());
    std::exit(2);
  }
  if (a.mode != "eval" && a.mode != "train") {
    std::fprintf(stderr, "error: --mode must be eval or train, got '%s'\n", a.mode.c_str());
    std::exit(2);
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  try {
    using namespace engine;
    // The input batch.
    std::map<std::string, Tensor> inputs = load_tensors(args.input);
    auto it = inputs.find("input");
    if (it == inputs.end()) {
      std::string names;
      for (const auto& [name, t] : inputs) names += (names.empty() ? "" : ", ") + name;
      ENGINE_USER_FAIL() << args.input << " has no tensor named \"input\" (it has: " << (names.empty() ? "nothing" : names)
                         << "); write the NHWC [N, H, W, 3] batch under that name";
    }
    const Tensor images_cpu = it->second;
    ENGINE_USER_CHECK(images_cpu.ndim() == 4 && images_cpu.size(3) == 3 && images_cpu.size(0) > 0)
        << args.input << ": \"input\" must be NHWC [N, H, W, 3] with N >= 1, got " << shape_str(images_cpu.shape())
        << " (an NCHW [N, 3, H, W] batch must be transposed to NHWC first)";

    const nets::Head head = nets::parse_head(args.head);
    const nets::Flavor flavor = nets::parse_flavor(args.flavor);
    int64_t input_size = args.input_size > 0 ? args.input_size : images_cpu.size(1);
    if (head == nets::Head::flatten && args.input_size == 0)
      ENGINE_USER_CHECK(images_cpu.size(1) == images_cpu.size(2))
          << "the flatten head needs square inputs or an explicit --input-size; got "
          << shape_str(images_cpu.shape());
    const Device device = select_device(args.device);

    Generator gen(args.seed);
    auto net = nets::make_net(args.arch, head, flavor, input_size, gen);
    std::string weights_note = args.weights;
    if (args.weights.empty()) {
      weights_note = "random (seed " + std::to_string(args.seed) + ")";
      std::fprintf(stderr,
                   "WARNING: no --weights given: %s runs with RANDOM weights (seed %llu). Its outputs are only\n"
                   "WARNING: good for testing shapes and plumbing; pass --weights W.safetensors for real ones.\n",
                   args.arch.c_str(), static_cast<unsigned long long>(args.seed));
    } else {
      const Module::LoadReport report = nets::load_weights(*net, args.weights, args.skip_head);
      std::fprintf(stderr, "loaded %zu tensors from %s%s\n", report.loaded.size(), args.weights.c_str(),
                   report.skipped.empty() ? "" : " (head skipped: it keeps its random initialisation)");
    }
    net->to(device);
    net->train(args.mode == "train");

    NoGradGuard no_grad;
    nets::StageMap stages;
    const Tensor logits = net->forward_with_stages(images_cpu.to(device), stages);

    NamedTensors out{{"logits", logits}};
    for (const std::string& stage : net->stage_names()) out.emplace_back("act." + stage, stages.at(stage));
    if (args.mode == "train")
      for (const auto& [name, t] : net->named_buffers()) out.emplace_back("state." + name, t);
    save_tensors(args.output, out,
                 {{"arch", args.arch}, {"head", args.head}, {"flavor", args.flavor}, {"mode", args.mode},
                  {"weights", weights_note}, {"device", device.str()}});
    std::fprintf(stderr, "%s %s on %s: input %s -> logits %s; wrote %zu tensors to %s\n", args.arch.c_str(),
                 args.mode.c_str(), device.str().c_str(), shape_str(images_cpu.shape()).c_str(),
                 shape_str(logits.shape()).c_str(), out.size(), args.output.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
