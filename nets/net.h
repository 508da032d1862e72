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
// Observing a forward pass: every unit of a net (a dense layer, a conv-bn-relu, a pooling, the head)
// hands its output to Layer::output, which tells the ForwardObserver installed on this thread, if any:
// the unit's module path, what it is, its output, the modules whose state it holds and its
// multiply-accumulates. The architecture code knows no more than that; two observers use it:
//   summary : Net::summary runs one forward pass (batch 1, eval, no grad) and makes a row of each unit:
//             output shape, trainable parameters, buffers (BN running statistics), MACs. Keras counts BN
//             statistics as (non-trainable) parameters, so Keras's "total params" = parameters + buffers.
//   stages  : Net::forward_with_stages keeps the outputs of the units that end a stage (stage_units()).
//
// Folded inference (Net::fold_batch_norms): in eval mode every batch norm that directly follows a
// convolution is folded into that convolution's weights and bias (engine::fold_batch_norm), and the unit
// runs conv + bias + ReLU (engine::FoldedConv2d::forward_relu). The folded values are a snapshot held
// beside the modules, not registered: names, parameters and checkpoints do not change. A unit uses them
// only in eval mode; Net::train unfolds.
#pragma once
#include <map>
#include <memory>
#include <optional>
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
  engine::Shape output;  // output shape in the observed pass (batch 1)
  int64_t parameters = 0;  // trainable elements
  int64_t buffers = 0;     // non-trainable elements (BN running statistics)
  int64_t macs = 0;        // multiply-accumulates per image (convolutions and linear layers)
};

// Sees the output of every unit of a forward pass, in execution order (see the top of this file).
class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  // path: the unit's module path; kind: what it is ("dense layer: ...", "conv-bn-relu 3x3/2 valid");
  // state: the modules whose parameters and buffers the unit holds; macs: multiply-accumulates per image.
  virtual void on_unit_output(const std::string& path, const std::string& kind, const engine::Tensor& output,
                              const std::vector<const engine::Module*>& state, int64_t macs) = 0;
};

// Installs `observer` on this thread for the scope's lifetime (the previous one, if any, comes back after).
class ObserveForward {
 public:
  explicit ObserveForward(ForwardObserver& observer);
  ~ObserveForward();
  ObserveForward(const ObserveForward&) = delete;
  ObserveForward& operator=(const ObserveForward&) = delete;

 private:
  ForwardObserver* previous_;
};

// Tells this thread's observer, if any, that the unit at `path` produced `output`; returns `output`.
// The one place units are observed from (Layer::output, the head, the net's own poolings).
engine::Tensor unit_output(const std::string& path, const std::string& kind, const engine::Tensor& output,
                                  const std::vector<const engine::Module*>& state, int64_t macs);

// A module of a net that knows its own dotted path in the tree (assigned once the net is built), so
// that it can name its outputs.
class Layer : public engine::Module {
 public:
  const std::string& path() const { return path_; }
  void set_path(const std::string& path) { path_ = path; }
  // Folds (on) or drops the folded form of this unit's convolution + batch norm, if it has one
  // (Net::fold_batch_norms calls it on every Layer; units with nothing to fold keep this no-op).
  virtual void fold_batch_norms(bool on) { (void)on; }

 protected:
  // y, the output of this unit (path()) or of its part `part` (path() + "." + part), told to the observer.
  engine::Tensor output(const std::string& kind, const engine::Tensor& y,
                               const std::vector<const engine::Module*>& state, int64_t macs) const;
  engine::Tensor part_output(const std::string& part, const std::string& kind, const engine::Tensor& y,
                                    const std::vector<const engine::Module*>& state, int64_t macs) const;

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

// A unit's convolution and the batch norm right after it, and their folded form while folding is on.
class ConvBatchNormFold {
 public:
  // on: snapshot conv and norm as one convolution with bias (engine::fold_batch_norm); off: drop it.
  void set(bool on, const engine::Conv2d& conv, const engine::BatchNorm& norm);
  // The folded convolution if folding is on and `unit` is in eval mode, else null (run the unfolded path).
  // x: the unit's input, which must be on the device the net was folded on.
  const engine::FoldedConv2d* active(const engine::Module& unit, const engine::Tensor& x) const;

 private:
  std::optional<engine::FoldedConv2d> folded_;
};

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

  // One observed forward pass at input_size x input_size (batch 1, eval mode, no grad; the net's mode is
  // restored): a row per unit, in execution order, the head last.
  std::vector<SummaryRow> summary(int64_t input_size);

  // Folded inference (see the top of this file; docs/nets.md says which batch norms fold): on folds
  // every batch norm that directly follows a convolution into it, from the current weights and running
  // statistics, for the eval-mode forward; the net must be in eval mode. Call it again after loading
  // weights or moving the net to another device. off (or train()) unfolds.
  void fold_batch_norms(bool on = true);
  bool batch_norms_folded() const { return batch_norms_folded_; }
  // Module::train, unfolding the batch norms first when `on` (folding is never used in training).
  void train(bool on = true) override;

  const std::string& arch() const { return arch_; }
  Head head() const { return head_; }
  Flavor flavor() const { return flavor_; }
  int64_t input_size() const { return input_size_; }  // what the flatten head was sized for
  int64_t num_classes() const { return head_ == Head::imagenet ? 1000 : 1; }
  int64_t feature_channels() const { return feature_channels_; }
  const std::string& head_module() const { return head_module_; }  // "classifier" or "classif"
  std::string head_prefix() const { return head_module_ + "."; }
  // The stages forward_with_stages reports: those of stage_units(), then "features".
  std::vector<std::string> stage_names() const;
  virtual int64_t min_input_size() const = 0;
  // The feature-map grid {h, w} for an input of height x width (throws if too small).
  virtual std::pair<int64_t, int64_t> feature_grid(int64_t height, int64_t width) const = 0;

 protected:
  Net(std::string arch, Head head, Flavor flavor, int64_t input_size);
  // The backbone: images -> feature map.
  virtual engine::Tensor run_backbone(const engine::Tensor& images) const = 0;
  // Each stage ("stem", "block1", ...) and the path of the unit whose output ends it, in order.
  virtual std::vector<std::pair<std::string, std::string>> stage_units() const = 0;
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
  bool batch_norms_folded_ = false;
};

}  // namespace nets
