// Images for the loader: hardened decoding (PNG and JPEG only, via stb_image), resizing, normalisation
// and augmentation.
//
// Decoding keeps grayscale as one channel (and collapses RGB whose three channels are equal, as most
// MURA "RGB" files are) so that caches stay small; to_three_channels() and the renderer replicate it.
// Alpha is dropped (PIL's convert('RGB'), which Keras's loader uses); palettes are expanded; 16-bit
// samples are scaled to [0, 255] by v / 257. Pixel values are floats in [0, 255].
//
// The loader's path for one image: decode -> resize to the model's size (float) -> quantise to uint8
// (what the cache stores) -> render: flip/rotate (sampling the uint8 image) and normalise into the
// float batch. First and later epochs share every step after decoding, so they agree bit for bit.
//
// Resize modes (output pixel o of an axis of length `out` reading an axis of length `in`, s = in/out):
//   nearest  - source floor((o + 0.5) s), as PIL's NEAREST (Keras's load_img default, the study's);
//   bilinear - source (o + 0.5) s - 0.5 (half-pixel centres), clamped at the edges, 2 taps;
//   area     - when shrinking, each output pixel averages the input interval [o s, (o+1) s) weighted by
//              overlap (anti-aliased); when enlarging, bilinear. The default.
// Normalisation of a value v in [0, 255] per mode (x = v / 255):
//   study - x (the study's 1/255 rescale);  torch - (x - mean_c) / std_c with ImageNet's
//   mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225);  tf - v / 127.5 - 1, in [-1, 1].
// Augmentation: horizontal flip (probability 1/2) and rotation by an angle uniform in [-max, max]
// degrees about the image centre (counter-clockwise as displayed, bilinear, black outside), drawn from
// engine::Generator(seed, stream(epoch, item)): the same image in the same epoch always gets the same
// transform, whichever thread renders it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace data {

struct Image {
  int height = 0, width = 0, channels = 0;  // channels 1 or 3
  std::vector<float> pixels;                // [height, width, channels], values in [0, 255]
};

struct ImageU8 {
  int height = 0, width = 0, channels = 0;  // channels 1 or 3
  std::vector<uint8_t> pixels;              // [height, width, channels]
};

// A read-only view of uint8 pixels (a cache entry).
struct ImageU8View {
  const uint8_t* pixels = nullptr;
  int height = 0, width = 0, channels = 0;
};

// ---------------------------------------------------------------------------------------------------
// Decoding

enum class ImageFormat : uint8_t { unknown, png, jpeg };
// From the magic bytes: PNG's 8-byte signature, JPEG's FF D8 FF.
ImageFormat sniff_image_format(const uint8_t* bytes, size_t size);

struct DecodeLimits {
  int max_side = 8192;                    // pixels along either side
  int64_t max_pixels = 32 << 20;          // width * height
  uint64_t max_file_bytes = 64u << 20;
};

// Decodes a PNG or JPEG held in memory. Any other content, a corrupt or truncated file, or one over the
// limits throws engine::Error whose message starts with `name` (the file's path) and says what is wrong.
Image decode_image(const uint8_t* bytes, size_t size, const std::string& name, const DecodeLimits& limits = {});
Image decode_image_file(const std::string& path, const DecodeLimits& limits = {});

// Gray replicated to R, G, B; a 3-channel image unchanged.
Image to_three_channels(const Image& image);
// [height, width, 3] f32 on the CPU (gray replicated), values in [0, 255].
engine::Tensor image_to_tensor(const Image& image);

// ---------------------------------------------------------------------------------------------------
// Resizing and quantisation

enum class ResizeMode : uint8_t { nearest, bilinear, area };
const char* resize_mode_name(ResizeMode mode);
ResizeMode parse_resize_mode(const std::string& name);  // "nearest" | "bilinear" | "area"

Image resize_image(const Image& image, int out_height, int out_width, ResizeMode mode);
// Round to nearest, clamped to [0, 255].
ImageU8 quantize_u8(const Image& image);
// decode -> resize -> quantise, the loader's first-epoch path for one file.
ImageU8 load_resized_u8(const std::string& path, int height, int width, ResizeMode mode,
                        const DecodeLimits& limits = {});

// ---------------------------------------------------------------------------------------------------
// Normalisation, augmentation, rendering into a batch

enum class NormMode : uint8_t { study, torch, tf };
const char* norm_mode_name(NormMode mode);
NormMode parse_norm_mode(const std::string& name);  // "study" | "torch" | "tf"

// out_c = v * scale[c] + offset[c] for v in [0, 255].
struct Normalizer {
  float scale[3] = {1, 1, 1};
  float offset[3] = {0, 0, 0};
  static Normalizer make(NormMode mode);
};

struct AugmentOptions {
  bool flip = false;
  float max_rotation_degrees = 0.0f;  // 0 = no rotation; the MURA paper used 30
  bool enabled() const { return flip || max_rotation_degrees > 0.0f; }
  // Throws engine::Error unless max_rotation_degrees is a finite number in [0, 180] (NaN or a negative
  // angle would otherwise silently mean "no rotation").
  void validate() const;
};

struct AugmentParams {
  bool flip = false;
  float angle_degrees = 0.0f;
};

// The transform of item `item` in epoch `epoch` (identity when options are all off).
AugmentParams draw_augment(const AugmentOptions& options, uint64_t seed, uint64_t epoch, uint64_t item);

// Writes [height, width, 3] floats (the source's size) to `out`: flip, then rotation, then
// normalisation; gray sources are replicated to three channels.
void render_image(const ImageU8View& source, const AugmentParams& params, const Normalizer& norm, float* out);

}  // namespace data
