// Raster line charts: the Chart model of svg.h drawn into an RGB PNG (curves.png), with the SVG's layout
// (ChartFrame), ticks, legend and colours, so that a run's curves can be looked at without a browser; and
// the bitmap canvas they are drawn on (filled rectangles, blending, anti-aliased text in the embedded
// TrueType font of chart_font.h), which the class activation maps' pictures (cam_draw.h) draw on too.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/image_write.h"
#include "experiment/svg.h"

namespace experiment {

// `charts` in rows of `columns` panels of panel_width x panel_height pixels, under `title` (a 28-pixel
// heading): an 8-bit RGB image of (panel_width * columns) x (28 + panel_height * rows). Each panel has
// its title, the plot frame, gridlines and labels at round-number ticks, the x-axis label, each series
// as an anti-aliased line with dots, a legend of the named series where it hides no data, and "no data"
// when nothing is drawable. Throws engine::Error when a panel is too small for the margins.
data::PngImage png_chart_grid(const std::vector<Chart>& charts, const std::string& title, int columns,
                              int panel_width = 320, int panel_height = 220);

// Width in pixels of `text` in the charts' font at `size` pixels to the em (rounded up).
int png_text_width(const std::string& text, double size = kTickFontSize);

// An 8-bit RGB PNG image of `rgb` [height, width, 3].
data::PngImage rgb_png(int width, int height, const std::vector<uint8_t>& rgb);

enum class TextAnchor { start, middle, end };

// An 8-bit RGB canvas, white to begin with. Drawing goes through a panel, a rectangle that is both the
// origin of the coordinates and the clip (the whole canvas until set_panel): nothing drawn for one
// chart reaches its neighbours. Pixels outside the panel are left alone.
class Canvas {
 public:
  Canvas(int width, int height);

  void set_panel(int x, int y, int w, int h);
  // p <- p (1 - a) + c a at panel pixel (x, y); a in [0, 1] (a = 1 sets the pixel to c).
  void blend(int x, int y, Rgb c, double a);
  void fill(int x0, int y0, int x1, int y1, Rgb c);  // the rectangle [x0, x1] x [y0, y1], inclusive
  void hline(int x0, int x1, int y, Rgb c) { fill(x0, y, x1, y, c); }
  void vline(int x, int y0, int y1, Rgb c) { fill(x, y0, x, y1, c); }
  // The outline of the rectangle [x0, x1) x [y0, y1), `thickness` pixels wide, inside it.
  void outline(int x0, int y0, int x1, int y1, int thickness, Rgb c);

  // `text` with its baseline at row `baseline`, anchored at column x, in the charts' font at `size`
  // pixels to the em, anti-aliased (chart_font.h).
  void text(double x, double baseline, const std::string& text, Rgb c, TextAnchor anchor = TextAnchor::start,
            double size = kTickFontSize, bool bold = false);

  int width() const { return width_; }
  int height() const { return height_; }
  const std::vector<uint8_t>& pixels() const { return rgb_; }  // [height, width, 3]
  data::PngImage png() const { return rgb_png(width_, height_, rgb_); }

 private:
  int width_, height_;
  std::vector<uint8_t> rgb_;  // [height, width, 3]
  int origin_x_ = 0, origin_y_ = 0, clip_x0_ = 0, clip_y0_ = 0, clip_x1_ = 0, clip_y1_ = 0;
};

}  // namespace experiment
