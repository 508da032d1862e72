// Raster line charts (see chart_png.h) and the pixel-level drawing they need: an RGB canvas, blending,
// anti-aliased strokes and dots, and text in the embedded TrueType font.
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
// Text: the embedded TrueType font (chart_font.h), its coverage blended like the strokes'.
#include "experiment/chart_png.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/check.h"
#include "experiment/chart_font.h"

namespace experiment {

namespace {

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
  canvas.text(width / 2.0, 16, chart.title, kTextRgb, TextAnchor::middle, kTitleFontSize, true);
  if (!f.has_data) {
    canvas.text(width / 2.0, height / 2.0, "no data", kTextRgb, TextAnchor::middle, kAxisFontSize);
    return;
  }
  const int left = pixel(f.left), top = pixel(f.top), right = pixel(f.left + f.plot_width);
  const int bottom = pixel(f.top + f.plot_height);
  // Gridlines, then the frame over them, then tick marks and labels.
  for (double t : f.y_ticks) canvas.hline(left + 1, right - 1, pixel(f.py(t)), kGridRgb);
  canvas.hline(left, right, top, kFrameRgb);
  canvas.hline(left, right, bottom, kFrameRgb);
  canvas.vline(left, top, bottom, kFrameRgb);
  canvas.vline(right, top, bottom, kFrameRgb);
  for (size_t i = 0; i < f.y_ticks.size(); ++i) {
    const int yy = pixel(f.py(f.y_ticks[i]));
    canvas.hline(left - 4, left - 1, yy, kFrameRgb);
    canvas.text(left - 6, yy + 3.5, f.y_labels[i], kTextRgb, TextAnchor::end, kTickFontSize);
  }
  for (size_t i = 0; i < f.x_ticks.size(); ++i) {
    // x labels centred on their tick, moved inside the panel where they would cross its edge.
    const int xx = pixel(f.px(f.x_ticks[i])), w = png_text_width(f.x_labels[i], kTickFontSize);
    canvas.vline(xx, bottom + 1, bottom + 4, kFrameRgb);
    canvas.text(std::clamp(xx - w / 2, 1, std::max(1, width - 1 - w)), bottom + 15, f.x_labels[i], kTextRgb,
                TextAnchor::start, kTickFontSize);
  }
  canvas.text(f.left + f.plot_width / 2, height - 6, chart.x_label, kTextRgb, TextAnchor::middle, kAxisFontSize);

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
    coverage.paint(canvas, series_rgb(k));
  }
  if (f.legend.shown) {
    // A white box with a light edge over the plot (it hides no data: chart_frame placed it so), one row
    // per named series: a line sample with its dot, then the name.
    const LegendBox& l = f.legend;
    const int x0 = pixel(l.x), y0 = pixel(l.y), x1 = pixel(l.x + l.width), y1 = pixel(l.y + l.height);
    canvas.fill(x0, y0, x1, y1, Rgb{255, 255, 255});
    canvas.outline(x0, y0, x1 + 1, y1 + 1, 1, kLegendEdgeRgb);
    for (size_t i = 0; i < l.entries.size(); ++i) {
      Coverage sample(width, height);
      const double sx = l.x + LegendBox::kPad, sy = l.swatch_y(i);
      sample.stroke(sx, sy, sx + LegendBox::kSwatch, sy, 1.5);
      sample.dot(sx + LegendBox::kSwatch / 2, sy, 2.5);
      sample.paint(canvas, series_rgb(l.entries[i]));
      canvas.text(sx + LegendBox::kSwatch + LegendBox::kPad, l.row_baseline(i), chart.series[l.entries[i]].name,
                  kTextRgb, TextAnchor::start, kLegendFontSize);
    }
  }
}

}  // namespace

int png_text_width(const std::string& text, double size) {
  return static_cast<int>(std::ceil(font_text_width(text, size)));
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

void Canvas::text(double x, double baseline, const std::string& text, Rgb c, TextAnchor anchor, double size,
                  bool bold) {
  const double width = font_text_width(text, size) + (bold ? 0.6 : 0);
  const double x0 = anchor == TextAnchor::start ? x : anchor == TextAnchor::middle ? x - width / 2 : x - width;
  font_rasterize(text, x0, baseline, size, bold, [&](int px, int py, float a) { blend(px, py, c, a); });
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
  canvas.text(8, 20, title, kTextRgb, TextAnchor::start, 16);
  for (size_t i = 0; i < charts.size(); ++i) {
    const int column = static_cast<int>(i % static_cast<size_t>(columns));
    const int row = static_cast<int>(i / static_cast<size_t>(columns));
    canvas.set_panel(column * panel_width, head + row * panel_height, panel_width, panel_height);
    draw_chart(canvas, charts[i], panel_width, panel_height);
  }
  return canvas.png();
}

}  // namespace experiment
