// Inception-ResNet-v2 (see inception_resnet_v2.h for the architecture and the names).
#include "nets/inception_resnet_v2.h"

#include <cstdio>
#include <vector>

namespace nets {

using namespace engine;

namespace {

// One unit; `pad_h`/`pad_w` symmetric ('same' at stride 1 for odd kernels), 0 for 'valid'.
std::shared_ptr<BasicConv> unit(int64_t in, int64_t out, int64_t kh, int64_t kw, int64_t stride, int64_t pad_h,
                                int64_t pad_w, const BatchNormOptions& bn, Generator& gen) {
  return std::make_shared<BasicConv>(in, out, kh, kw, stride, pad_h, pad_w, bn, gen);
}
// Square kernel k, stride 1, 'same'.
std::shared_ptr<BasicConv> same(int64_t in, int64_t out, int64_t k, const BatchNormOptions& bn, Generator& gen) {
  return unit(in, out, k, k, 1, k / 2, k / 2, bn, gen);
}
// Square kernel k, 'valid', stride s.
std::shared_ptr<BasicConv> valid(int64_t in, int64_t out, int64_t k, int64_t s, const BatchNormOptions& bn,
                                 Generator& gen) {
  return unit(in, out, k, k, s, 0, 0, bn, gen);
}

const Pool2dOptions kMaxPool3s2 = Pool2dOptions::square(3, 2);  // 'valid'

// The parameterless max-pool unit at `path`, written into out when given.
Tensor max_pool_unit(const Tensor& x, const std::string& path, const Tensor& out = Tensor()) {
  return unit_output(path, "max-pool 3x3/2 valid", max_pool2d(x, kMaxPool3s2, out), {}, 0);
}

// A block's concatenation written in place, in inference: the buffer [N, H, W, widths...] and each
// branch's channel slice, in order, for the branches to write their outputs into; concat_channels of the
// slices is then a view of the buffer (nothing copied). In training (a gradient recorded) the slices are
// undefined and the branches write tensors of their own, which concat_channels copies: measured on the
// CPU, the strided writes cost training more than the copy they save (docs/perf-notes.md).
struct ConcatBuffer {
  Tensor buffer;
  std::vector<Tensor> slices;
  ConcatBuffer(const Tensor& like, int64_t height, int64_t width, const std::vector<int64_t>& widths) {
    if (grad_enabled()) {
      slices.resize(widths.size());
      return;
    }
    int64_t channels = 0;
    for (int64_t w : widths) channels += w;
    buffer = Tensor::empty({like.size(0), height, width, channels}, like.device(), like.dtype());
    int64_t begin = 0;
    for (int64_t w : widths) {
      slices.push_back(buffer.slice(-1, begin, begin + w));
      begin += w;
    }
  }
};

// The spatial size of a 3x3 stride-2 'valid' reduction of x (Mixed6a, Mixed7a).
int64_t reduced(int64_t size) { return (size - 3) / 2 + 1; }

}  // namespace

// ---- Units ----------------------------------------------------------------------------------------

BasicConv::BasicConv(int64_t in, int64_t out, int64_t kernel_h, int64_t kernel_w, int64_t stride, int64_t pad_h,
                     int64_t pad_w, const BatchNormOptions& bn, Generator& gen) {
  conv_ = register_module(
      "conv", std::make_shared<Conv2d>(
                  Conv2dSpec{in, out, kernel_h, kernel_w, Conv2dOptions::symmetric(pad_h, pad_w, stride), false}, gen));
  bn_ = register_module("bn", std::make_shared<BatchNorm>(BatchNormSpec{out, bn, /*gamma=*/false, /*beta=*/true}));
  const bool is_valid = pad_h == 0 && pad_w == 0 && (kernel_h > 1 || kernel_w > 1);
  kind_ = "conv-bn-relu " + std::to_string(kernel_h) + "x" + std::to_string(kernel_w) +
          (stride > 1 ? "/" + std::to_string(stride) : "") + (is_valid ? " valid" : "");
}

void BasicConv::fold_batch_norms(bool on) { fold_.set(on, *conv_, *bn_); }

Tensor BasicConv::forward(const Tensor& x, const Tensor& out) const {
  const FoldedConv2d* folded = fold_.active(*this, x);
  const Tensor y = folded ? folded->forward_relu(x, out) : bn_->forward_relu(conv_->forward(x), out);
  return output(kind_, y, {this}, conv_macs(*conv_, y));
}

void UnitChain::add(int64_t index, std::shared_ptr<BasicConv> unit) {
  units_.push_back(register_module(std::to_string(index), std::move(unit)));
}

Tensor UnitChain::forward(const Tensor& x, const Tensor& out) const {
  Tensor h = x;
  for (size_t i = 0; i < units_.size(); ++i) h = units_[i]->forward(h, i + 1 == units_.size() ? out : Tensor());
  return h;
}

// ---- Mixed blocks ---------------------------------------------------------------------------------

Mixed5b::Mixed5b(const BatchNormOptions& bn, Generator& gen) {
  branch0_ = register_module("branch0", same(192, 96, 1, bn, gen));
  branch1_ = register_module("branch1", std::make_shared<UnitChain>());
  branch1_->add(0, same(192, 48, 1, bn, gen));
  branch1_->add(1, same(48, 64, 5, bn, gen));
  branch2_ = register_module("branch2", std::make_shared<UnitChain>());
  branch2_->add(0, same(192, 64, 1, bn, gen));
  branch2_->add(1, same(64, 96, 3, bn, gen));
  branch2_->add(2, same(96, 96, 3, bn, gen));
  branch3_ = register_module("branch3", std::make_shared<UnitChain>());
  branch3_->add(1, same(192, 64, 1, bn, gen));  // index 0 is the average pool (no parameters)
}

Tensor Mixed5b::forward(const Tensor& x) const {
  const ConcatBuffer cat(x, x.size(1), x.size(2), {96, 64, 96, 64});
  Tensor b0 = branch0_->forward(x, cat.slices[0]);
  Tensor b1 = branch1_->forward(x, cat.slices[1]);
  Tensor b2 = branch2_->forward(x, cat.slices[2]);
  Tensor pooled = part_output("branch3.0", "avg-pool 3x3/1 same (padding excluded)",
                              avg_pool2d(x, Pool2dOptions::square(3, 1, 1), /*count_include_pad=*/false), {}, 0);
  Tensor b3 = branch3_->forward(pooled, cat.slices[3]);
  return output("concat [96 | 64 | 96 | 64]", concat_channels({b0, b1, b2, b3}), {}, 0);
}

Mixed6a::Mixed6a(const BatchNormOptions& bn, Generator& gen) {
  branch0_ = register_module("branch0", valid(320, 384, 3, 2, bn, gen));
  branch1_ = register_module("branch1", std::make_shared<UnitChain>());
  branch1_->add(0, same(320, 256, 1, bn, gen));
  branch1_->add(1, same(256, 256, 3, bn, gen));
  branch1_->add(2, valid(256, 384, 3, 2, bn, gen));
}

Tensor Mixed6a::forward(const Tensor& x) const {
  const ConcatBuffer cat(x, reduced(x.size(1)), reduced(x.size(2)), {384, 384, 320});
  Tensor b0 = branch0_->forward(x, cat.slices[0]);
  Tensor b1 = branch1_->forward(x, cat.slices[1]);
  Tensor b2 = max_pool_unit(x, path() + ".branch2", cat.slices[2]);
  return output("concat [384 | 384 | 320]", concat_channels({b0, b1, b2}), {}, 0);
}

Mixed7a::Mixed7a(const BatchNormOptions& bn, Generator& gen) {
  branch0_ = register_module("branch0", std::make_shared<UnitChain>());
  branch0_->add(0, same(1088, 256, 1, bn, gen));
  branch0_->add(1, valid(256, 384, 3, 2, bn, gen));
  branch1_ = register_module("branch1", std::make_shared<UnitChain>());
  branch1_->add(0, same(1088, 256, 1, bn, gen));
  branch1_->add(1, valid(256, 288, 3, 2, bn, gen));
  branch2_ = register_module("branch2", std::make_shared<UnitChain>());
  branch2_->add(0, same(1088, 256, 1, bn, gen));
  branch2_->add(1, same(256, 288, 3, bn, gen));
  branch2_->add(2, valid(288, 320, 3, 2, bn, gen));
}

Tensor Mixed7a::forward(const Tensor& x) const {
  const ConcatBuffer cat(x, reduced(x.size(1)), reduced(x.size(2)), {384, 288, 320, 1088});
  Tensor b0 = branch0_->forward(x, cat.slices[0]);
  Tensor b1 = branch1_->forward(x, cat.slices[1]);
  Tensor b2 = branch2_->forward(x, cat.slices[2]);
  Tensor b3 = max_pool_unit(x, path() + ".branch3", cat.slices[3]);
  return output("concat [384 | 288 | 320 | 1088]", concat_channels({b0, b1, b2, b3}), {}, 0);
}

// ---- Residual blocks ------------------------------------------------------------------------------

ResidualBlock::ResidualBlock(Type type, float scale, bool relu, const BatchNormOptions& bn, Generator& gen)
    : scale_(scale), relu_(relu) {
  auto chain = [&](const std::string& name) {
    auto c = register_module(name, std::make_shared<UnitChain>());
    branches_.push_back(c);
    return c;
  };
  int64_t width = 0, mixed = 0;
  switch (type) {
    case Type::block35: {
      width = 320;
      branches_.push_back(register_module("branch0", same(320, 32, 1, bn, gen)));
      auto b1 = chain("branch1");
      b1->add(0, same(320, 32, 1, bn, gen));
      b1->add(1, same(32, 32, 3, bn, gen));
      auto b2 = chain("branch2");
      b2->add(0, same(320, 32, 1, bn, gen));
      b2->add(1, same(32, 48, 3, bn, gen));
      b2->add(2, same(48, 64, 3, bn, gen));
      mixed = 32 + 32 + 64;
      break;
    }
    case Type::block17: {
      width = 1088;
      branches_.push_back(register_module("branch0", same(1088, 192, 1, bn, gen)));
      auto b1 = chain("branch1");
      b1->add(0, same(1088, 128, 1, bn, gen));
      b1->add(1, unit(128, 160, 1, 7, 1, 0, 3, bn, gen));
      b1->add(2, unit(160, 192, 7, 1, 1, 3, 0, bn, gen));
      mixed = 192 + 192;
      break;
    }
    case Type::block8: {
      width = 2080;
      branches_.push_back(register_module("branch0", same(2080, 192, 1, bn, gen)));
      auto b1 = chain("branch1");
      b1->add(0, same(2080, 192, 1, bn, gen));
      b1->add(1, unit(192, 224, 1, 3, 1, 0, 1, bn, gen));
      b1->add(2, unit(224, 256, 3, 1, 1, 1, 0, bn, gen));
      mixed = 192 + 256;
      break;
    }
  }
  conv2d_ = register_module(
      "conv2d", std::make_shared<Conv2d>(Conv2dSpec{mixed, width, 1, 1, Conv2dOptions::valid(), true}, gen));
  for (const auto& branch : branches_) {
    if (auto* u = dynamic_cast<const BasicConv*>(branch.get())) branch_widths_.push_back(u->out_channels());
    else branch_widths_.push_back(static_cast<const UnitChain*>(branch.get())->out_channels());
  }
  char kind[96];
  std::snprintf(kind, sizeof kind, "conv1x1+bias, x + %.2g * up%s", static_cast<double>(scale_),
                relu_ ? ", relu" : " (no relu)");
  kind_ = kind;
}

Tensor ResidualBlock::forward(const Tensor& x) const {
  const ConcatBuffer cat(x, x.size(1), x.size(2), branch_widths_);
  std::vector<Tensor> outputs;
  for (size_t i = 0; i < branches_.size(); ++i) {
    const auto& branch = branches_[i];
    if (auto* u = dynamic_cast<const BasicConv*>(branch.get())) outputs.push_back(u->forward(x, cat.slices[i]));
    else outputs.push_back(static_cast<const UnitChain*>(branch.get())->forward(x, cat.slices[i]));
  }
  // relu(x + scale * (conv(mixed) + bias)): the convolution and one pass in training, one fused kernel
  // (one cuDNN call on the GPU) in inference.
  const Tensor y = conv2d_->forward_scaled_residual(concat_channels(outputs), x, scale_, relu_);
  return part_output("conv2d", kind_, y, {conv2d_.get()}, conv_macs(*conv2d_, y));
}

// ---- The net --------------------------------------------------------------------------------------

BatchNormOptions InceptionResNetV2::bn_options(Flavor flavor) {
  return flavor == Flavor::keras ? BatchNormOptions::keras(1e-3f) : BatchNormOptions::torch(1e-3f);
}

InceptionResNetV2::InceptionResNetV2(Flavor flavor, Head head, int64_t input_size, Generator& gen)
    : Net("inception_resnet_v2", head, flavor, input_size) {
  ENGINE_USER_CHECK(input_size >= min_input_size())
      << "inception_resnet_v2: input size " << input_size << " is below the minimum " << min_input_size();
  const BatchNormOptions bn = bn_options(flavor);
  conv2d_1a_ = register_module("conv2d_1a", valid(3, 32, 3, 2, bn, gen));
  conv2d_2a_ = register_module("conv2d_2a", valid(32, 32, 3, 1, bn, gen));
  conv2d_2b_ = register_module("conv2d_2b", same(32, 64, 3, bn, gen));
  conv2d_3b_ = register_module("conv2d_3b", valid(64, 80, 1, 1, bn, gen));
  conv2d_4a_ = register_module("conv2d_4a", valid(80, 192, 3, 1, bn, gen));
  mixed_5b_ = register_module("mixed_5b", std::make_shared<Mixed5b>(bn, gen));
  repeat_ = register_module("repeat", std::make_shared<ModuleList>());
  for (int i = 0; i < 10; ++i)
    block35_.push_back(repeat_->add(std::to_string(i), std::make_shared<ResidualBlock>(
                                                           ResidualBlock::Type::block35, 0.17f, true, bn, gen)));
  mixed_6a_ = register_module("mixed_6a", std::make_shared<Mixed6a>(bn, gen));
  repeat_1_ = register_module("repeat_1", std::make_shared<ModuleList>());
  for (int i = 0; i < 20; ++i)
    block17_.push_back(repeat_1_->add(std::to_string(i), std::make_shared<ResidualBlock>(
                                                             ResidualBlock::Type::block17, 0.1f, true, bn, gen)));
  mixed_7a_ = register_module("mixed_7a", std::make_shared<Mixed7a>(bn, gen));
  repeat_2_ = register_module("repeat_2", std::make_shared<ModuleList>());
  for (int i = 0; i < 9; ++i)
    block8s_.push_back(repeat_2_->add(std::to_string(i), std::make_shared<ResidualBlock>(
                                                             ResidualBlock::Type::block8, 0.2f, true, bn, gen)));
  block8_ = register_module("block8",
                            std::make_shared<ResidualBlock>(ResidualBlock::Type::block8, 1.0f, false, bn, gen));
  conv2d_7b_ = register_module("conv2d_7b", same(2080, 1536, 1, bn, gen));
  finish("classif", 1536, gen);
}

std::vector<std::pair<std::string, std::string>> InceptionResNetV2::stage_units() const {
  return {{"stem", "maxpool_5a"},
          {"mixed_5b", mixed_5b_->path()},
          {"block35", block35_.back()->path() + ".conv2d"},
          {"mixed_6a", mixed_6a_->path()},
          {"block17", block17_.back()->path() + ".conv2d"},
          {"mixed_7a", mixed_7a_->path()},
          {"block8", block8_->path() + ".conv2d"}};
}

std::pair<int64_t, int64_t> InceptionResNetV2::feature_grid(int64_t height, int64_t width) const {
  auto grid = [](int64_t s) {
    s = (s - 3) / 2 + 1;  // conv2d_1a 3x3/2 valid
    s -= 2;               // conv2d_2a 3x3 valid
    s = (s - 3) / 2 + 1;  // maxpool_3a
    s -= 2;               // conv2d_4a 3x3 valid
    s = (s - 3) / 2 + 1;  // maxpool_5a
    s = (s - 3) / 2 + 1;  // mixed_6a
    s = (s - 3) / 2 + 1;  // mixed_7a
    return s;
  };
  ENGINE_USER_CHECK(height >= min_input_size() && width >= min_input_size())
      << "inception_resnet_v2: input " << height << "x" << width << " is below the minimum " << min_input_size();
  return {grid(height), grid(width)};
}

Tensor InceptionResNetV2::run_backbone(const Tensor& images) const {
  Tensor x = conv2d_1a_->forward(images);
  x = conv2d_2a_->forward(x);
  x = conv2d_2b_->forward(x);
  x = max_pool_unit(x, "maxpool_3a");
  x = conv2d_3b_->forward(x);
  x = conv2d_4a_->forward(x);
  x = max_pool_unit(x, "maxpool_5a");
  x = mixed_5b_->forward(x);
  for (const auto& b : block35_) x = b->forward(x);
  x = mixed_6a_->forward(x);
  for (const auto& b : block17_) x = b->forward(x);
  x = mixed_7a_->forward(x);
  for (const auto& b : block8s_) x = b->forward(x);
  x = block8_->forward(x);
  return conv2d_7b_->forward(x);
}

}  // namespace nets
