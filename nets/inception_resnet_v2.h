// Inception-ResNet-v2 (Szegedy et al. 2016) as Keras's InceptionResNetV2 and timm's inception_resnet_v2
// build it (both ported from TF-slim; docs/reference.md section 2), with timm's parameter names.
//
// Unit ("BasicConv2d"): conv (no bias) - BN without gamma (Keras scale=False; eps 1e-3) - ReLU, the BN +
// ReLU as one fused op; folded inference (Net::fold_batch_norms) folds every unit's BN into its conv.
// Padding: 'valid' in the stem and on every stride-2 convolution, 'same' elsewhere (odd kernels at stride
// 1, so 'same' is symmetric: 3x3 pads 1, 1x7 pads (0, 3), 7x1 pads (3, 0)).
//
//   stem      conv2d_1a 32 3x3/2 v, conv2d_2a 32 3x3 v, conv2d_2b 64 3x3, maxpool 3/2 v, conv2d_3b 80 1x1,
//             conv2d_4a 192 3x3 v, maxpool 3/2 v                              (299: 149 147 147 73 73 71 35)
//   mixed_5b  [96 1x1 | 48 1x1 - 64 5x5 | 64 1x1 - 96 3x3 - 96 3x3 | avgpool 3/1 same excl. pad - 64 1x1] = 320
//   repeat    10 x Block35: [32 1x1 | 32 1x1 - 32 3x3 | 32 1x1 - 48 3x3 - 64 3x3] -> conv2d 1x1 320 (bias),
//             out = relu(x + 0.17 * up)
//   mixed_6a  [384 3x3/2 v | 256 1x1 - 256 3x3 - 384 3x3/2 v | maxpool 3/2 v] = 1088        (299: 17)
//   repeat_1  20 x Block17: [192 1x1 | 128 1x1 - 160 1x7 - 192 7x1] -> conv2d 1x1 1088, relu(x + 0.1 up)
//   mixed_7a  [256 1x1 - 384 3x3/2 v | 256 1x1 - 288 3x3/2 v | 256 1x1 - 288 3x3 - 320 3x3/2 v | maxpool] = 2080
//   repeat_2  9 x Block8: [192 1x1 | 192 1x1 - 224 1x3 - 256 3x1] -> conv2d 1x1 2080, relu(x + 0.2 up)
//   block8    Block8 with scale 1 and no ReLU
//   conv2d_7b 1536 1x1 unit -> feature map [N, h, w, 1536] (299: 8x8; 224: 5x5); then the head "classif".
//
// Names (timm): conv2d_1a.conv.weight, conv2d_1a.bn.{bias,running_mean,running_var} (no bn.weight: there is
// no gamma), mixed_5b.branch0.*, mixed_5b.branch1.{0,1}.*, mixed_5b.branch3.1.* (index 0 is the pool),
// repeat.{0..9}.branch{0,1,2}..., repeat.{i}.conv2d.{weight,bias}, mixed_6a.branch0, mixed_6a.branch1.{0,1,2},
// repeat_1.{0..19}, mixed_7a.branch{0,1,2}.{...}, repeat_2.{0..8}, block8, conv2d_7b, classif.{weight,bias}.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nets/net.h"

namespace nets {

// conv (no bias) - BN (no gamma) - ReLU, with children "conv" and "bn".
class BasicConv : public Layer {
 public:
  // pad_h/pad_w: symmetric padding ('same' at stride 1 for odd kernels, 0 for 'valid').
  BasicConv(int64_t in, int64_t out, int64_t kernel_h, int64_t kernel_w, int64_t stride, int64_t pad_h,
            int64_t pad_w, const engine::BatchNormOptions& bn, engine::Generator& gen);
  // out (optional): where the unit's output is written (its slice of a block's concatenation); use the
  // returned tensor, which is out wherever the ops could write there.
  engine::Tensor forward(const engine::Tensor& x, const engine::Tensor& out = engine::Tensor()) const;
  int64_t out_channels() const { return conv_->spec().out_channels; }
  void fold_batch_norms(bool on) override;  // bn into conv (Net::fold_batch_norms)

