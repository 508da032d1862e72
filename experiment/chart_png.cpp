// Raster line charts (see chart_png.h) and the pixel-level drawing they need: an RGB canvas, blending,
// anti-aliased strokes and dots, and text in a bitmap font.
//
// Coordinates are pixel-centred: pixel (i, j) is the point (i, j) of the SVG's user space, so a crisp
// one-pixel line drawn at row lround(y) and an anti-aliased one at y agree.
//
// Anti-aliasing by coverage: a pixel at distance d from the centre line of a stroke of width w is covered
// by a = clamp(w/2 + 1/2 - d, 0, 1) (the share of a one-pixel box around it that lies inside, exact along
// a straight edge); a dot of radius r likewise covers clamp(r + 1/2 - d, 0, 1), d the distance to its
// centre. A series' line and dots go into one coverage mask (per pixel the maximum of their coverages),
// blended once as p <- p (1 - a) + c a, so where segments and dots overlap nothing is painted twice.
//
// Text: a 5x9 bitmap font of this project's own design for printable ASCII 32..126 (capitals and digits
// 7 rows tall standing on the baseline, 2 rows of descender below it, 6-pixel advance), drawn crisp and
// scaled by an integer for headings; bold is the glyph drawn twice, one pixel apart (and advances one
// pixel more). Other bytes draw '?'.
#include "experiment/chart_png.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/check.h"

