// The small module the training-step tests train: a two-layer perceptron over flattened images
// [N, 4, 4, 3] -> logits [N, 1], its weights drawn from `seed`.
#pragma once
#include <cstdint>
#include <memory>

#include "engine/layers.h"
#include "engine/ops.h"

namespace test_support {

class SmallNet : public engine::Module {
 public:
  explicit SmallNet(uint64_t seed) {
    engine::Generator gen(seed);
    hidden_ = register_module("hidden", std::make_shared<engine::Linear>(48, 8, true, gen));
    out_ = register_module("out", std::make_shared<engine::Linear>(8, 1, true, gen));
  }
  engine::Tensor forward(const engine::Tensor& images) const {
    return out_->forward(engine::relu(hidden_->forward(engine::flatten(images))));
  }

 private:
  std::shared_ptr<engine::Linear> hidden_, out_;
};

}  // namespace test_support
