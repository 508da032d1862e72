// Building the study's nets by name and loading converted weights into them.
//
//   make_net("densenet201", Head::flatten, Flavor::keras, 224, gen)   -> the study's DenseNet-201
//   make_net("inception_resnet_v2", Head::imagenet, Flavor::torch, 299, gen)
//   load_weights(*net, "densenet201_imagenet.safetensors", /*skip_head=*/true)
//
// Weight files are safetensors with our names and layouts (weights_tools/ converts Keras, torchvision and
// timm files to them); the optional metadata key "arch" names the architecture they were converted for.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nets/net.h"

namespace nets {

// The nets a name builds. Each registered architecture is one entry of the table in registry.cpp: its
// name, its default input size and how it is made. The study's four are
//   densenet121, densenet169, densenet201 (DenseNet, nets/densenet.h), inception_resnet_v2;
// "densenet_tiny" (a DenseNet with blocks [2, 2, 2, 2], growth 8, bottleneck 32, stem 16) is registered
// for tests and quick demos only.

// Options of a net that are not its architecture. memory_efficient: the DenseNets recompute every BN+ReLU
// in backward (DenseNetConfig::memory_efficient); Inception-ResNet-v2 has no such mode and ignores it.
struct NetOptions {
  bool memory_efficient = false;
};

// The study's architectures: "densenet121", "densenet169", "densenet201", "inception_resnet_v2".
const std::vector<std::string>& arch_names();
// Every registered architecture: the study's, then the test nets ("densenet_tiny").
const std::vector<std::string>& all_arch_names();
// 224 for DenseNet, 299 for Inception-ResNet-v2 (the ImageNet training sizes).
int64_t default_input_size(const std::string& arch);
// input_size sizes the flatten head (other heads take any size >= the net's minimum). Throws for an
// unknown arch, listing the known ones.
std::shared_ptr<Net> make_net(const std::string& arch, Head head, Flavor flavor, int64_t input_size,
                              engine::Generator& gen, const NetOptions& options = {});

// Loads a weight file into `net`: every tensor name and shape is checked and all mismatches are reported
// at once (engine::Module::load_state). skip_head leaves the head ("classifier." / "classif.") as it is,
// on both sides: an ImageNet backbone under a freshly initialised binary head, as the study does. A file
// whose metadata "arch" names another architecture is refused before anything is compared.
engine::Module::LoadReport load_weights(Net& net, const std::string& path, bool skip_head);

// "DenseNet-201", "densenet_201" -> "densenet201"; "InceptionResNetV2" -> "inceptionresnetv2" (for
// comparing the names that converters write).
std::string normalized_arch(const std::string& name);

}  // namespace nets
