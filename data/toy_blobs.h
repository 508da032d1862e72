// A generated binary task for the demo and the end-to-end tests: noisy dark images, half of which hold
// a small bright square somewhere (label 1). Learnable by a tiny CNN, impossible by chance.
#pragma once
#include "engine/random.h"
#include "engine/tensor.h"

namespace data {

struct ToyBatch {
  engine::Tensor images;  // [N, size, size, 3] in [0, 1]
  engine::Tensor labels;  // [N], 0 or 1
};

ToyBatch make_toy_blobs(int64_t count, int64_t size, engine::Generator& gen);

}  // namespace data
