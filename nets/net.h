// The common frame of the study's nets (DenseNet, Inception-ResNet-v2): the Net base class (a backbone
// that ends in a feature map, then a head), the head kinds, the batch-norm flavours, named stage
// activations for parity checks, and the per-layer summary (output shape, parameters, MACs).
//
// Heads on the feature map F [N, h, w, C]:
//   flatten  : logits = Linear(h*w*C, 1)(flatten(F))   (the study's Keras Flatten + Dense(1); NHWC order)
//   gap      : logits = Linear(C, 1)(mean_hw(F))       (global average pool, MURA-paper style)
//   imagenet : logits = Linear(C, 1000)(mean_hw(F))    (to prove converted ImageNet weights)
// The head Linear is Glorot-uniform with a zero bias (Keras Dense defaults).
//
// Summary: Net::summary runs one traced forward pass (batch 1, eval, no grad) in which every unit of the
// net adds a row: its module path, output shape, trainable parameters, buffers (BN running statistics)
// and multiply-accumulates of its convolutions and linear layers. Keras counts BN statistics as
// (non-trainable) parameters, so Keras's "total params" = parameters + buffers.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"

namespace nets {

enum class Head { flatten, gap, imagenet };
// Batch-norm conventions of the frameworks the weights come from (docs/reference.md section 3):
//   keras: moving = 0.99 moving + 0.01 batch, biased variance (DenseNet eps 1.001e-5, IRv2 1e-3)
//   torch: running = 0.9 running + 0.1 batch, unbiased variance (DenseNet eps 1e-5, IRv2 1e-3)
enum class Flavor { keras, torch };

Head parse_head(const std::string& name);        // "flatten" | "gap" | "imagenet"; clear error otherwise
std::string head_name(Head head);
Flavor parse_flavor(const std::string& name);    // "keras" | "torch"
std::string flavor_name(Flavor flavor);

// Named activations of a forward pass ("stem", "block1", ..., "features").
using StageMap = std::map<std::string, engine::Tensor>;

struct SummaryRow {
  std::string name;      // module path, e.g. "features.denseblock1.denselayer1", "repeat.0.branch1.1"
  std::string kind;      // what the unit is, e.g. "dense layer", "conv-bn-relu 3x3/2"
  engine::Shape output;  // output shape of the traced pass (batch 1)
  int64_t parameters = 0;  // trainable elements
  int64_t buffers = 0;     // non-trainable elements (BN running statistics)
  int64_t macs = 0;        // multiply-accumulates per image (convolutions and linear layers)
};

// A module of a net that knows its own dotted path in the tree (assigned once the net is built), so
// that it can name its summary rows.
class Layer : public engine::Module {
 public:
  const std::string& path() const { return path_; }
  void set_path(const std::string& path) { path_ = path; }

  // Adds a summary row named path() (+ "." + suffix) when a summary trace is running; a no-op otherwise.
  void trace(const std::string& suffix, const std::string& kind, const engine::Tensor& output,
             const std::vector<const engine::Module*>& modules, int64_t macs) const;

 private:
  std::string path_;
};

// A list of child modules with names chosen by the caller ("0", "1", ... as a PyTorch Sequential).
class ModuleList : public Layer {
 public:
  template <typename M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> module) {
    items_.push_back(module);
    return register_module(name, std::move(module));
  }
  size_t size() const { return items_.size(); }

 private:
  std::vector<std::shared_ptr<engine::Module>> items_;
};

// True while a summary trace is running on this thread (Net::summary).
bool tracing();
// Adds a summary row when a summary trace is running on this thread; a no-op otherwise.
void trace_row(const std::string& name, const std::string& kind, const engine::Tensor& output,
               const std::vector<const engine::Module*>& modules, int64_t macs);

// Multiply-accumulates per image of a convolution that produced `output` [N, OH, OW, O].
int64_t conv_macs(const engine::Conv2d& conv, const engine::Tensor& output);
// Trainable and buffer element counts of a set of modules.
std::pair<int64_t, int64_t> count_state(const std::vector<const engine::Module*>& modules);

// out <- x as a differentiable copy into preallocated memory (typically the first channels of a DenseNet
// block buffer): the gradient of `out` passes unchanged to x. `out` must be a fresh tensor without
// autograd history; it is returned.
engine::Tensor copy_into(const engine::Tensor& x, const engine::Tensor& out);

class Net : public engine::Module {
 public:
  // Logits [N, classes] of images [N, H, W, 3].
  engine::Tensor forward(const engine::Tensor& images) const;
  // The last convolutional feature map [N, h, w, C] (what Grad-CAM differentiates against).
  engine::Tensor features(const engine::Tensor& images) const;
  // Logits, and every stage activation (stage_names()) into `stages`, "features" included.
  engine::Tensor forward_with_stages(const engine::Tensor& images, StageMap& stages) const;
  // The head alone: logits [N, classes] of a feature map [N, h, w, C] (Grad-CAM differentiates it).
  engine::Tensor run_head(const engine::Tensor& features) const;

  // One traced forward pass at input_size x input_size (batch 1, eval mode, no grad; the net's mode is
  // restored): a row per unit, in execution order, the head last.
  std::vector<SummaryRow> summary(int64_t input_size);

  const std::string& arch() const { return arch_; }
  Head head() const { return head_; }
  Flavor flavor() const { return flavor_; }
  int64_t input_size() const { return input_size_; }  // what the flatten head was sized for
  int64_t num_classes() const { return head_ == Head::imagenet ? 1000 : 1; }
  int64_t feature_channels() const { return feature_channels_; }
  const std::string& head_module() const { return head_module_; }  // "classifier" or "classif"
  std::string head_prefix() const { return head_module_ + "."; }
  virtual std::vector<std::string> stage_names() const = 0;
  virtual int64_t min_input_size() const = 0;
  // The feature-map grid {h, w} for an input of height x width (throws if too small).
  virtual std::pair<int64_t, int64_t> feature_grid(int64_t height, int64_t width) const = 0;

 protected:
  Net(std::string arch, Head head, Flavor flavor, int64_t input_size);
  // The backbone: images -> feature map; records stage activations when `stages` is given.
  virtual engine::Tensor run_backbone(const engine::Tensor& images, StageMap* stages) const = 0;
  // Registers the head as child `module_name` (after the backbone) and names every Layer's path.
  // Subclass constructors call it last.
  void finish(const std::string& module_name, int64_t feature_channels, engine::Generator& gen);

 private:
  void check_images(const engine::Tensor& images) const;

  std::string arch_;
  Head head_;
  Flavor flavor_;
  int64_t input_size_;
  int64_t feature_channels_ = 0;
  std::string head_module_;
  std::shared_ptr<engine::Linear> classifier_;
};

}  // namespace nets
