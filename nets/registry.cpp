// make_net and load_weights (see registry.h).
#include "nets/registry.h"

#include <cctype>
#include <map>

#include "engine/serialize.h"
#include "nets/densenet.h"
#include "nets/inception_resnet_v2.h"

namespace nets {

using namespace engine;

const std::vector<std::string>& arch_names() {
  static const std::vector<std::string> names{"densenet121", "densenet169", "densenet201", "inception_resnet_v2"};
  return names;
}

namespace {

std::string known_archs() {
  std::string list;
  for (const std::string& n : arch_names()) list += (list.empty() ? "" : ", ") + n;
  return list;
}

void check_arch(const std::string& arch) {
  for (const std::string& n : arch_names())
    if (n == arch) return;
  ENGINE_FAIL() << "unknown architecture '" << arch << "'; known: " << known_archs();
}

}  // namespace

int64_t default_input_size(const std::string& arch) {
  check_arch(arch);
  return arch == "inception_resnet_v2" ? 299 : 224;
}

std::shared_ptr<Net> make_net(const std::string& arch, Head head, Flavor flavor, int64_t input_size, Generator& gen) {
  check_arch(arch);
  if (arch == "densenet121") return std::make_shared<DenseNet>(arch, DenseNetConfig::densenet121(flavor), head, input_size, gen);
  if (arch == "densenet169") return std::make_shared<DenseNet>(arch, DenseNetConfig::densenet169(flavor), head, input_size, gen);
  if (arch == "densenet201") return std::make_shared<DenseNet>(arch, DenseNetConfig::densenet201(flavor), head, input_size, gen);
  return std::make_shared<InceptionResNetV2>(flavor, head, input_size, gen);
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
    ENGINE_CHECK(normalized_arch(arch->second) == normalized_arch(net.arch()))
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
    ENGINE_FAIL() << "loading " << path << " into " << net.arch() << " (" << head_name(net.head()) << " head): "
                  << e.what() << advice;
  }
}

}  // namespace nets
