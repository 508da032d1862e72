// Resizing, quantisation, normalisation, augmentation and rendering (formulas in image.h).
//
// Resizing is separable: for each axis a table of taps (first source index, weights) per output
// index, applied along rows then columns. Rendering is the loader's hot path on cached epochs: without
// rotation it is a table lookup per sample (uint8 -> normalised float), with rotation a bilinear sample.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "data/image.h"
#include "engine/check.h"
#include "engine/random.h"

namespace data {

Image to_three_channels(const Image& image) {
  if (image.channels == 3) return image;
  ENGINE_CHECK(image.channels == 1) << "to_three_channels: images have 1 or 3 channels, got " << image.channels;
  Image out;
  out.height = image.height;
  out.width = image.width;
  out.channels = 3;
  out.pixels.resize(image.pixels.size() * 3);
  for (size_t i = 0; i < image.pixels.size(); ++i)
    out.pixels[3 * i] = out.pixels[3 * i + 1] = out.pixels[3 * i + 2] = image.pixels[i];
  return out;
}

engine::Tensor image_to_tensor(const Image& image) {
  const Image rgb = to_three_channels(image);
  return engine::Tensor::from_vector({rgb.height, rgb.width, 3}, rgb.pixels);
}

// ---------------------------------------------------------------------------------------------------
// Resizing

const char* resize_mode_name(ResizeMode mode) {
  switch (mode) {
    case ResizeMode::nearest: return "nearest";
    case ResizeMode::bilinear: return "bilinear";
    case ResizeMode::area: return "area";
  }
  return "?";
}

ResizeMode parse_resize_mode(const std::string& name) {
  if (name == "nearest") return ResizeMode::nearest;
  if (name == "bilinear") return ResizeMode::bilinear;
  if (name == "area") return ResizeMode::area;
  ENGINE_FAIL() << "unknown resize mode '" << name << "' (use nearest, bilinear or area)";
}

namespace {

// For each output index: taps [first, first + count) of the source axis with their weights.
struct AxisTaps {
  std::vector<int> first, count;
  std::vector<float> weights;  // `max_taps` per output index
  int max_taps = 1;
};

AxisTaps make_taps(int in, int out, ResizeMode mode) {
  AxisTaps taps;
  taps.first.resize(out);
  taps.count.resize(out);
  const double scale = static_cast<double>(in) / out;
  if (mode == ResizeMode::area && in > out) {
    taps.max_taps = static_cast<int>(std::ceil(scale)) + 1;
    taps.weights.assign(static_cast<size_t>(out) * taps.max_taps, 0.0f);
    for (int o = 0; o < out; ++o) {
      const double begin = o * scale, end = (o + 1) * scale;
      const int first = static_cast<int>(std::floor(begin));
      int last = std::min(in - 1, static_cast<int>(std::ceil(end)) - 1);
      last = std::min(last, first + taps.max_taps - 1);
      taps.first[o] = first;
      taps.count[o] = last - first + 1;
      for (int i = first; i <= last; ++i) {
        const double overlap = std::min(end, i + 1.0) - std::max(begin, static_cast<double>(i));
        taps.weights[static_cast<size_t>(o) * taps.max_taps + (i - first)] =
            static_cast<float>(std::max(0.0, overlap) / scale);
      }
    }
    return taps;
  }
  if (mode == ResizeMode::nearest) {
    taps.max_taps = 1;
    taps.weights.assign(out, 1.0f);
    for (int o = 0; o < out; ++o) {
      taps.first[o] = std::min(in - 1, static_cast<int>(std::floor((o + 0.5) * scale)));
      taps.count[o] = 1;
    }
    return taps;
  }
  // Bilinear (also area when enlarging).
  taps.max_taps = 2;
  taps.weights.assign(static_cast<size_t>(out) * 2, 0.0f);
  for (int o = 0; o < out; ++o) {
    const double centre = std::clamp((o + 0.5) * scale - 0.5, 0.0, static_cast<double>(in - 1));
    const int i0 = static_cast<int>(std::floor(centre));
    const double frac = centre - i0;
    taps.first[o] = i0;
    if (i0 + 1 < in && frac > 0) {
      taps.count[o] = 2;
      taps.weights[2 * o] = static_cast<float>(1.0 - frac);
      taps.weights[2 * o + 1] = static_cast<float>(frac);
    } else {
      taps.count[o] = 1;
      taps.weights[2 * o] = 1.0f;
    }
  }
  return taps;
}

}  // namespace

Image resize_image(const Image& image, int out_height, int out_width, ResizeMode mode) {
  ENGINE_CHECK(image.height > 0 && image.width > 0 && (image.channels == 1 || image.channels == 3) &&
               image.pixels.size() == static_cast<size_t>(image.height) * image.width * image.channels)
      << "resize_image: malformed image " << image.height << "x" << image.width << "x" << image.channels;
  ENGINE_CHECK(out_height > 0 && out_width > 0) << "resize_image: bad output size " << out_height << "x" << out_width;
  const int c = image.channels;
  const AxisTaps xt = make_taps(image.width, out_width, mode);
  const AxisTaps yt = make_taps(image.height, out_height, mode);

  // Rows: [in_h, out_w, c].
  std::vector<float> rows(static_cast<size_t>(image.height) * out_width * c);
  for (int y = 0; y < image.height; ++y) {
    const float* src = image.pixels.data() + static_cast<size_t>(y) * image.width * c;
    float* dst = rows.data() + static_cast<size_t>(y) * out_width * c;
    for (int o = 0; o < out_width; ++o) {
      const float* w = xt.weights.data() + static_cast<size_t>(o) * xt.max_taps;
      for (int ch = 0; ch < c; ++ch) {
        float sum = 0.0f;
        for (int k = 0; k < xt.count[o]; ++k) sum += w[k] * src[(xt.first[o] + k) * c + ch];
        dst[o * c + ch] = sum;
      }
    }
  }
  // Columns: [out_h, out_w, c].
  Image out;
  out.height = out_height;
  out.width = out_width;
  out.channels = c;
  out.pixels.assign(static_cast<size_t>(out_height) * out_width * c, 0.0f);
  const size_t row_len = static_cast<size_t>(out_width) * c;
  for (int o = 0; o < out_height; ++o) {
    float* dst = out.pixels.data() + o * row_len;
    const float* w = yt.weights.data() + static_cast<size_t>(o) * yt.max_taps;
    for (int k = 0; k < yt.count[o]; ++k) {
      const float* src = rows.data() + static_cast<size_t>(yt.first[o] + k) * row_len;
      const float wk = w[k];
      for (size_t i = 0; i < row_len; ++i) dst[i] += wk * src[i];
    }
  }
  return out;
}

ImageU8 quantize_u8(const Image& image) {
  ImageU8 out;
  out.height = image.height;
  out.width = image.width;
  out.channels = image.channels;
  out.pixels.resize(image.pixels.size());
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    const float v = std::clamp(image.pixels[i], 0.0f, 255.0f);
    out.pixels[i] = static_cast<uint8_t>(static_cast<int>(v + 0.5f));
  }
  return out;
}

