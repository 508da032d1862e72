// Class activation maps, the pictures (see cam_draw.h): the colour map, the blend, the boxes and the peak
// drawn on the charts' canvas.
#include "experiment/cam_draw.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "data/image_write.h"
#include "experiment/chart_png.h"
#include "experiment/svg.h"

namespace experiment {

void colour_of(float v, uint8_t rgb[3]) {
  // Jet: piecewise linear through dark blue (0), blue (1/8), cyan (3/8), yellow (5/8), red (7/8), dark red (1).
  v = std::isfinite(v) ? std::clamp(v, 0.0f, 1.0f) : 0.0f;
  auto ramp = [](float t) { return std::clamp(t, 0.0f, 1.0f); };
  const float r = ramp(std::min(4.0f * v - 1.5f, -4.0f * v + 4.5f));
  const float g = ramp(std::min(4.0f * v - 0.5f, -4.0f * v + 3.5f));
  const float b = ramp(std::min(4.0f * v + 0.5f, -4.0f * v + 2.5f));
  rgb[0] = static_cast<uint8_t>(std::lround(255 * r));
  rgb[1] = static_cast<uint8_t>(std::lround(255 * g));
  rgb[2] = static_cast<uint8_t>(std::lround(255 * b));
}

namespace {

constexpr Rgb kTruthRgb{0, 230, 0}, kWhite{255, 255, 255}, kBlack{0, 0, 0};

// A cross centred on (cx, cy) with arms `arm` pixels long: white, 3 pixels wide, edged in black.
void draw_cross(Canvas& canvas, int cx, int cy, int arm) {
  canvas.fill(cx - arm - 1, cy - 2, cx + arm + 1, cy + 2, kBlack);
  canvas.fill(cx - 2, cy - arm - 1, cx + 2, cy + arm + 1, kBlack);
  canvas.fill(cx - arm, cy - 1, cx + arm, cy + 1, kWhite);
  canvas.fill(cx - 1, cy - arm, cx + 1, cy + arm, kWhite);
}

}  // namespace

Rgb8 blend_heatmap(const std::vector<float>& grey, const Heatmap& map, const Localisation& where, const Box& truth,
                   float opacity) {
  ENGINE_CHECK(grey.size() == map.values.size() && !grey.empty())
      << "blend_heatmap: the image (" << grey.size() << " pixels) and the map (" << map.height << "x" << map.width
      << ") differ in size";
  Canvas canvas(map.width, map.height);
  const float scale = where.valid && where.max > 0 ? 1.0f / where.max : 0.0f;
  for (int y = 0; y < map.height; ++y)
    for (int x = 0; x < map.width; ++x) {
      const size_t i = static_cast<size_t>(y) * map.width + x;
      uint8_t c[3], blended[3];
      colour_of(std::max(0.0f, map.values[i]) * scale, c);
      for (int k = 0; k < 3; ++k) {
        const float v = (1.0f - opacity) * grey[i] + opacity * c[k];
        blended[k] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
      }
      canvas.blend(x, y, Rgb{blended[0], blended[1], blended[2]}, 1);
    }
  const int thickness = std::max(1, std::min(map.height, map.width) / 160);
  canvas.outline(truth.x0, truth.y0, truth.x1, truth.y1, thickness + 1, kTruthRgb);
  if (where.valid) {
    canvas.outline(where.box.x0, where.box.y0, where.box.x1, where.box.y1, thickness, kWhite);
    draw_cross(canvas, where.peak_x, where.peak_y, 3 + 2 * thickness);
  }
  return {map.height, map.width, canvas.pixels()};
}

std::vector<uint8_t> encode_png_rgb(const Rgb8& image) {
  return data::encode_png(rgb_png(image.width, image.height, image.pixels));
}

std::string colour_bar_svg(int width) {
  const double left = 12, right = width - 12.0, bar_top = 4, bar_height = 14;
  std::ostringstream o;
  o << "<svg class=\"colour-bar\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width
    << "\" height=\"48\" viewBox=\"0 0 " << width << " 48\" font-family=\"" << kSvgFontFamily
    << "\" font-size=\"10\">\n<defs><linearGradient id=\"colour-map\" x1=\"0\" x2=\"1\" y1=\"0\" y2=\"0\">";
  for (const double stop : {0.0, 0.125, 0.375, 0.625, 0.875, 1.0}) {
    uint8_t c[3];
    colour_of(static_cast<float>(stop), c);
    char colour[8];
    std::snprintf(colour, sizeof colour, "#%02x%02x%02x", c[0], c[1], c[2]);
    o << "<stop offset=\"" << stop << "\" stop-color=\"" << colour << "\"/>";
  }
  o << "</linearGradient></defs>\n<rect x=\"" << left << "\" y=\"" << bar_top << "\" width=\"" << right - left
    << "\" height=\"" << bar_height << "\" fill=\"url(#colour-map)\" stroke=\"#888\"/>\n";
  for (const double v : {0.0, 0.25, 0.5, 0.75, 1.0}) {
    const double x = left + v * (right - left);
    char label[32];
    std::snprintf(label, sizeof label, "%g", v);
    o << "<line x1=\"" << x << "\" x2=\"" << x << "\" y1=\"" << bar_top + bar_height << "\" y2=\""
      << bar_top + bar_height + 3 << "\" stroke=\"#444\"/><text x=\"" << x << "\" y=\"" << bar_top + bar_height + 13
      << "\" text-anchor=\"middle\">" << label << "</text>\n";
  }
  o << "<text x=\"" << width / 2 << "\" y=\"44\" text-anchor=\"middle\">map value / its maximum (45% over the "
       "radiograph)</text>\n</svg>";
  return o.str();
}

Rgb8 thumbnail(const Rgb8& image, int max_side) {
  const int longest = std::max(image.height, image.width);
  if (longest <= max_side) return image;
  data::Image f;
  f.height = image.height;
  f.width = image.width;
  f.channels = 3;
  f.pixels.assign(image.pixels.begin(), image.pixels.end());
  const double s = static_cast<double>(max_side) / longest;
  const int h = std::max(1, static_cast<int>(std::lround(image.height * s)));
  const int w = std::max(1, static_cast<int>(std::lround(image.width * s)));
  const data::ImageU8 small = data::quantize_u8(data::resize_image(f, h, w, data::ResizeMode::area));
  return {h, w, small.pixels};
}

std::vector<float> grey_of(const data::Image& image) {
  std::vector<float> g(static_cast<size_t>(image.height) * image.width);
  for (size_t i = 0; i < g.size(); ++i) {
    float s = 0;
    for (int c = 0; c < image.channels; ++c) s += image.pixels[i * image.channels + c];
    g[i] = s / image.channels;
  }
  return g;
}

}  // namespace experiment