namespace experiment {

namespace {

// ---------------------------------------------------------------------------------------------------
// The font: kGlyphs[c - 32] is character c, 9 rows top to bottom, bit 4 the leftmost of 5 columns.

constexpr int kGlyphWidth = 5, kGlyphRows = 9, kAscent = 7, kAdvance = 6;
constexpr uint8_t kGlyphs[95][kGlyphRows] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // space
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04, 0x00, 0x00},  // !
    {0x0a, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // "
    {0x0a, 0x0a, 0x1f, 0x0a, 0x1f, 0x0a, 0x0a, 0x00, 0x00},  // #
    {0x04, 0x0f, 0x14, 0x0e, 0x05, 0x1e, 0x04, 0x00, 0x00},  // $
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00, 0x00},  // %
    {0x0c, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0d, 0x00, 0x00},  // &
    {0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // '
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00, 0x00},  // (
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00, 0x00},  // )
    {0x00, 0x04, 0x15, 0x0e, 0x15, 0x04, 0x00, 0x00, 0x00},  // *
    {0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00, 0x00, 0x00},  // +
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c, 0x04, 0x08},  // ,
    {0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00, 0x00, 0x00},  // -
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c, 0x00, 0x00},  // .
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00, 0x00, 0x00},  // /
    {0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e, 0x00, 0x00},  // 0
    {0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00, 0x00},  // 1
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f, 0x00, 0x00},  // 2
    {0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e, 0x00, 0x00},  // 3
    {0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02, 0x00, 0x00},  // 4
    {0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e, 0x00, 0x00},  // 5
    {0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e, 0x00, 0x00},  // 6
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00, 0x00},  // 7
    {0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e, 0x00, 0x00},  // 8
    {0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c, 0x00, 0x00},  // 9
    {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00, 0x00, 0x00},  // :
    {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x04, 0x08, 0x00},  // ;
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, 0x00, 0x00},  // <
    {0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00, 0x00, 0x00},  // =
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, 0x00, 0x00},  // >
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00, 0x00},  // ?
    {0x0e, 0x11, 0x01, 0x0d, 0x15, 0x15, 0x0e, 0x00, 0x00},  // @
    {0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11, 0x00, 0x00},  // A
    {0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e, 0x00, 0x00},  // B
    {0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e, 0x00, 0x00},  // C
    {0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c, 0x00, 0x00},  // D
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f, 0x00, 0x00},  // E
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10, 0x00, 0x00},  // F
    {0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f, 0x00, 0x00},  // G
    {0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11, 0x00, 0x00},  // H
    {0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00, 0x00},  // I
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c, 0x00, 0x00},  // J
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00, 0x00},  // K
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f, 0x00, 0x00},  // L
    {0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00, 0x00},  // M
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00, 0x00},  // N
    {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e, 0x00, 0x00},  // O
    {0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10, 0x00, 0x00},  // P
    {0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d, 0x00, 0x00},  // Q
    {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11, 0x00, 0x00},  // R
    {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e, 0x00, 0x00},  // S
    {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00},  // T
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e, 0x00, 0x00},  // U
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04, 0x00, 0x00},  // V
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a, 0x00, 0x00},  // W
    {0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11, 0x00, 0x00},  // X
    {0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00},  // Y
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f, 0x00, 0x00},  // Z
    {0x0e, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0e, 0x00, 0x00},  // [
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00, 0x00, 0x00},  // backslash
    {0x0e, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0e, 0x00, 0x00},  // ]
    {0x04, 0x0a, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // ^
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f, 0x00},  // _
    {0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // `
    {0x00, 0x00, 0x0e, 0x01, 0x0f, 0x11, 0x0f, 0x00, 0x00},  // a
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1e, 0x00, 0x00},  // b
    {0x00, 0x00, 0x0e, 0x10, 0x10, 0x11, 0x0e, 0x00, 0x00},  // c
    {0x01, 0x01, 0x0d, 0x13, 0x11, 0x11, 0x0f, 0x00, 0x00},  // d
    {0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e, 0x00, 0x00},  // e
    {0x06, 0x09, 0x08, 0x1c, 0x08, 0x08, 0x08, 0x00, 0x00},  // f
    {0x00, 0x00, 0x0f, 0x11, 0x11, 0x13, 0x0d, 0x01, 0x0e},  // g
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00},  // h
    {0x04, 0x00, 0x0c, 0x04, 0x04, 0x04, 0x0e, 0x00, 0x00},  // i
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c},  // j
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00, 0x00},  // k
    {0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00, 0x00},  // l
    {0x00, 0x00, 0x1a, 0x15, 0x15, 0x15, 0x15, 0x00, 0x00},  // m
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00},  // n
    {0x00, 0x00, 0x0e, 0x11, 0x11, 0x11, 0x0e, 0x00, 0x00},  // o
    {0x00, 0x00, 0x1e, 0x11, 0x11, 0x19, 0x16, 0x10, 0x10},  // p
    {0x00, 0x00, 0x0f, 0x11, 0x11, 0x13, 0x0d, 0x01, 0x01},  // q
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00, 0x00},  // r
    {0x00, 0x00, 0x0f, 0x10, 0x0e, 0x01, 0x1e, 0x00, 0x00},  // s
    {0x08, 0x08, 0x1c, 0x08, 0x08, 0x09, 0x06, 0x00, 0x00},  // t
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d, 0x00, 0x00},  // u
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0a, 0x04, 0x00, 0x00},  // v
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0a, 0x00, 0x00},  // w
    {0x00, 0x00, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x00, 0x00},  // x
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d, 0x01, 0x0e},  // y
    {0x00, 0x00, 0x1f, 0x02, 0x04, 0x08, 0x1f, 0x00, 0x00},  // z
    {0x03, 0x04, 0x04, 0x08, 0x04, 0x04, 0x03, 0x00, 0x00},  // {
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00},  // |
    {0x18, 0x04, 0x04, 0x02, 0x04, 0x04, 0x18, 0x00, 0x00},  // }
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00, 0x00, 0x00},  // ~
};

const uint8_t* glyph(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  return kGlyphs[(u >= 32 && u <= 126 ? u : '?') - 32];
}

// The pixel nearest to coordinate v; far outside any canvas when v is not finite or huge.
int pixel(double v) { return std::isfinite(v) ? static_cast<int>(std::lround(std::clamp(v, -1e6, 1e6))) : -1000000; }

// Anti-aliased coverage of one colour's shapes over a panel (see the file comment), painted at once.
class Coverage {
 public:
  Coverage(int width, int height)
      : width_(width), height_(height), alpha_(static_cast<size_t>(width) * static_cast<size_t>(height), 0.f) {}

