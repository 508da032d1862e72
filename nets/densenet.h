// DenseNet-121/169/201 (Huang et al. 2017) from one configuration, as Keras's DenseNet and torchvision's
// densenet build them (docs/reference.md section 1), with torchvision's parameter names.
//
//   stem        conv0 7x7/2 pad 3 (64, no bias) - norm0 - ReLU - pool0 max 3x3/2 pad 1
//   dense block B (B = 1..4), L layers: x_{l+1} = concat(x_l, H_l(x_l)),
//               H_l = BN - ReLU - conv1 1x1 (bottleneck 128) - BN - ReLU - conv2 3x3 pad 1 (growth 32)
//   transition  T (after blocks 1..3): BN - ReLU - conv 1x1 (floor(compression * C)) - avg-pool 2x2/2
//   final       norm5 - ReLU   -> feature map [N, h, w, C]; then the head (nets/net.h)
// Channels of DenseNet-201: 64 -> 256 -> 128 -> 512 -> 256 -> 1792 -> 896 -> 1920.
//
// Concatenation without copies: each dense block allocates one buffer [N, H, W, C_out_of_block], copies
// its input into the first channels (a differentiable copy), and every layer's 3x3 convolution writes its
// `growth` new channels straight into its slice of the buffer; the next layer's input is the view over
// all channels so far (concat_channels of adjacent slices returns a view). Memory of a block is therefore
// linear in its depth. `block_buffers = false` builds the same net with ordinary copying concatenations
// (the reference the tests compare against).
//
// Memory-efficient mode (`memory_efficient`, Pleiss et al. 2017): the output of every BN - ReLU (norm1
// and norm2 of each dense layer, each transition's, the stem's) is what the convolution or pooling after
// it keeps for backward: for norm1 a BN'd and ReLU'd copy of the whole concatenation, quadratic in the
// depth of a block. Here those outputs live only while their consumer runs (engine::with_recomputed);
// backward recomputes each just before its consumer's backward needs it (BN + ReLU again, no
// convolution). Same values, gradients and BN statistics, bit for bit; the names and the module tree do
// not change (docs/perf-notes.md, "Memory-efficient dense blocks", has the memory and the time).
//
// BN + ReLU runs as one fused op everywhere (engine::BatchNorm::forward_relu). Folded inference
// (Net::fold_batch_norms): norm0 folds into conv0 and each dense layer's norm2 into its conv1; norm1, the
// transitions' norms and norm5 follow a concatenation (or the block input), not a convolution, and stay.
//
// Names (torchvision): features.conv0.weight, features.norm0.{weight,bias,running_mean,running_var},
// features.denseblock{B}.denselayer{L}.{norm1,conv1,norm2,conv2}.*, features.transition{T}.{norm,conv}.*,
// features.norm5.*, classifier.{weight,bias}. Conv weights OHWI.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nets/net.h"

namespace nets {

struct DenseNetConfig {
  std::vector<int64_t> block_layers{6, 12, 48, 32};
  int64_t growth = 32;
  int64_t bottleneck = 128;  // channels of the 1x1 convolution (bn_size 4 x growth)
  int64_t stem_channels = 64;
  double compression = 0.5;
  Flavor flavor = Flavor::keras;
  bool block_buffers = true;  // false: copying concatenations (reference for tests)
  // Recompute the BN-ReLU outputs in backward instead of keeping them (see above); can also be switched
  // on a built net with DenseNet::set_memory_efficient.
  bool memory_efficient = false;