ImageU8 load_resized_u8(const std::string& path, int height, int width, ResizeMode mode, const DecodeLimits& limits) {
  const Image decoded = decode_image_file(path, limits);
  if (decoded.height == height && decoded.width == width) return quantize_u8(decoded);
  return quantize_u8(resize_image(decoded, height, width, mode));
}

// ---------------------------------------------------------------------------------------------------
// Normalisation and augmentation

const char* norm_mode_name(NormMode mode) {
  switch (mode) {
    case NormMode::study: return "study";
    case NormMode::torch: return "torch";
    case NormMode::tf: return "tf";
  }
  return "?";
}

NormMode parse_norm_mode(const std::string& name) {
  if (name == "study") return NormMode::study;
  if (name == "torch") return NormMode::torch;
  if (name == "tf") return NormMode::tf;
  ENGINE_FAIL() << "unknown normalisation '" << name << "' (use study (/255), torch (ImageNet mean/std) or tf ([-1, 1]))";
}

Normalizer Normalizer::make(NormMode mode) {
  Normalizer n;
  switch (mode) {
    case NormMode::study:
      for (int c = 0; c < 3; ++c) n.scale[c] = 1.0f / 255.0f, n.offset[c] = 0.0f;
      break;
    case NormMode::torch: {
      const double mean[3] = {0.485, 0.456, 0.406}, stddev[3] = {0.229, 0.224, 0.225};
      for (int c = 0; c < 3; ++c) {
        n.scale[c] = static_cast<float>(1.0 / (255.0 * stddev[c]));
        n.offset[c] = static_cast<float>(-mean[c] / stddev[c]);
      }
      break;
    }
    case NormMode::tf:
      for (int c = 0; c < 3; ++c) n.scale[c] = 1.0f / 127.5f, n.offset[c] = -1.0f;
      break;
  }
  return n;
}

void AugmentOptions::validate() const {
  if (!(std::isfinite(max_rotation_degrees) && max_rotation_degrees >= 0.0f && max_rotation_degrees <= 180.0f)) {
    char got[32];
    std::snprintf(got, sizeof got, "%g", static_cast<double>(max_rotation_degrees));
    throw engine::Error(std::string("rotation must be a finite number of degrees in [0, 180] (the largest rotation ") +
                        "either way), got " + got);
  }
}

