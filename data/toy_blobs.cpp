#include "data/toy_blobs.h"

#include <algorithm>
#include <vector>

namespace data {

ToyBatch make_toy_blobs(int64_t count, int64_t size, engine::Generator& gen) {
  std::vector<float> pixels(count * size * size * 3);
  std::vector<float> labels(count);
  const int64_t square = std::max<int64_t>(2, size / 5);
  for (int64_t n = 0; n < count; ++n) {
    float* image = pixels.data() + n * size * size * 3;
    const float background = gen.uniform(0.0f, 0.3f);
    for (int64_t i = 0; i < size * size; ++i) {
      const float v = std::clamp(background + 0.15f * gen.normal(), 0.0f, 1.0f);
      for (int c = 0; c < 3; ++c) image[i * 3 + c] = v;
    }
    labels[n] = static_cast<float>(n % 2);  // balanced
    if (labels[n] > 0.5f) {
      const int64_t top = gen.below(size - square + 1), left = gen.below(size - square + 1);
      const float brightness = gen.uniform(0.6f, 1.0f);
      for (int64_t y = top; y < top + square; ++y)
        for (int64_t x = left; x < left + square; ++x)
          for (int c = 0; c < 3; ++c) image[(y * size + x) * 3 + c] = brightness;
    }
  }
  return {engine::Tensor::from_vector({count, size, size, 3}, pixels), engine::Tensor::from_vector({count}, labels)};
}

}  // namespace data