  static DenseNetConfig densenet121(Flavor flavor = Flavor::keras);
  static DenseNetConfig densenet169(Flavor flavor = Flavor::keras);
  static DenseNetConfig densenet201(Flavor flavor = Flavor::keras);
  // The batch-norm options of the flavour: Keras eps 1.001e-5, momentum 0.01 biased; torch 1e-5, 0.1 unbiased.
  engine::BatchNormOptions bn_options() const;
};

class DenseLayer : public Layer {
 public:
  DenseLayer(int64_t in_channels, const DenseNetConfig& config, engine::Generator& gen);
  // x_{l+1} = concat(x_l, H_l(x_l)): x [N, H, W, in] -> [N, H, W, in + growth]. The new channels are
  // written into `out` [N, H, W, growth] when given (the layer's slice of the block buffer, right after x).
  engine::Tensor forward(const engine::Tensor& x, const engine::Tensor& out) const;
  // Multiply-accumulates per output pixel of the two convolutions.
  int64_t macs_per_pixel() const;
  void set_memory_efficient(bool on) { memory_efficient_ = on; }
  // norm2 follows conv1 directly: folded into it (norm1 follows the concatenation and does not fold).
  void fold_batch_norms(bool on) override;

 private:
  std::shared_ptr<engine::BatchNorm> norm1_, norm2_;
  std::shared_ptr<engine::Conv2d> conv1_, conv2_;
  bool memory_efficient_;
  ConvBatchNormFold fold_conv1_norm2_;
};

class DenseBlock : public Layer {
 public:
  DenseBlock(int64_t in_channels, int64_t layers, const DenseNetConfig& config, engine::Generator& gen);
  engine::Tensor forward(const engine::Tensor& x) const;  // [N, H, W, in] -> [N, H, W, out_channels()]
  int64_t out_channels() const { return out_channels_; }
  void set_memory_efficient(bool on);

 private:
  std::vector<std::shared_ptr<DenseLayer>> layers_;
  int64_t in_channels_, out_channels_, growth_;
  bool block_buffers_;
};

class Transition : public Layer {
 public:
  Transition(int64_t in_channels, int64_t out_channels, const DenseNetConfig& config, engine::Generator& gen);
  engine::Tensor forward(const engine::Tensor& x) const;  // [N, H, W, in] -> [N, H/2, W/2, out]
  void set_memory_efficient(bool on) { memory_efficient_ = on; }

 private:
  std::shared_ptr<engine::BatchNorm> norm_;
  std::shared_ptr<engine::Conv2d> conv_;
  bool memory_efficient_;
};

// The module "features": stem, blocks, transitions, norm5.
class DenseNetFeatures : public Layer {
 public:
  DenseNetFeatures(const DenseNetConfig& config, engine::Generator& gen);
  engine::Tensor forward(const engine::Tensor& images) const;  // [N, H, W, 3] -> [N, h, w, out_channels()]
  int64_t out_channels() const { return out_channels_; }
  void set_memory_efficient(bool on);
  // norm0 follows conv0 directly: folded into it (norm5 follows the last block's concatenation).
  void fold_batch_norms(bool on) override;

 private:
  std::shared_ptr<engine::Conv2d> conv0_;
  std::shared_ptr<engine::BatchNorm> norm0_, norm5_;
  ConvBatchNormFold fold_conv0_norm0_;
  std::vector<std::shared_ptr<DenseBlock>> blocks_;
  std::vector<std::shared_ptr<Transition>> transitions_;
  int64_t out_channels_ = 0;
  bool memory_efficient_;
};

class DenseNet : public Net {
 public:
  // arch: the name recorded with the net ("densenet201", ...); input_size sizes the flatten head.
  DenseNet(const std::string& arch, const DenseNetConfig& config, Head head, int64_t input_size,
           engine::Generator& gen);
  int64_t min_input_size() const override { return 32; }
  std::pair<int64_t, int64_t> feature_grid(int64_t height, int64_t width) const override;
  const DenseNetConfig& config() const { return config_; }
  // Switches memory-efficient mode (DenseNetConfig::memory_efficient) on or off for the next forward.
  void set_memory_efficient(bool on);

 protected:
  engine::Tensor run_backbone(const engine::Tensor& images) const override;
  // "stem" ends at pool0, "block{B}" at the last layer of dense block B.
  std::vector<std::pair<std::string, std::string>> stage_units() const override;

 private:
  DenseNetConfig config_;
  std::shared_ptr<DenseNetFeatures> features_;
};

}  // namespace nets
