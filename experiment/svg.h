// Line charts for the reports (curves.svg, results.html): SVG, self-contained; the raster twin is
// chart_png.h (curves.png), drawn from the same layout.
//
// A Chart is a title, an x-axis label and series of (x, y) points; svg_chart draws one with a frame,
// gridlines at round-number ticks, a line and dots per series and a legend; svg_chart_grid lays several
// out in a grid as a complete SVG document. Non-finite points are skipped.
//
// What a reader sees at a glance, as matplotlib draws Keras' and timm's curves:
//   - ticks at round numbers, steps of 1, 2 or 5 x 10^k (nice_ticks), the axis spanning whole steps;
//     on an integer axis (epochs) whole numbers only; on a log axis powers of ten (or 1-2-5 values
//     within one decade);
//   - y limits a chart may not cross (accuracy: [0, 1]): the axis covers the data, within them;
//   - the legend where it hides no data: the first free place of matplotlib's loc="best" (the corners,
//     then the middles of the sides, then the centre), else outside the plot on its right.
// The layout (ChartFrame: margins, ranges, ticks and their labels, the legend's box) is computed once
// here, with the text widths of the charts' font (chart_font.h), and shared with the raster renderer,
// so that curves.svg and curves.png show the same picture.
#pragma once
#include <cmath>
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
  bool log_x = false;      // logarithmic x axis (images: 100, 3,000, 10,000)
  bool integer_x = false;  // x ticks at whole numbers only (epochs)
  // Limits the y axis never crosses (accuracy: 0 and 1); points beyond them are not drawn.
  double y_floor = -INFINITY, y_ceiling = INFINITY;
};

// Round-number ticks over [lo, hi]: the multiples of the smallest step of 1, 2 or 5 x 10^k (whole
// numbers when `integer`) that covers the range with at most max_ticks ticks, from the last multiple at
// or below lo to the first at or above hi. lo == hi is widened first. Non-finite or astronomically wide
// ranges fall back to five evenly spaced values.
std::vector<double> nice_ticks(double lo, double hi, int max_ticks = 6, bool integer = false);
// A tick's label with the digits its step needs ("0.25", "0.3", "2", "10000"; "1e+08" beyond a million).
std::string tick_label(double value, double step);

// Font sizes (pixels to the em) of the charts' text.
constexpr double kTitleFontSize = 12, kTickFontSize = 10, kAxisFontSize = 11, kLegendFontSize = 10;

// The legend's box in panel pixels and its rows (named series).
struct LegendBox {
  bool shown = false, outside = false;
  double x = 0, y = 0, width = 0, height = 0;
  static constexpr double kRow = 14, kPad = 5, kSwatch = 18;  // row height, padding, line sample
  std::vector<size_t> entries;  // indices of the named series, in order
  double row_baseline(size_t i) const { return y + kPad + kRow * static_cast<double>(i) + 9; }
  double swatch_y(size_t i) const { return row_baseline(i) - 3.5; }
};

// Where a chart's plot area lies in a width x height panel and how data coordinates map onto it.
// x0..x1 (log10 units on a log axis) and y0..y1 are the axis ranges, from the first to the last tick.
// has_data is false when no point is drawable ("no data").
struct ChartFrame {
  static constexpr double kLeft = 44, kRight = 12, kTop = 26, kBottom = 38;  // least margins, pixels
  double left = kLeft, top = kTop, plot_width = 0, plot_height = 0;
  bool has_data = false, log_x = false;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  std::vector<double> x_ticks, y_ticks;  // in data units (10^t on a log axis)
  std::vector<std::string> x_labels, y_labels;
  LegendBox legend;

  double px(double x) const;  // data x -> pixel column
  double py(double y) const;  // data y -> pixel row
};
ChartFrame chart_frame(const Chart& chart, int width, int height);
// A point is drawn when both coordinates are finite, y lies within the chart's limits and, on a log
// axis, x > 0.
bool drawable_point(const Chart& chart, double x, double y);

// Series colours, cycled by series index (matplotlib's: train blue, validation orange, ...), and the
// frame, grid and text colours.
struct Rgb {
  unsigned char r, g, b;
};
Rgb series_rgb(size_t index);
std::string series_color(size_t index);  // "#rrggbb"
constexpr Rgb kFrameRgb{0x88, 0x88, 0x88}, kGridRgb{0xe6, 0xe6, 0xe6}, kTextRgb{0, 0, 0};
constexpr Rgb kLegendEdgeRgb{0xcc, 0xcc, 0xcc};
// The SVG's font-family: the charts' font first, so that a browser measures text as the layout did.
constexpr const char* kSvgFontFamily = "DejaVu Sans, Bitstream Vera Sans, Verdana, sans-serif";

// One chart as an <svg> element of width x height pixels (embeddable in HTML).
std::string svg_chart(const Chart& chart, int width = 320, int height = 220);
// A standalone SVG document: `charts` in rows of `columns` panels of panel_width x panel_height, under
// `title`.
std::string svg_chart_grid(const std::vector<Chart>& charts, const std::string& title, int columns,
                           int panel_width = 320, int panel_height = 220);
// Text escaped for XML/HTML.
std::string xml_escape(const std::string& text);

}  // namespace experiment
