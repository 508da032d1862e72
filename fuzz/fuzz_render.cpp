// libFuzzer target: rendering (data::render_image: flip, rotation with its fixed-point interior and
// checked border, normalisation) on small images of any shape and any angle, including the awkward
// ones (multiples of 90 degrees, tiny and huge angles). ASan catches a tap outside the source.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "data/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 8) return 0;
  const int h = 1 + bytes[0] % 64, w = 1 + bytes[1] % 64, c = (bytes[2] & 1) ? 3 : 1;
  float angle = 0;
  std::memcpy(&angle, bytes + 3, sizeof(float));
  if (!std::isfinite(angle)) angle = 0;
  angle = std::fmod(angle, 720.0f);
  const bool flip = bytes[7] & 1;
  // The image in its own buffer (exactly its size, so ASan sees any read past it).
  std::vector<uint8_t> pixels(static_cast<size_t>(h) * w * c);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = 8 + i < size ? bytes[8 + i] : static_cast<uint8_t>(i);
  data::AugmentParams params;
  params.flip = flip;
  params.angle_degrees = angle;
  std::vector<float> out(static_cast<size_t>(h) * w * 3);
  data::render_image({pixels.data(), h, w, c}, params, data::Normalizer::make(data::NormMode::study), out.data());
  for (float v : out)
    if (!(v >= -1e-6f && v <= 1.0f + 1e-5f)) std::abort();  // a bilinear mix of [0, 255] / 255
  return 0;
}
