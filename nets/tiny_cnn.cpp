#include "nets/tiny_cnn.h"

namespace nets {

using namespace engine;

TinyCnn::TinyCnn(int64_t width, Generator& gen) {
  const BatchNormOptions bn = BatchNormOptions::torch();
  conv1_ = register_module("conv1", std::make_shared<Conv2d>(Conv2dSpec{3, width, 3, 3, Conv2dOptions::symmetric(1), false}, gen));
  bn1_ = register_module("bn1", std::make_shared<BatchNorm>(BatchNormSpec{width, bn, true, true}));
  conv2_ = register_module("conv2", std::make_shared<Conv2d>(Conv2dSpec{width, 2 * width, 3, 3, Conv2dOptions::symmetric(1), false}, gen));
  bn2_ = register_module("bn2", std::make_shared<BatchNorm>(BatchNormSpec{2 * width, bn, true, true}));
  fc_ = register_module("fc", std::make_shared<Linear>(2 * width, 1, true, gen));
}

Tensor TinyCnn::forward(const Tensor& images) const {
  Tensor h = bn1_->forward_relu(conv1_->forward(images));
  h = max_pool2d(h, Pool2dOptions::square(2, 2));
  h = bn2_->forward_relu(conv2_->forward(h));
  return fc_->forward(global_avg_pool(h));
}

}  // namespace nets
