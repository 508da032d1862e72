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
#include "engine/serialize.h"
#include "nets/registry.h"

namespace {

struct Args {
  std::string arch, head = "imagenet", weights, input, output, mode = "eval", device = "cpu", flavor = "keras";
  bool skip_head = false;
  int64_t input_size = 0;  // 0: the input's height
  uint64_t seed = 0;
};

void usage(FILE* out) {
  std::fprintf(out,
               "usage: forward --arch A --input X.safetensors --output Y.safetensors [--weights W.safetensors]\n"
               "               [--head flatten|gap|imagenet] [--mode eval|train] [--device cpu|cuda|auto]\n"
               "               [--flavor keras|torch] [--skip-head] [--input-size S] [--seed N]\n"
               "  A: densenet121 | densenet169 | densenet201 | inception_resnet_v2\n"
               "  X holds \"input\", NHWC [N, H, W, 3], preprocessed. Y gets \"logits\" and \"act.<stage>\" for\n"
               "  every stage (plus \"state.<name>\" BN statistics in train mode), written atomically.\n"
               "  Without --weights the net keeps its random initialisation (seed --seed): a test mode only.\n"
               "  --head defaults to imagenet, --mode to eval, --device to cpu, --flavor to keras (BN momentum\n"
               "  and variance convention of train mode; DenseNet's eps: keras 1.001e-5, torch 1e-5).\n"
               "  --skip-head loads the backbone only (a file without a head, or a head of another shape).\n"
               "  --input-size sizes the flatten head (default: the input's height).\n");
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      usage(stdout);
      std::exit(0);
    }
    if (flag == "--skip-head") {
      a.skip_head = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "error: %s needs a value (see --help)\n", flag.c_str());
      std::exit(2);
    }
    const std::string value = argv[++i];
    if (flag == "--arch") a.arch = value;
    else if (flag == "--head") a.head = value;
    else if (flag == "--weights") a.weights = value;
    else if (flag == "--input") a.input = value;
    else if (flag == "--output") a.output = value;
    else if (flag == "--mode") a.mode = value;
    else if (flag == "--device") a.device = value;
    else if (flag == "--flavor") a.flavor = value;
    else if (flag == "--input-size") a.input_size = std::atoll(value.c_str());
    else if (flag == "--seed") a.seed = std::strtoull(value.c_str(), nullptr, 10);
    else {
      std::fprintf(stderr, "error: unknown flag %s (see --help)\n", flag.c_str());
      std::exit(2);
    }
  }
  std::string missing;
  if (a.arch.empty()) missing += " --arch";
  if (a.input.empty()) missing += " --input";
  if (a.output.empty()) missing += " --output";
  if (!missing.empty()) {
    std::fprintf(stderr, "error: missing%s\n", missing.c_str());
    usage(stderr);
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
      ENGINE_FAIL() << args.input << " has no tensor named \"input\" (it has: " << (names.empty() ? "nothing" : names)
                    << "); write the NHWC [N, H, W, 3] batch under that name";
    }
    const Tensor images_cpu = it->second;
    ENGINE_CHECK(images_cpu.ndim() == 4 && images_cpu.size(3) == 3 && images_cpu.size(0) > 0)
        << args.input << ": \"input\" must be NHWC [N, H, W, 3] with N >= 1, got " << shape_str(images_cpu.shape())
        << " (an NCHW [N, 3, H, W] batch must be transposed to NHWC first)";

    const nets::Head head = nets::parse_head(args.head);
    const nets::Flavor flavor = nets::parse_flavor(args.flavor);
    int64_t input_size = args.input_size > 0 ? args.input_size : images_cpu.size(1);
    if (head == nets::Head::flatten && args.input_size == 0)
      ENGINE_CHECK(images_cpu.size(1) == images_cpu.size(2))
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