 private:
  std::shared_ptr<engine::Conv2d> conv_;
  std::shared_ptr<engine::BatchNorm> bn_;
  ConvBatchNormFold fold_;
  std::string kind_;  // "conv-bn-relu 3x3/2 valid", ...
};

// A chain of units (a timm nn.Sequential), children named by their Sequential index.
class UnitChain : public Layer {
 public:
  void add(int64_t index, std::shared_ptr<BasicConv> unit);
  // out: the last unit's (BasicConv::forward).
  engine::Tensor forward(const engine::Tensor& x, const engine::Tensor& out = engine::Tensor()) const;
  int64_t out_channels() const { return units_.back()->out_channels(); }

 private:
  std::vector<std::shared_ptr<BasicConv>> units_;
};

class Mixed5b : public Layer {
 public:
  Mixed5b(const engine::BatchNormOptions& bn, engine::Generator& gen);
  engine::Tensor forward(const engine::Tensor& x) const;  // [N, H, W, 192] -> [N, H, W, 320]

 private:
  std::shared_ptr<BasicConv> branch0_;
  std::shared_ptr<UnitChain> branch1_, branch2_, branch3_;
};

// Block35 / Block17 / Block8: parallel branches, concatenated, a 1x1 convolution with bias back to the
// input width, and out = relu(x + scale * up) (no ReLU for the last Block8).
class ResidualBlock : public Layer {
 public:
  enum class Type { block35, block17, block8 };
  ResidualBlock(Type type, float scale, bool relu, const engine::BatchNormOptions& bn, engine::Generator& gen);
  engine::Tensor forward(const engine::Tensor& x) const;

 private:
  float scale_;
  bool relu_;
  std::vector<std::shared_ptr<Layer>> branches_;  // BasicConv or UnitChain
  std::vector<int64_t> branch_widths_;            // their output channels, in order (the concatenation's)
  std::shared_ptr<engine::Conv2d> conv2d_;
  std::string kind_;  // "conv1x1+bias, x + 0.17 * up, relu", ...
};

class Mixed6a : public Layer {
 public:
  Mixed6a(const engine::BatchNormOptions& bn, engine::Generator& gen);
  engine::Tensor forward(const engine::Tensor& x) const;  // [N, H, W, 320] -> [N, H', W', 1088]

 private:
  std::shared_ptr<BasicConv> branch0_;
  std::shared_ptr<UnitChain> branch1_;
};

class Mixed7a : public Layer {
 public:
  Mixed7a(const engine::BatchNormOptions& bn, engine::Generator& gen);
  engine::Tensor forward(const engine::Tensor& x) const;  // [N, H, W, 1088] -> [N, H', W', 2080]

 private:
  std::shared_ptr<UnitChain> branch0_, branch1_, branch2_;
};

class InceptionResNetV2 : public Net {
 public:
  // flavor: keras (BN momentum 0.01, biased variance) or torch (0.1, unbiased); eps 1e-3 in both.
  InceptionResNetV2(Flavor flavor, Head head, int64_t input_size, engine::Generator& gen);
  int64_t min_input_size() const override { return 75; }
  std::pair<int64_t, int64_t> feature_grid(int64_t height, int64_t width) const override;
  static engine::BatchNormOptions bn_options(Flavor flavor);

 protected:
  engine::Tensor run_backbone(const engine::Tensor& images) const override;
  // "stem" ends at maxpool_5a, "mixed_*" at their concatenations, "block35/17/8" at the last block's sum.
  std::vector<std::pair<std::string, std::string>> stage_units() const override;

 private:
  std::shared_ptr<BasicConv> conv2d_1a_, conv2d_2a_, conv2d_2b_, conv2d_3b_, conv2d_4a_, conv2d_7b_;
  std::shared_ptr<Mixed5b> mixed_5b_;
  std::shared_ptr<ModuleList> repeat_, repeat_1_, repeat_2_;
  std::vector<std::shared_ptr<ResidualBlock>> block35_, block17_, block8s_;
  std::shared_ptr<Mixed6a> mixed_6a_;
  std::shared_ptr<Mixed7a> mixed_7a_;
  std::shared_ptr<ResidualBlock> block8_;
};

}  // namespace nets
