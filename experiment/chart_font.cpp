// Text in the embedded TrueType font (see chart_font.h).
//
// A string is laid out with the font's advances and kerning at sub-pixel positions, each glyph
// rasterised by stb_truetype at its fractional offset into one coverage buffer over the string's box
// (per pixel the maximum of the glyphs' coverages, so that touching glyphs are not painted twice), and
// the buffer handed to the caller once.
#include "experiment/chart_font.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/check.h"

#define STB_TRUETYPE_IMPLEMENTATION
#define STBTT_STATIC
#include <stb/stb_truetype.h>

namespace experiment {

// The font file's bytes, generated at build time (cmake/embed_file.cmake).
extern const unsigned char kChartFontTtf[];
extern const std::size_t kChartFontTtf_size;

namespace {

const stbtt_fontinfo& font() {
  static const stbtt_fontinfo info = [] {
    stbtt_fontinfo f;
    const int offset = stbtt_GetFontOffsetForIndex(kChartFontTtf, 0);
    ENGINE_CHECK(kChartFontTtf_size > 0 && offset >= 0 && stbtt_InitFont(&f, kChartFontTtf, offset))
        << "the charts' embedded font (" << kChartFontTtf_size << " bytes) is not a TrueType font; "
        << "configure with -DENGINE_CHART_FONT=<a .ttf file>";
    return f;
  }();
  return info;
}

float scale_for(double size) { return stbtt_ScaleForMappingEmToPixels(&font(), static_cast<float>(size)); }

// The code points of UTF-8 text; invalid bytes and control characters become '?'.
std::vector<int> code_points(const std::string& text) {
  std::vector<int> out;
  for (size_t i = 0; i < text.size();) {
    const unsigned char b = static_cast<unsigned char>(text[i]);
    int length = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3 : (b & 0xf8) == 0xf0 ? 4 : 0;
    int cp = length == 1 ? b : length == 2 ? b & 0x1f : length == 3 ? b & 0x0f : b & 0x07;
    for (int k = 1; k < length; ++k) {
      const unsigned char c = i + static_cast<size_t>(k) < text.size() ? static_cast<unsigned char>(text[i + k]) : 0;
      if ((c & 0xc0) != 0x80) {
        length = 0;
        break;
      }
      cp = cp << 6 | (c & 0x3f);
    }
    if (length == 0 || cp < 32 || cp == 127 || (cp >= 0x80 && cp < 0xa0) || cp > 0x10ffff) {
      out.push_back('?');
      i += 1;
    } else {
      out.push_back(cp);
      i += static_cast<size_t>(length);
    }
  }
  return out;
}

struct PlacedGlyph {
  int glyph;
  double x;  // pen position of its origin
};

// The glyphs of `text` at their pen positions from 0, and the total advance, in pixels at `scale`.
std::vector<PlacedGlyph> lay_out(const std::string& text, float scale, double* width) {
  const stbtt_fontinfo& f = font();
  std::vector<PlacedGlyph> glyphs;
  double pen = 0;
  int previous = 0;
  for (const int cp : code_points(text)) {
    const int g = stbtt_FindGlyphIndex(&f, cp);
    if (previous) pen += scale * stbtt_GetGlyphKernAdvance(&f, previous, g);
    glyphs.push_back({g, pen});
    int advance = 0, lsb = 0;
    stbtt_GetGlyphHMetrics(&f, g, &advance, &lsb);
    pen += scale * advance;
    previous = g;
  }
  if (width) *width = pen;
  return glyphs;
}

}  // namespace

double font_text_width(const std::string& text, double size) {
  double width = 0;
  lay_out(text, scale_for(size), &width);
  return width;
}

double font_ascent(double size) {
  int ascent = 0, descent = 0, gap = 0;
  stbtt_GetFontVMetrics(&font(), &ascent, &descent, &gap);
  return scale_for(size) * ascent;
}

double font_descent(double size) {
  int ascent = 0, descent = 0, gap = 0;
  stbtt_GetFontVMetrics(&font(), &ascent, &descent, &gap);
  return -scale_for(size) * descent;
}

void font_rasterize(const std::string& text, double x0, double baseline, double size, bool bold,
                    const std::function<void(int x, int y, float coverage)>& plot) {
  if (text.empty() || !(size > 0 && size < 1000) || !std::isfinite(x0) || !std::isfinite(baseline) ||
      std::abs(x0) > 1e6 || std::abs(baseline) > 1e6)
    return;
  const stbtt_fontinfo& f = font();
  const float scale = scale_for(size);
  const std::vector<PlacedGlyph> glyphs = lay_out(text, scale, nullptr);
  const int row = static_cast<int>(std::floor(baseline));
  const float shift_y = static_cast<float>(baseline - row);
  // Each glyph's draw: its bitmap's box in canvas pixels, and the sub-pixel shift.
  struct Draw {
    int glyph, x0, y0, x1, y1;
    float shift_x;
  };
  std::vector<Draw> draws;
  int bx0 = INT32_MAX, by0 = INT32_MAX, bx1 = INT32_MIN, by1 = INT32_MIN;
  for (const PlacedGlyph& g : glyphs)
    for (const double extra : bold ? std::vector<double>{0.0, 0.6} : std::vector<double>{0.0}) {
      const double pen = x0 + g.x + extra;
      const int column = static_cast<int>(std::floor(pen));
      const float shift_x = static_cast<float>(pen - column);
      int gx0, gy0, gx1, gy1;
      stbtt_GetGlyphBitmapBoxSubpixel(&f, g.glyph, scale, scale, shift_x, shift_y, &gx0, &gy0, &gx1, &gy1);
      if (gx1 <= gx0 || gy1 <= gy0) continue;  // space
      Draw d{g.glyph, column + gx0, row + gy0, column + gx1, row + gy1, shift_x};
      bx0 = std::min(bx0, d.x0);
      by0 = std::min(by0, d.y0);
      bx1 = std::max(bx1, d.x1);
      by1 = std::max(by1, d.y1);
      draws.push_back(d);
    }
  if (draws.empty()) return;
  const int width = bx1 - bx0, height = by1 - by0;
  std::vector<uint8_t> coverage(static_cast<size_t>(width) * static_cast<size_t>(height), 0);
  std::vector<uint8_t> bitmap;
  for (const Draw& d : draws) {
    const int w = d.x1 - d.x0, h = d.y1 - d.y0;
    bitmap.assign(static_cast<size_t>(w) * static_cast<size_t>(h), 0);
    stbtt_MakeGlyphBitmapSubpixel(&f, bitmap.data(), w, h, w, scale, scale, d.shift_x, shift_y, d.glyph);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        uint8_t& c = coverage[static_cast<size_t>(d.y0 - by0 + y) * static_cast<size_t>(width) +
                              static_cast<size_t>(d.x0 - bx0 + x)];
        c = std::max(c, bitmap[static_cast<size_t>(y) * static_cast<size_t>(w) + static_cast<size_t>(x)]);
      }
  }
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      const uint8_t c = coverage[static_cast<size_t>(y) * static_cast<size_t>(width) + static_cast<size_t>(x)];
      if (c) plot(bx0 + x, by0 + y, c / 255.0f);
    }
}

}  // namespace experiment
