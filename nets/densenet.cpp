// DenseNet-121/169/201 (see densenet.h for the architecture, the names and the block buffers).
#include "nets/densenet.h"

#include <cmath>
#include <functional>

#include "engine/recompute.h"

namespace nets {

using namespace engine;

DenseNetConfig DenseNetConfig::densenet121(Flavor flavor) {
  DenseNetConfig c;
  c.block_layers = {6, 12, 24, 16};
  c.flavor = flavor;
  return c;
}

DenseNetConfig DenseNetConfig::densenet169(Flavor flavor) {
  DenseNetConfig c;
  c.block_layers = {6, 12, 32, 32};
  c.flavor = flavor;
  return c;
}

DenseNetConfig DenseNetConfig::densenet201(Flavor flavor) {
  DenseNetConfig c;
  c.block_layers = {6, 12, 48, 32};
  c.flavor = flavor;
  return c;
}

BatchNormOptions DenseNetConfig::bn_options() const {
  return flavor == Flavor::keras ? BatchNormOptions::keras(1.001e-5f) : BatchNormOptions::torch(1e-5f);
}

namespace {

std::shared_ptr<BatchNorm> make_bn(int64_t channels, const DenseNetConfig& config) {
  return std::make_shared<BatchNorm>(BatchNormSpec{channels, config.bn_options(), true, true});
}

std::shared_ptr<Conv2d> make_conv(int64_t in, int64_t out, int64_t kernel, const Conv2dOptions& options,
                                  Generator& gen) {
  return std::make_shared<Conv2d>(Conv2dSpec{in, out, kernel, kernel, options, false}, gen);
}

// consumer(relu(norm(x))): z = relu(norm(x)) is what the consumer (a convolution, a pooling) keeps for its
// backward. Memory-efficient: z's memory is given back as soon as the consumer has run and z is
// recomputed in backward just before the consumer's backward needs it (engine::with_recomputed; the
// running statistics of norm are updated once per step, as in the standard net).
// BN + ReLU is one fused op (BatchNorm::forward_relu), in both modes.
Tensor bn_relu_then(bool memory_efficient, const std::shared_ptr<BatchNorm>& norm, const Tensor& x,
                    const std::function<Tensor(const Tensor&)>& consumer) {
  if (!memory_efficient) return consumer(norm->forward_relu(x));
  return with_recomputed([norm](const std::vector<Tensor>& in) { return norm->forward_relu(in[0]); }, {x}, consumer,
                         {norm->running_mean, norm->running_var});
}

}  // namespace

// ---- Dense layer ----------------------------------------------------------------------------------

DenseLayer::DenseLayer(int64_t in_channels, const DenseNetConfig& config, Generator& gen)
    : memory_efficient_(config.memory_efficient) {
  norm1_ = register_module("norm1", make_bn(in_channels, config));
  conv1_ = register_module("conv1", make_conv(in_channels, config.bottleneck, 1, Conv2dOptions::valid(), gen));
  norm2_ = register_module("norm2", make_bn(config.bottleneck, config));
  conv2_ = register_module("conv2", make_conv(config.bottleneck, config.growth, 3, Conv2dOptions::symmetric(1), gen));
}

void DenseLayer::fold_batch_norms(bool on) { fold_conv1_norm2_.set(on, *conv1_, *norm2_); }

Tensor DenseLayer::forward(const Tensor& x, const Tensor& out) const {
  // x [N, H, W, in] is a view of the block buffer; h [N, H, W, bottleneck]; fresh [N, H, W, growth].
  // Folded (inference): h = relu(norm2(conv1(.))) in one folded convolution + bias + ReLU.
  const FoldedConv2d* folded = fold_conv1_norm2_.active(*this, x);
  const Tensor h = bn_relu_then(memory_efficient_, norm1_, x, [this, folded](const Tensor& z) {
    return folded ? folded->forward_relu(z) : conv1_->forward(z);
  });
  const Tensor fresh =
      folded ? conv2_->forward(h, out)
             : bn_relu_then(memory_efficient_, norm2_, h, [this, &out](const Tensor& z) { return conv2_->forward(z, out); });
  const Tensor y = concat_channels({x, fresh});  // a view of the block buffer when fresh was written into it
  return output("dense layer: bn-relu-conv1x1-bn-relu-conv3x3, concat", y, {this},
                x.size(1) * x.size(2) * macs_per_pixel());
}

int64_t DenseLayer::macs_per_pixel() const {
  const Conv2dSpec& a = conv1_->spec();
  const Conv2dSpec& b = conv2_->spec();
  return a.in_channels * a.out_channels * a.kernel_h * a.kernel_w +
         b.in_channels * b.out_channels * b.kernel_h * b.kernel_w;
}

// ---- Dense block ----------------------------------------------------------------------------------

DenseBlock::DenseBlock(int64_t in_channels, int64_t layers, const DenseNetConfig& config, Generator& gen)
    : in_channels_(in_channels), growth_(config.growth), block_buffers_(config.block_buffers) {
  ENGINE_CHECK(layers > 0) << "DenseBlock: needs at least one layer";
  int64_t channels = in_channels;
  for (int64_t l = 1; l <= layers; ++l) {
    layers_.push_back(register_module("denselayer" + std::to_string(l),
                                      std::make_shared<DenseLayer>(channels, config, gen)));
    channels += config.growth;
  }
  out_channels_ = channels;
}

void DenseBlock::set_memory_efficient(bool on) {
  for (const auto& layer : layers_) layer->set_memory_efficient(on);
}

Tensor DenseBlock::forward(const Tensor& x) const {
  ENGINE_CHECK(x.ndim() == 4 && x.size(3) == in_channels_)
      << path() << ": expected [N, H, W, " << in_channels_ << "], got " << x.str();
  const int64_t n = x.size(0), h = x.size(1), w = x.size(2);
  Tensor features;
  Tensor buffer;
  if (block_buffers_) {
    // [N, H, W, out_channels]: channels [0, in) = the block input, then growth_ channels per layer.
    buffer = Tensor::empty({n, h, w, out_channels_}, x.device(), x.dtype());  // bf16 activations: a bf16 buffer
    features = copy_into(x, buffer.slice(-1, 0, in_channels_));
  } else {
    features = x;
  }
  int64_t channels = in_channels_;
  for (const auto& layer : layers_) {
    const Tensor out = block_buffers_ ? buffer.slice(-1, channels, channels + growth_) : Tensor();
    features = layer->forward(features, out);
    channels += growth_;
  }
  return features;
}

// ---- Transition -----------------------------------------------------------------------------------

Transition::Transition(int64_t in_channels, int64_t out_channels, const DenseNetConfig& config, Generator& gen)
    : memory_efficient_(config.memory_efficient) {
  norm_ = register_module("norm", make_bn(in_channels, config));
  conv_ = register_module("conv", make_conv(in_channels, out_channels, 1, Conv2dOptions::valid(), gen));
}

Tensor Transition::forward(const Tensor& x) const {
  const Tensor c = bn_relu_then(memory_efficient_, norm_, x, [this](const Tensor& z) { return conv_->forward(z); });
  return output("transition: bn-relu-conv1x1-avgpool2x2/2", avg_pool2d(c, Pool2dOptions::square(2, 2), true),
                {this}, conv_macs(*conv_, c));
}

// ---- Features -------------------------------------------------------------------------------------

DenseNetFeatures::DenseNetFeatures(const DenseNetConfig& config, Generator& gen)
    : memory_efficient_(config.memory_efficient) {
  ENGINE_CHECK(!config.block_layers.empty() && config.growth > 0 && config.bottleneck > 0 &&
               config.stem_channels > 0 && config.compression > 0 && config.compression <= 1)
      << "DenseNet: invalid configuration (blocks, growth, bottleneck, stem channels > 0; compression in (0, 1])";
  conv0_ = register_module("conv0", make_conv(3, config.stem_channels, 7, Conv2dOptions::symmetric(3, 2), gen));
  norm0_ = register_module("norm0", make_bn(config.stem_channels, config));
  int64_t channels = config.stem_channels;
  for (size_t b = 0; b < config.block_layers.size(); ++b) {
    const std::string index = std::to_string(b + 1);
    auto block = std::make_shared<DenseBlock>(channels, config.block_layers[b], config, gen);
    blocks_.push_back(register_module("denseblock" + index, block));
    channels = block->out_channels();
    if (b + 1 < config.block_layers.size()) {
      const auto reduced = static_cast<int64_t>(std::floor(config.compression * static_cast<double>(channels)));
      transitions_.push_back(register_module("transition" + index,
                                             std::make_shared<Transition>(channels, reduced, config, gen)));
      channels = reduced;
    }
  }
  norm5_ = register_module("norm5", make_bn(channels, config));
  out_channels_ = channels;
}

void DenseNetFeatures::set_memory_efficient(bool on) {
  memory_efficient_ = on;
  for (const auto& block : blocks_) block->set_memory_efficient(on);
  for (const auto& transition : transitions_) transition->set_memory_efficient(on);
}

void DenseNetFeatures::fold_batch_norms(bool on) { fold_conv0_norm0_.set(on, *conv0_, *norm0_); }

Tensor DenseNetFeatures::forward(const Tensor& images) const {
  // a = relu(norm0(conv0(images))), observed as the part "conv0", then max-pooled.
  const auto pool = [this](const Tensor& a) {
    part_output("conv0", "conv 7x7/2 + norm0 + relu", a, {conv0_.get(), norm0_.get()}, conv_macs(*conv0_, a));
    return max_pool2d(a, Pool2dOptions::square(3, 2, 1));
  };
  Tensor x;
  if (const FoldedConv2d* folded = fold_conv0_norm0_.active(*this, images)) {
    x = pool(folded->forward_relu(images));
  } else {
    x = bn_relu_then(memory_efficient_, norm0_, conv0_->forward(images), pool);
  }
  x = part_output("pool0", "max-pool 3x3/2 pad 1", x, {}, 0);
  for (size_t b = 0; b < blocks_.size(); ++b) {
    x = blocks_[b]->forward(x);
    if (b < transitions_.size()) x = transitions_[b]->forward(x);
  }
  return part_output("norm5", "bn + relu", norm5_->forward_relu(x), {norm5_.get()}, 0);
}

// ---- DenseNet -------------------------------------------------------------------------------------

DenseNet::DenseNet(const std::string& arch, const DenseNetConfig& config, Head head, int64_t input_size,
                   Generator& gen)
    : Net(arch, head, config.flavor, input_size), config_(config) {
  ENGINE_USER_CHECK(input_size >= min_input_size())
      << arch << ": input size " << input_size << " is below the minimum " << min_input_size();
  features_ = register_module("features", std::make_shared<DenseNetFeatures>(config, gen));
  finish("classifier", features_->out_channels(), gen);
}

void DenseNet::set_memory_efficient(bool on) {
  config_.memory_efficient = on;
  features_->set_memory_efficient(on);
}

std::vector<std::pair<std::string, std::string>> DenseNet::stage_units() const {
  std::vector<std::pair<std::string, std::string>> units{{"stem", features_->path() + ".pool0"}};
  for (size_t b = 0; b < config_.block_layers.size(); ++b) {
    const std::string block = std::to_string(b + 1);
    units.emplace_back("block" + block, features_->path() + ".denseblock" + block + ".denselayer" +
                                            std::to_string(config_.block_layers[b]));
  }
  return units;
}

std::pair<int64_t, int64_t> DenseNet::feature_grid(int64_t height, int64_t width) const {
  auto grid = [this](int64_t s) {
    s = (s + 2 * 3 - 7) / 2 + 1;  // conv0 7x7/2 pad 3
    s = (s + 2 * 1 - 3) / 2 + 1;  // pool0 3x3/2 pad 1
    for (size_t t = 0; t + 1 < config_.block_layers.size(); ++t) s /= 2;  // transitions' 2x2/2 pools
    return s;
  };
  ENGINE_USER_CHECK(height >= min_input_size() && width >= min_input_size())
      << arch() << ": input " << height << "x" << width << " is below the minimum " << min_input_size();
  const int64_t h = grid(height), w = grid(width);
  ENGINE_USER_CHECK(h >= 1 && w >= 1) << arch() << ": input " << height << "x" << width
                                      << " leaves no feature map after the transitions";
  return {h, w};
}

Tensor DenseNet::run_backbone(const Tensor& images) const { return features_->forward(images); }

}  // namespace nets
