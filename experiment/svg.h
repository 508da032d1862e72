// Minimal SVG line charts for the reports (curves.svg, results.html): no dependencies, self-contained.
//
// A Chart is a title, an x-axis label and series of (x, y) points; svg_chart draws one with axes, five
// ticks per axis, a line and dots per series and a legend; svg_chart_grid lays several out in a grid as a
// complete SVG document. Non-finite points are skipped.
//
// The layout (ChartFrame: margins, data ranges, ticks), the tick labels and the colours are shared with
// the raster renderer (chart_png.h), so that curves.svg and curves.png show the same picture.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace experiment {

struct Series {
  std::string name;  // legend text ("" = no legend entry)
  std::vector<double> x, y;
};

struct Chart {
  std::string title, x_label;
  std::vector<Series> series;
  bool log_x = false;  // logarithmic x axis (images: 100, 3,000, 10,000)
};

// Where a chart's plot area lies in a width x height panel and how data coordinates map onto it.
// x0..x1 is the x range (in log10 units on a log axis), y0..y1 the y range padded by 5% each side; a
// single value is widened to +-0.5. has_data is false when no point is drawable ("no data").
struct ChartFrame {
  static constexpr double kLeft = 48, kRight = 10, kTop = 24, kBottom = 36;  // margins, pixels
  static constexpr int kTicks = 5;  // per axis, at 0, 1/4, ..., 1 of the range
  double left = kLeft, top = kTop, plot_width = 0, plot_height = 0;
  bool has_data = false, log_x = false;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;

  double px(double x) const;  // data x -> pixel column
  double py(double y) const;  // data y -> pixel row
  double y_tick_value(int i) const;
  double x_tick_value(int i) const;  // in data units (10^t on a log axis)
  double x_tick_pixel(int i) const;
};
ChartFrame chart_frame(const Chart& chart, int width, int height);
// A point is drawn when both coordinates are finite and, on a log axis, x > 0.
bool drawable_point(const Chart& chart, double x, double y);
// Tick label text: 3 significant digits ("0.25", "1e+03").
std::string tick_label(double value);

// Series colours, cycled by series index (matplotlib's first six), and the frame, grid and text colours.
struct Rgb {
  unsigned char r, g, b;
};
Rgb series_rgb(size_t index);
std::string series_color(size_t index);  // "#rrggbb"
constexpr Rgb kFrameRgb{0x88, 0x88, 0x88}, kGridRgb{0xee, 0xee, 0xee}, kTextRgb{0, 0, 0};

// One chart as an <svg> element of width x height pixels (embeddable in HTML).
std::string svg_chart(const Chart& chart, int width = 320, int height = 220);
// A standalone SVG document: `charts` in rows of `columns`, under `title`.
std::string svg_chart_grid(const std::vector<Chart>& charts, const std::string& title, int columns);
// Text escaped for XML/HTML.
std::string xml_escape(const std::string& text);

}  // namespace experiment