  // A stroke of `width` pixels from (ax, ay) to (bx, by), with round ends.
  void stroke(double ax, double ay, double bx, double by, double width) {
    const double reach = width / 2 + 0.5, vx = bx - ax, vy = by - ay, length2 = vx * vx + vy * vy;
    cover(std::min(ax, bx) - reach, std::min(ay, by) - reach, std::max(ax, bx) + reach, std::max(ay, by) + reach,
          [&](double x, double y) {
            const double t = length2 > 0 ? std::clamp(((x - ax) * vx + (y - ay) * vy) / length2, 0.0, 1.0) : 0.0;
            return reach - std::hypot(x - (ax + t * vx), y - (ay + t * vy));
          });
  }
  void dot(double cx, double cy, double radius) {
    const double reach = radius + 0.5;
    cover(cx - reach, cy - reach, cx + reach, cy + reach,
          [&](double x, double y) { return reach - std::hypot(x - cx, y - cy); });
  }
  void paint(Canvas& canvas, Rgb c) const {
    for (int y = 0; y < height_; ++y)
      for (int x = 0; x < width_; ++x) {
        const float a = alpha_[static_cast<size_t>(y) * static_cast<size_t>(width_) + static_cast<size_t>(x)];
        if (a > 0) canvas.blend(x, y, c, a);
      }
  }

 private:
  // alpha <- max(alpha, clamp(f(x, y), 0, 1)) over the pixels of the box [x0, x1] x [y0, y1].
  template <typename F>
  void cover(double x0, double y0, double x1, double y1, F f) {
    if (!(std::isfinite(x0) && std::isfinite(y0) && std::isfinite(x1) && std::isfinite(y1))) return;
    const int i0 = static_cast<int>(std::floor(std::clamp(x0, 0.0, double(width_))));
    const int i1 = static_cast<int>(std::ceil(std::clamp(x1, -1.0, width_ - 1.0)));
    const int j0 = static_cast<int>(std::floor(std::clamp(y0, 0.0, double(height_))));
    const int j1 = static_cast<int>(std::ceil(std::clamp(y1, -1.0, height_ - 1.0)));
    for (int j = j0; j <= j1; ++j)
      for (int i = i0; i <= i1; ++i) {
        float& a = alpha_[static_cast<size_t>(j) * static_cast<size_t>(width_) + static_cast<size_t>(i)];
        a = std::max(a, static_cast<float>(std::clamp(f(i, j), 0.0, 1.0)));
      }
  }

  int width_, height_;
  std::vector<float> alpha_;  // [height, width]
};

// ---------------------------------------------------------------------------------------------------
// One chart in the canvas's current panel, as svg_chart draws it.

