// The way back out: our checkpoints exported to torchvision, timm, Keras and ONNX (weights_tools/export.py).
// For DenseNet-121 and Inception-ResNet-v2, each with the study's flatten head (Keras flavour) and the gap
// head (torch flavour), a checkpoint with random weights is written as the trainer writes one, with our
// eval logits on a fixed batch; weights_tools.export_check exports it to every target, loads the result in
// the framework itself (torchvision / timm, keras.models.load_model, onnxruntime), runs it and compares:
// relative L2 error of the logits <= 1e-5 (torchvision, timm, Keras), 1e-4 (ONNX). It also converts the
// written files back with weights_tools.convert and expects the checkpoint's weights bit for bit.
// Skips without ENGINE_PYTHON (a python with torch, timm, keras and onnxruntime; scripts/test.sh sets it).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "data/io_util.h"
#include "engine/engine.h"
#include "engine/serialize.h"
#include "experiment/run_files.h"
#include "support/gradcheck.h"
#include "support/temp_path.h"

namespace {

using engine::Tensor;

struct ExportCase {
  std::string arch, head, flavor;
  int64_t input_size;  // the smallest size whose last feature grid is 2x2 (a flatten head with a layout)
};

// Random BN statistics, scales and shifts (the initialisation's are 0, 1 and 0, which would hide a swap),
// and random biases; convolution and linear weights keep their random initialisation.
void randomise_state(const nets::Net& net, engine::Generator& gen) {
  for (const auto& [name, t] : net.state()) {
    if (t.ndim() != 1) continue;
    const auto ends_with = [&](const std::string& suffix) {
      return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    float low = -0.2f, high = 0.2f;  // running_mean, BN beta, biases
    if (ends_with("running_var")) low = 0.5f, high = 1.5f;
    else if (ends_with(".weight")) low = 0.7f, high = 1.3f;  // BN gamma
    t.copy_from(test_support::random_tensor(t.shape(), gen, low, high));
  }
}

// Writes DIR/<arch>_<head>.safetensors (a checkpoint) and DIR/<arch>_<head>.expected.safetensors ("input":
// NHWC [2, S, S, 3] standard normal, "logits": ours in eval mode); returns the checkpoint's path.
std::string write_case(const std::string& dir, const ExportCase& c, uint64_t seed) {
  experiment::TrainOptions o;
  o.arch = c.arch;
  o.head = c.head;
  o.flavor = c.flavor;
  o.input_size = c.input_size;
  o.preprocess = c.head == "flatten" ? "study" : (c.arch == "inception_resnet_v2" ? "tf" : "torch");
  o.seed = seed;
  auto net = experiment::build_net(o.arch, nets::parse_head(o.head), nets::parse_flavor(o.flavor), o.input_size, seed);
  engine::Generator gen(seed, 7);
  randomise_state(*net, gen);
  engine::ParameterArena arena(net->named_parameters());
  engine::Adam adam(arena, engine::Adam::keras(1e-5f));
  const std::string stem = dir + "/" + c.arch + "_" + c.head;
  experiment::write_checkpoint(stem + ".safetensors", *net, adam, o, {});

  std::vector<float> values(2 * c.input_size * c.input_size * 3);
  for (float& v : values) v = gen.normal();
  const Tensor images = Tensor::from_vector({2, c.input_size, c.input_size, 3}, values);
  net->eval();
  engine::NoGradGuard no_grad;
  const Tensor logits = net->forward(images);
  engine::save_tensors(stem + ".expected.safetensors", {{"input", images}, {"logits", logits}});
  return stem + ".safetensors";
}

class Export : public test_support::TempDirTest {
 protected:
  void check(const std::vector<ExportCase>& cases) {
    const char* python = std::getenv("ENGINE_PYTHON");
    if (!python || !*python)
      GTEST_SKIP() << "set ENGINE_PYTHON to the python of scripts/lib/python_env.sh (torch, timm, keras, onnxruntime); "
                      "scripts/test.sh does";
    const std::string quoted = "'" + std::string(python) + "'";
    if (std::system((quoted + " -c 'import torchvision, timm, keras, onnxruntime' >/dev/null 2>&1").c_str()) != 0)
      GTEST_SKIP() << "ENGINE_PYTHON (" << python << ") cannot import torchvision, timm, keras and onnxruntime; "
                   << "source scripts/lib/python_env.sh and run engine_python_env";
    std::string command = "cd '" ENGINE_SOURCE_DIR "' && KERAS_BACKEND=jax " + quoted +
                          " -m weights_tools.export_check --work '" + dir_ + "/exports'";
    uint64_t seed = 11;
    for (const ExportCase& c : cases) command += " '" + write_case(dir_, c, seed++) + "'";
    const std::string log = dir_ + "/export_check.log";
    const int status = std::system((command + " >'" + log + "' 2>&1").c_str());
    const std::string output = data::read_file_text(log);
    std::printf("%s", output.c_str());
    EXPECT_EQ(status, 0) << "weights_tools.export_check failed:\n" << output;
  }
};

TEST_F(Export, DenseNet121ToTorchvisionKerasAndOnnx) {
  check({{"densenet121", "flatten", "keras", 64}, {"densenet121", "gap", "torch", 64}});
}

TEST_F(Export, InceptionResNetV2ToTimmKerasAndOnnx) {
  check({{"inception_resnet_v2", "flatten", "keras", 107}, {"inception_resnet_v2", "gap", "torch", 107}});
}

}  // namespace