AugmentParams draw_augment(const AugmentOptions& options, uint64_t seed, uint64_t epoch, uint64_t item) {
  AugmentParams p;
  if (!options.enabled()) return p;
  // One stream per (epoch, item): independent of which worker renders the image, and when.
  engine::Generator gen(seed, (uint64_t(1) << 63) | (epoch << 40) | (item & ((uint64_t(1) << 40) - 1)));
  const float flip_draw = gen.uniform();
  const float angle_draw = gen.uniform(-1.0f, 1.0f);
  p.flip = options.flip && flip_draw < 0.5f;
  p.angle_degrees = options.max_rotation_degrees > 0 ? angle_draw * options.max_rotation_degrees : 0.0f;
  return p;
}

namespace {

// [lo, hi): the x (integers) of a row whose sample s = base + slope x keeps both bilinear taps inside
// [0, limit): 0.05 <= s <= limit - 1.05. The 0.05 px margin covers the fixed-point stepping's drift
// (under 0.5 / 65536 px a step, so below 0.035 px over 4096 pixels) and float rounding; two more pixels
// are given up at each end for the same reason.
void interior_range(float base, float slope, int limit, int width, int& lo, int& hi) {
  const float low_bound = 0.05f, high_bound = static_cast<float>(limit) - 1.05f;
  if (high_bound < low_bound) {  // fewer than two source pixels: every tap needs the checked path
    lo = hi = width;
    return;
  }
  if (slope == 0.0f) {
    const bool inside = base >= low_bound && base <= high_bound;
    lo = inside ? 0 : width;
    hi = inside ? width : width;
    return;
  }
  double a = (low_bound - base) / static_cast<double>(slope), b = (high_bound - base) / static_cast<double>(slope);
  if (a > b) std::swap(a, b);
  lo = static_cast<int>(std::max(0.0, std::min(static_cast<double>(width), std::ceil(a) + 2.0)));
  hi = static_cast<int>(std::max(0.0, std::min(static_cast<double>(width), std::floor(b) - 2.0)));
  if (hi < lo) lo = hi = width;
}

// Rotation: output (x, y) samples the (flipped) source at the inverse rotation about the centre,
//   sx = cx + cos (x - cx) - sin (y - cy),  sy = cy + sin (x - cx) + cos (y - cy),
// bilinearly; the flip (sx -> w - 1 - sx = 2 cx - sx) negates the x coefficients. Each row splits into
// an interior span (every tap inside: no checks) and border spans (taps outside read zero).
template <int C>
void rotate_render_channels(const ImageU8View& source, const AugmentParams& params, const Normalizer& norm,
                            float* out) {
  const int w = source.width, h = source.height;
  const uint8_t* src = source.pixels;
  const double radians = params.angle_degrees * 3.14159265358979323846 / 180.0;
  const float cos_a = static_cast<float>(std::cos(radians)), sin_a = static_cast<float>(std::sin(radians));
  const float cx = (w - 1) * 0.5f, cy = (h - 1) * 0.5f;
  const float flip = params.flip ? -1.0f : 1.0f;
  const float ax = flip * cos_a, bx = -flip * sin_a;  // sx = cx + ax (x - cx) + bx (y - cy)
  const float ay = sin_a, by = cos_a;                 // sy = cy + ay (x - cx) + by (y - cy)
  const size_t stride = static_cast<size_t>(w) * C;
  const float s0 = norm.scale[0], s1 = norm.scale[1], s2 = norm.scale[2];
  const float o0 = norm.offset[0], o1 = norm.offset[1], o2 = norm.offset[2];
  auto fetch = [&](int x, int y, int ch) -> float {
    if (x < 0 || y < 0 || x >= w || y >= h) return 0.0f;
    return src[static_cast<size_t>(y) * stride + static_cast<size_t>(x) * C + ch];
  };
  auto store = [&](float* dst, const float* v) {
    if (C == 1) {
      dst[0] = v[0] * s0 + o0, dst[1] = v[0] * s1 + o1, dst[2] = v[0] * s2 + o2;
    } else {
      dst[0] = v[0] * s0 + o0, dst[1] = v[1] * s1 + o1, dst[2] = v[2] * s2 + o2;
    }
  };
  auto border_pixel = [&](float sx, float sy, float* dst) {
    int x0 = static_cast<int>(sx), y0 = static_cast<int>(sy);
    x0 -= sx < static_cast<float>(x0);  // floor
    y0 -= sy < static_cast<float>(y0);
    const float fx = sx - static_cast<float>(x0), fy = sy - static_cast<float>(y0);
    float v[C];
    if (x0 < -1 || y0 < -1 || x0 >= w || y0 >= h) {
      for (int ch = 0; ch < C; ++ch) v[ch] = 0.0f;
    } else {
      for (int ch = 0; ch < C; ++ch)
        v[ch] = (1 - fy) * ((1 - fx) * fetch(x0, y0, ch) + fx * fetch(x0 + 1, y0, ch)) +
                fy * ((1 - fx) * fetch(x0, y0 + 1, ch) + fx * fetch(x0 + 1, y0 + 1, ch));
    }
    store(dst, v);
  };
  for (int y = 0; y < h; ++y) {
    const float row_x = cx - ax * cx + bx * (y - cy), row_y = cy - ay * cx + by * (y - cy);
    float* dst = out + static_cast<size_t>(y) * w * 3;
    int lo_x, hi_x, lo_y, hi_y;
    interior_range(row_x, ax, w, w, lo_x, hi_x);
    interior_range(row_y, ay, h, w, lo_y, hi_y);
    const int lo = std::max(lo_x, lo_y), hi = std::max(lo, std::min(hi_x, hi_y));
    for (int x = 0; x < lo; ++x) border_pixel(row_x + ax * x, row_y + ay * x, dst + 3 * x);
    // Interior: 16.16 fixed-point coordinates stepped per pixel, 8-bit interpolation weights, integer
    // bilinear sums (exact, so no rounding differences between runs), one conversion per sample.
    const int32_t step_x = static_cast<int32_t>(std::lround(ax * 65536.0f)), step_y = static_cast<int32_t>(std::lround(ay * 65536.0f));
    int32_t fsx = static_cast<int32_t>(std::lround((row_x + ax * lo) * 65536.0f));
    int32_t fsy = static_cast<int32_t>(std::lround((row_y + ay * lo) * 65536.0f));
    constexpr float kInv = 1.0f / 65536.0f;
    for (int x = lo; x < hi; ++x, fsx += step_x, fsy += step_y) {
      const int x0 = fsx >> 16, y0 = fsy >> 16;
      const int fx = (fsx >> 8) & 0xFF, fy = (fsy >> 8) & 0xFF;
      const uint8_t* p = src + static_cast<size_t>(y0) * stride + static_cast<size_t>(x0) * C;
      float v[C];
      for (int ch = 0; ch < C; ++ch) {
        const int top = p[ch] * 256 + (p[C + ch] - p[ch]) * fx;
        const int bottom = p[stride + ch] * 256 + (p[stride + C + ch] - p[stride + ch]) * fx;
        v[ch] = static_cast<float>(top * 256 + (bottom - top) * fy) * kInv;
      }
      store(dst + 3 * x, v);
    }
    for (int x = hi; x < w; ++x) border_pixel(row_x + ax * x, row_y + ay * x, dst + 3 * x);
  }
}

void rotate_render(const ImageU8View& source, const AugmentParams& params, const Normalizer& norm, float* out) {
  if (source.channels == 1) rotate_render_channels<1>(source, params, norm, out);
  else rotate_render_channels<3>(source, params, norm, out);
}

}  // namespace

