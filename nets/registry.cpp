// make_net and load_weights (see registry.h).
#include "nets/registry.h"

#include <cctype>
#include <functional>
#include <map>

#include "engine/serialize.h"
#include "nets/densenet.h"
#include "nets/inception_resnet_v2.h"

namespace nets {

using namespace engine;

namespace {

using Factory = std::function<std::shared_ptr<Net>(const std::string& arch, Head head, Flavor flavor,
                                                   int64_t input_size, Generator& gen, const NetOptions& options)>;

struct ArchEntry {
  std::string name;
  int64_t default_input_size;
  bool study;  // false: a test net, left out of arch_names()
  Factory make;
};

// A DenseNet of `config(flavor)` with the options applied.
Factory densenet(DenseNetConfig (*config)(Flavor)) {
  return [config](const std::string& arch, Head head, Flavor flavor, int64_t input_size, Generator& gen,
                  const NetOptions& options) {
    DenseNetConfig c = config(flavor);
    c.memory_efficient = options.memory_efficient;
    return std::make_shared<DenseNet>(arch, c, head, input_size, gen);
  };
}

DenseNetConfig densenet_tiny(Flavor flavor) {
  DenseNetConfig c = DenseNetConfig::densenet121(flavor);
  c.block_layers = {2, 2, 2, 2};
  c.growth = 8;
  c.bottleneck = 32;
  c.stem_channels = 16;
  return c;
}

const std::vector<ArchEntry>& registry() {
  static const std::vector<ArchEntry> entries{
      {"densenet121", 224, true, densenet(&DenseNetConfig::densenet121)},
      {"densenet169", 224, true, densenet(&DenseNetConfig::densenet169)},
      {"densenet201", 224, true, densenet(&DenseNetConfig::densenet201)},
      {"inception_resnet_v2", 299, true,
       [](const std::string&, Head head, Flavor flavor, int64_t input_size, Generator& gen, const NetOptions&) {
         return std::make_shared<InceptionResNetV2>(flavor, head, input_size, gen);
       }},
      {"densenet_tiny", 224, false, densenet(&densenet_tiny)},
  };
  return entries;
}

std::vector<std::string> names_of(bool study_only) {
  std::vector<std::string> names;
  for (const ArchEntry& e : registry())
    if (e.study || !study_only) names.push_back(e.name);
  return names;
}

const ArchEntry& find_arch(const std::string& arch) {
  for (const ArchEntry& e : registry())
    if (e.name == arch) return e;
  std::string list;
  for (const std::string& n : all_arch_names()) list += (list.empty() ? "" : ", ") + n;
  ENGINE_USER_FAIL() << "unknown architecture '" << arch << "'; known: " << list;
}

}  // namespace

const std::vector<std::string>& arch_names() {
  static const std::vector<std::string> names = names_of(/*study_only=*/true);
  return names;
}

const std::vector<std::string>& all_arch_names() {
  static const std::vector<std::string> names = names_of(/*study_only=*/false);
  return names;
}

int64_t default_input_size(const std::string& arch) { return find_arch(arch).default_input_size; }

std::shared_ptr<Net> make_net(const std::string& arch, Head head, Flavor flavor, int64_t input_size, Generator& gen,
                              const NetOptions& options) {
  return find_arch(arch).make(arch, head, flavor, input_size, gen, options);
}

std::string normalized_arch(const std::string& name) {
  std::string out;
  for (char c : name)
    if (std::isalnum(static_cast<unsigned char>(c))) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Module::LoadReport load_weights(Net& net, const std::string& path, bool skip_head) {
  std::map<std::string, std::string> metadata;
  const std::map<std::string, Tensor> tensors = load_tensors(path, &metadata);
  const auto arch = metadata.find("arch");
  if (arch != metadata.end())
    ENGINE_USER_CHECK(normalized_arch(arch->second) == normalized_arch(net.arch()))
        << path << " holds weights for '" << arch->second << "', but the net is " << net.arch()
        << "; pass the weights converted for " << net.arch() << " (weights_tools/)";
  try {
    return net.load_state(tensors, skip_head ? std::vector<std::string>{net.head_prefix()} : std::vector<std::string>{});
  } catch (const Error& e) {
    // Advice when the backbone is all there and only the head is in the way.
    const std::string head = net.head_prefix();
    bool file_has_head = false;
    for (const auto& [name, t] : tensors)
      if (name.compare(0, head.size(), head) == 0) file_has_head = true;
    bool backbone_complete = true;
    for (const auto& [name, t] : net.state())
      if (name.compare(0, head.size(), head) != 0) {
        auto f = tensors.find(name);
        if (f == tensors.end() || f->second.shape() != t.shape()) backbone_complete = false;
      }
    std::string advice;
    if (!skip_head && backbone_complete)
      advice = file_has_head ? "\n  the backbone matches; the file's head does not fit this net's " + head_name(net.head()) +
                                   " head: load with skip_head (--skip-head) to keep a fresh head"
                             : "\n  the backbone matches and the file has no head (e.g. a Keras _notop file): load "
                               "with skip_head (--skip-head)";
    ENGINE_USER_FAIL() << "loading " << path << " into " << net.arch() << " (" << head_name(net.head()) << " head): "
                       << e.what() << advice;
  }
}

}  // namespace nets
