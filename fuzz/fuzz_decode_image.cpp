// libFuzzer target: the hardened decoder (data::decode_image) on arbitrary bytes, then the loader's
// steps on whatever decodes (resize in every mode, quantise, render with flip and rotation). Only
// engine::Error may come out; the decoded image must be consistent; ASan/UBSan watch the rest.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "data/image.h"
#include "engine/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  data::DecodeLimits limits;
  limits.max_side = 4096;
  limits.max_pixels = 4 << 20;  // keep each run small
  data::Image image;
  try {
    image = data::decode_image(bytes, size, "fuzz-input", limits);
  } catch (const engine::Error&) {
    return 0;
  }
  const bool consistent = image.width > 0 && image.height > 0 && image.width <= limits.max_side &&
                          image.height <= limits.max_side && (image.channels == 1 || image.channels == 3) &&
                          image.pixels.size() == static_cast<size_t>(image.width) * image.height * image.channels;
  if (!consistent) std::abort();
  for (float v : image.pixels)
    if (!(v >= 0.0f && v <= 255.0f)) std::abort();

  const uint8_t selector = size > 0 ? bytes[size - 1] : 0;
  const int out_h = 1 + selector % 19, out_w = 1 + (selector / 19) % 23;
  for (auto mode : {data::ResizeMode::nearest, data::ResizeMode::bilinear, data::ResizeMode::area}) {
    const data::Image resized = data::resize_image(image, out_h, out_w, mode);
    if (resized.pixels.size() != static_cast<size_t>(out_h) * out_w * image.channels) std::abort();
    const data::ImageU8 u8 = data::quantize_u8(resized);
    data::AugmentParams params;
    params.flip = selector & 1;
    params.angle_degrees = static_cast<float>(static_cast<int>(selector) - 128) * 0.7f;
    std::vector<float> out(static_cast<size_t>(out_h) * out_w * 3);
    data::render_image({u8.pixels.data(), u8.height, u8.width, u8.channels}, params,
                       data::Normalizer::make(data::NormMode::torch), out.data());
  }
  return 0;
}