void render_image(const ImageU8View& source, const AugmentParams& params, const Normalizer& norm, float* out) {
  const int h = source.height, w = source.width, c = source.channels;
  ENGINE_CHECK(source.pixels && h > 0 && w > 0 && (c == 1 || c == 3))
      << "render_image: malformed source " << h << "x" << w << "x" << c;
  const uint8_t* src = source.pixels;
  const bool rotate = std::fabs(params.angle_degrees) > 1e-4f;

  if (!rotate) {
    // A lookup table per channel: 256 values, normalised.
    float lut[3][256];
    for (int ch = 0; ch < 3; ++ch)
      for (int v = 0; v < 256; ++v) lut[ch][v] = static_cast<float>(v) * norm.scale[ch] + norm.offset[ch];
    for (int y = 0; y < h; ++y) {
      const uint8_t* row = src + static_cast<size_t>(y) * w * c;
      float* dst = out + static_cast<size_t>(y) * w * 3;
      if (c == 1) {
        if (params.flip) {
          for (int x = 0; x < w; ++x) {
            const uint8_t v = row[w - 1 - x];
            dst[3 * x] = lut[0][v], dst[3 * x + 1] = lut[1][v], dst[3 * x + 2] = lut[2][v];
          }
        } else {
          for (int x = 0; x < w; ++x) {
            const uint8_t v = row[x];
            dst[3 * x] = lut[0][v], dst[3 * x + 1] = lut[1][v], dst[3 * x + 2] = lut[2][v];
          }
        }
      } else {
        for (int x = 0; x < w; ++x) {
          const uint8_t* px = row + 3 * (params.flip ? w - 1 - x : x);
          dst[3 * x] = lut[0][px[0]], dst[3 * x + 1] = lut[1][px[1]], dst[3 * x + 2] = lut[2][px[2]];
        }
      }
    }
    return;
  }

  rotate_render(source, params, norm, out);
}

}  // namespace data