void draw_chart(Canvas& canvas, const Chart& chart, int width, int height) {
  const ChartFrame f = chart_frame(chart, width, height);
  canvas.text(width / 2.0, 14, chart.title, kTextRgb, TextAnchor::middle, 1, true);
  if (!f.has_data) {
    canvas.text(width / 2.0, height / 2.0, "no data", kTextRgb, TextAnchor::middle);
    return;
  }
  const int left = pixel(f.left), top = pixel(f.top), right = pixel(f.left + f.plot_width);
  const int bottom = pixel(f.top + f.plot_height);
  // Gridlines, then the frame over them, then tick marks and labels.
  for (int i = 0; i < ChartFrame::kTicks; ++i)
    canvas.hline(left + 1, right - 1, pixel(f.py(f.y_tick_value(i))), kGridRgb);
  canvas.hline(left, right, top, kFrameRgb);
  canvas.hline(left, right, bottom, kFrameRgb);
  canvas.vline(left, top, bottom, kFrameRgb);
  canvas.vline(right, top, bottom, kFrameRgb);
  for (int i = 0; i < ChartFrame::kTicks; ++i) {
    const double yv = f.y_tick_value(i);
    const int yy = pixel(f.py(yv));
    canvas.hline(left - 3, left - 1, yy, kFrameRgb);
    const std::string y_label = tick_label(yv);
    canvas.text_at(std::max(1, left - 5 - png_text_width(y_label)), yy + 4, y_label, kTextRgb, 1, false);
    // x labels centred on their tick, moved inside the panel where they would cross its edge.
    const std::string x_label = tick_label(f.x_tick_value(i));
    const int w = png_text_width(x_label), xx = pixel(f.x_tick_pixel(i));
    canvas.vline(xx, bottom + 1, bottom + 3, kFrameRgb);
    canvas.text_at(std::clamp(xx - w / 2, 1, std::max(1, width - 1 - w)), bottom + 14, x_label, kTextRgb, 1, false);
  }
  canvas.text(f.left + f.plot_width / 2, height - 4, chart.x_label, kTextRgb, TextAnchor::middle);

  int legend = 0;
  for (size_t k = 0; k < chart.series.size(); ++k) {
    const Series& s = chart.series[k];
    Coverage coverage(width, height);
    double last_x = NAN, last_y = NAN;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!drawable_point(chart, s.x[i], s.y[i])) continue;
      const double x = f.px(s.x[i]), y = f.py(s.y[i]);
      if (std::isfinite(last_x)) coverage.stroke(last_x, last_y, x, y, 1.5);
      coverage.dot(x, y, 2.5);
      last_x = x;
      last_y = y;
    }
    if (!s.name.empty()) {
      const double ly = f.top + 10 + 12 * legend++;
      coverage.stroke(f.left + 6, ly - 3, f.left + 20, ly - 3, 2);
      canvas.text(f.left + 24, ly, s.name, kTextRgb);
    }
    coverage.paint(canvas, series_rgb(k));
  }
}

}  // namespace

int png_text_width(const std::string& text, int scale) {
  return text.empty() ? 0 : (static_cast<int>(text.size()) * kAdvance - (kAdvance - kGlyphWidth)) * scale;
}

data::PngImage rgb_png(int width, int height, const std::vector<uint8_t>& rgb) {
  ENGINE_CHECK(width > 0 && height > 0 && rgb.size() == static_cast<size_t>(width) * static_cast<size_t>(height) * 3)
      << "rgb_png: " << rgb.size() << " bytes are not a " << width << " x " << height << " RGB image";
  data::PngImage image;
  image.width = width;
  image.height = height;
  image.color = data::PngColor::rgb;
  image.bit_depth = 8;
  image.samples.assign(rgb.begin(), rgb.end());
  return image;
}

// ---------------------------------------------------------------------------------------------------
// The canvas

Canvas::Canvas(int width, int height)
    : width_(width), height_(height), rgb_(static_cast<size_t>(width) * static_cast<size_t>(height) * 3, 255) {
  set_panel(0, 0, width, height);
}

void Canvas::set_panel(int x, int y, int w, int h) {
  origin_x_ = x;
  origin_y_ = y;
  clip_x0_ = std::max(x, 0);
  clip_y0_ = std::max(y, 0);
  clip_x1_ = std::min(x + w, width_);
  clip_y1_ = std::min(y + h, height_);
}

void Canvas::blend(int x, int y, Rgb c, double a) {
  x += origin_x_;
  y += origin_y_;
  if (x < clip_x0_ || x >= clip_x1_ || y < clip_y0_ || y >= clip_y1_ || !(a > 0)) return;
  a = std::min(a, 1.0);
  uint8_t* p = &rgb_[(static_cast<size_t>(y) * static_cast<size_t>(width_) + static_cast<size_t>(x)) * 3];
  const uint8_t target[3] = {c.r, c.g, c.b};
  for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>(std::lround(p[k] * (1 - a) + target[k] * a));
}

