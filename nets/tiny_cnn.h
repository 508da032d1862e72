// A tiny CNN for the demo and the end-to-end tests (the real nets come with DenseNet and
// Inception-ResNet-v2): two conv-BN-ReLU stages, max-pooling, global average pooling and a one-logit
// linear head.
//   [N, H, W, 3] -> conv3x3(3->c) BN ReLU -> maxpool 2/2 -> conv3x3(c->2c) BN ReLU -> GAP -> linear(2c->1)
#pragma once
#include <memory>

#include "engine/engine.h"

namespace nets {

class TinyCnn : public engine::Module {
 public:
  TinyCnn(int64_t width, engine::Generator& gen);
  engine::Tensor forward(const engine::Tensor& images) const;  // [N, H, W, 3] -> logits [N, 1]

 private:
  std::shared_ptr<engine::Conv2d> conv1_, conv2_;
  std::shared_ptr<engine::BatchNorm> bn1_, bn2_;
  std::shared_ptr<engine::Linear> fc_;
};

}  // namespace nets
