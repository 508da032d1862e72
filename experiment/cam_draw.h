// Class activation maps, the pictures: a map blended over its radiograph as an RGB image (the grey image
// under a jet-like colour map of M / max M at 45% opacity, the true box in green, the map's box in white,
// the peak as a black-edged white cross), drawn on the charts' canvas (chart_png.h), and its PNG bytes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/image.h"
#include "experiment/cam_maps.h"

namespace experiment {

struct Rgb8 {
  int height = 0, width = 0;
  std::vector<uint8_t> pixels;  // [height, width, 3]
};
// The jet-like colour of v in [0, 1] (dark blue, blue, cyan, yellow, red, dark red); clamped.
void colour_of(float v, uint8_t rgb[3]);
// The grey image (values 0..255, [height, width]) under the colour of map / max(map, 0+) at `opacity`;
// the true box in green (when not empty), the map's box in white, the peak as a black-edged white cross.
Rgb8 blend_heatmap(const std::vector<float>& grey, const Heatmap& map, const Localisation& where, const Box& truth,
                   float opacity = 0.45f);
std::vector<uint8_t> encode_png_rgb(const Rgb8& image);
// The colour map's key as an inline <svg> of width x 48 pixels: a bar through colour_of's stops (a
// linear gradient, exact, since the map is piecewise linear between them) with ticks at 0, 0.25, ...,
// 1 and the caption "map value / its maximum".
std::string colour_bar_svg(int width);
// `image` scaled so that its longest side is at most max_side (area averaging); unchanged when smaller.
Rgb8 thumbnail(const Rgb8& image, int max_side);
// The grey image (0..255) of a decoded image: the mean of its channels.
std::vector<float> grey_of(const data::Image& image);

}  // namespace experiment