void Canvas::fill(int x0, int y0, int x1, int y1, Rgb c) {
  x0 = std::max(x0, clip_x0_ - origin_x_);
  y0 = std::max(y0, clip_y0_ - origin_y_);
  x1 = std::min(x1, clip_x1_ - 1 - origin_x_);
  y1 = std::min(y1, clip_y1_ - 1 - origin_y_);
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) blend(x, y, c, 1);
}

void Canvas::outline(int x0, int y0, int x1, int y1, int thickness, Rgb c) {
  if (x1 <= x0 || y1 <= y0 || thickness < 1) return;
  fill(x0, y0, x1 - 1, y0 + thickness - 1, c);  // top
  fill(x0, y1 - thickness, x1 - 1, y1 - 1, c);  // bottom
  fill(x0, y0, x0 + thickness - 1, y1 - 1, c);  // left
  fill(x1 - thickness, y0, x1 - 1, y1 - 1, c);  // right
}

void Canvas::text(double x, double baseline, const std::string& text, Rgb c, TextAnchor anchor, int scale,
                  bool bold) {
  const int width = png_text_width(text, scale) + (bold ? static_cast<int>(text.size()) : 0);
  const int x0 = pixel(anchor == TextAnchor::start ? x : anchor == TextAnchor::middle ? x - width / 2.0 : x - width);
  text_at(x0, baseline, text, c, scale, bold);
}

void Canvas::text_at(int x0, double baseline, const std::string& text, Rgb c, int scale, bool bold) {
  const int top = pixel(baseline) - kAscent * scale;
  for (size_t i = 0; i < text.size(); ++i) {
    const uint8_t* rows = glyph(text[i]);
    const int left = x0 + static_cast<int>(i) * (kAdvance * scale + (bold ? 1 : 0));
    for (int r = 0; r < kGlyphRows; ++r)
      for (int col = 0; col < kGlyphWidth; ++col) {
        if (!(rows[r] >> (kGlyphWidth - 1 - col) & 1)) continue;
        const int px = left + col * scale, py = top + r * scale;
        fill(px, py, px + scale - 1 + (bold ? 1 : 0), py + scale - 1, c);
      }
  }
}

data::PngImage png_chart_grid(const std::vector<Chart>& charts, const std::string& title, int columns,
                              int panel_width, int panel_height) {
  const int min_width = static_cast<int>(ChartFrame::kLeft + ChartFrame::kRight) + 20;
  const int min_height = static_cast<int>(ChartFrame::kTop + ChartFrame::kBottom) + 20;
  ENGINE_CHECK(panel_width >= min_width && panel_height >= min_height && panel_width <= 4096 && panel_height <= 4096)
      << "png_chart_grid: a panel of " << panel_width << " x " << panel_height << " pixels does not fit the "
      << "chart margins; use at least " << min_width << " x " << min_height << " (at most 4096 x 4096)";
  const int head = 28;
  const size_t count = std::max<size_t>(1, charts.size());
  columns = std::max(1, std::min(columns, static_cast<int>(std::min<size_t>(1024, count))));
  const size_t rows = (count + static_cast<size_t>(columns) - 1) / static_cast<size_t>(columns);
  ENGINE_CHECK(static_cast<size_t>(panel_width) * static_cast<size_t>(columns) <= 16384 &&
               head + static_cast<size_t>(panel_height) * rows <= 16384)
      << "png_chart_grid: " << charts.size() << " charts in " << columns << " columns of " << panel_width << " x "
      << panel_height << " pixels make an image over 16384 pixels on a side; use fewer charts or smaller panels";
  Canvas canvas(panel_width * columns, head + panel_height * static_cast<int>(rows));
  canvas.text(8, 20, title, kTextRgb, TextAnchor::start, 2);
  for (size_t i = 0; i < charts.size(); ++i) {
    const int column = static_cast<int>(i % static_cast<size_t>(columns));
    const int row = static_cast<int>(i / static_cast<size_t>(columns));
    canvas.set_panel(column * panel_width, head + row * panel_height, panel_width, panel_height);
    draw_chart(canvas, charts[i], panel_width, panel_height);
  }
  return canvas.png();
}

}  // namespace experiment
