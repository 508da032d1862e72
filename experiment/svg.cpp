// SVG line charts and the layout they share with the raster charts (see svg.h).
//
// Axis ranges, as matplotlib's autoscale: the data's range with 5% margins each side (a single value
// widened first), kept within the chart's y limits; the ticks are the round numbers of nice_ticks that
// fall inside it. The legend goes in the first of matplotlib's "best" places (corners, side middles,
// centre) whose box (grown by a few pixels) neither contains a dot nor meets a line segment; when every
// place is taken, outside on the right, the plot narrowed to make room.
#include "experiment/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "experiment/chart_font.h"

namespace experiment {

namespace {
// matplotlib's tab10, in its order: C0 blue (train), C1 orange (validation), C2 green, C3 red, ...
constexpr Rgb kSeriesRgb[] = {{0x1f, 0x77, 0xb4}, {0xff, 0x7f, 0x0e}, {0x2c, 0xa0, 0x2c},
                              {0xd6, 0x27, 0x28}, {0x94, 0x67, 0xbd}, {0x8c, 0x56, 0x4b}};

std::string num(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.1f", v);
  return buffer;
}
std::string hex(Rgb c) {
  char buffer[8];
  std::snprintf(buffer, sizeof buffer, "#%02x%02x%02x", c.r, c.g, c.b);
  return buffer;
}

// lo == hi widened to a range around it.
void widen_single(double& lo, double& hi, bool integer) {
  if (hi > lo) return;
  const double d = integer ? 1.0 : lo != 0 ? std::abs(lo) * 0.1 : 0.5;
  lo -= d;
  hi += d;
}

// The ticks of nice_ticks that lie within [lo, hi] (up to rounding), at most max_ticks of them, with
// their step: the finest step whose ticks inside the range fit (nice_ticks counts the two just outside).
std::vector<double> ticks_within(double lo, double hi, int max_ticks, bool integer, double* step) {
  std::vector<double> inside;
  for (int allowed = max_ticks + 2; allowed >= 2; --allowed) {
    const std::vector<double> all = nice_ticks(lo, hi, allowed, integer);
    *step = all.size() > 1 ? all[1] - all[0] : 1;
    const double eps = std::abs(*step) * 1e-9;
    inside.clear();
    for (double t : all)
      if (t >= lo - eps && t <= hi + eps) inside.push_back(t);
    if (static_cast<int>(inside.size()) <= max_ticks) break;
  }
  return inside;
}

// Does the segment a-b meet the box [x0, x1] x [y0, y1]? (Liang-Barsky clipping.)
bool segment_meets_box(double ax, double ay, double bx, double by, double x0, double y0, double x1, double y1) {
  double t0 = 0, t1 = 1;
  const double dx = bx - ax, dy = by - ay;
  const double p[4] = {-dx, dx, -dy, dy}, q[4] = {ax - x0, x1 - ax, ay - y0, y1 - ay};
  for (int i = 0; i < 4; ++i) {
    if (p[i] == 0) {
      if (q[i] < 0) return false;
      continue;
    }
    const double t = q[i] / p[i];
    if (p[i] < 0) t0 = std::max(t0, t);
    else t1 = std::min(t1, t);
    if (t0 > t1) return false;
  }
  return true;
}

// Does the box (grown by `margin`) hide any dot or line of the chart?
bool box_hides_data(const Chart& chart, const ChartFrame& f, double x, double y, double w, double h) {
  const double margin = 4, x0 = x - margin, y0 = y - margin, x1 = x + w + margin, y1 = y + h + margin;
  for (const Series& s : chart.series) {
    double last_x = NAN, last_y = NAN;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!drawable_point(chart, s.x[i], s.y[i])) continue;
      const double px = f.px(s.x[i]), py = f.py(s.y[i]);
      if (px >= x0 && px <= x1 && py >= y0 && py <= y1) return true;
      if (std::isfinite(last_x) && segment_meets_box(last_x, last_y, px, py, x0, y0, x1, y1)) return true;
      last_x = px;
      last_y = py;
    }
  }
  return false;
}

}  // namespace

Rgb series_rgb(size_t index) { return kSeriesRgb[index % (sizeof kSeriesRgb / sizeof kSeriesRgb[0])]; }
std::string series_color(size_t index) { return hex(series_rgb(index)); }

std::vector<double> nice_ticks(double lo, double hi, int max_ticks, bool integer) {
  max_ticks = std::max(max_ticks, 2);
  if (lo > hi) std::swap(lo, hi);
  widen_single(lo, hi, integer);
  const double span = hi - lo;
  auto even = [&] {
    std::vector<double> t;
    for (int i = 0; i < 5; ++i) t.push_back(lo + (hi - lo) * i / 4);
    return t;
  };
  if (!std::isfinite(lo) || !std::isfinite(hi) || !std::isfinite(span) || !(span > 0) ||
      std::max(std::abs(lo), std::abs(hi)) / span > 1e12)
    return even();
  // Steps 1, 2, 5 x 10^k from a little below span / max_ticks upward: the first that fits.
  int k0 = static_cast<int>(std::floor(std::log10(span / max_ticks))) - 1;
  if (integer) k0 = std::max(k0, 0);
  for (int k = k0; k <= k0 + 4; ++k)
    for (const double m : {1.0, 2.0, 5.0}) {
      const double step = m * std::pow(10.0, k);
      if (integer && step < 1) continue;
      const double first = std::floor(lo / step + 1e-9), last = std::ceil(hi / step - 1e-9);
      if (last - first + 1 > max_ticks) continue;
      std::vector<double> ticks;
      for (double i = first; i <= last; i += 1) {
        // i / (1 / step) for steps below 1: 3 / 5 is 0.6 where 3 * 0.2 is 0.6000000000000001.
        double v = step >= 1 ? i * step : i / std::round(1 / step);
        if (std::abs(v) < step * 1e-9) v = 0;  // no "-0"
        ticks.push_back(v);
      }
      return ticks;
    }
  return even();
}

std::string tick_label(double value, double step) {
  char buffer[48];
  if (!std::isfinite(value)) return "?";
  if (std::abs(value) >= 1e6 || !(step > 0) || step < 1e-6 || !std::isfinite(step)) {
    std::snprintf(buffer, sizeof buffer, "%.3g", value);
    return buffer;
  }
  // The decimals of the step: 0.25 -> 2, 0.2 -> 1, 5 -> 0.
  int decimals = 0;
  while (decimals < 7 && std::abs(step * std::pow(10.0, decimals) - std::round(step * std::pow(10.0, decimals))) >
                             1e-6 * step * std::pow(10.0, decimals))
    ++decimals;
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  if (std::string(buffer).find_first_not_of("-0.") == std::string::npos) return "0";
  return buffer;
}

bool drawable_point(const Chart& chart, double x, double y) {
  return std::isfinite(x) && std::isfinite(y) && !(chart.log_x && x <= 0) && y >= chart.y_floor &&
         y <= chart.y_ceiling;
}

ChartFrame chart_frame(const Chart& chart, int width, int height) {
  ChartFrame f;
  f.log_x = chart.log_x;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const Series& s : chart.series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!drawable_point(chart, s.x[i], s.y[i])) continue;
      const double x = chart.log_x ? std::log10(s.x[i]) : s.x[i];
      x0 = std::min(x0, x);
      x1 = std::max(x1, x);
      y0 = std::min(y0, s.y[i]);
      y1 = std::max(y1, s.y[i]);
    }
  f.has_data = std::isfinite(x0);
  f.plot_width = width - ChartFrame::kLeft - ChartFrame::kRight;
  f.plot_height = height - ChartFrame::kTop - ChartFrame::kBottom;
  if (!f.has_data) return f;

  // Ranges: the data with 5% margins (overflow kept finite), the y range within the chart's limits.
  widen_single(x0, x1, chart.integer_x && !chart.log_x);
  widen_single(y0, y1, false);
  const double x_pad = std::min((x1 - x0) * 0.05, 1e306), y_pad = std::min((y1 - y0) * 0.05, 1e306);
  f.x0 = std::max(x0 - x_pad, -1.7e308);
  f.x1 = std::min(x1 + x_pad, 1.7e308);
  f.y0 = std::max({y0 - y_pad, chart.y_floor, -1.7e308});
  f.y1 = std::min({y1 + y_pad, chart.y_ceiling, 1.7e308});
  if (!(f.y1 > f.y0)) { f.y0 = y0; f.y1 = y1; }

  // Ticks and labels; the left margin fits the widest y label.
  double step = 1;
  const int max_y = std::clamp(static_cast<int>(f.plot_height / 28), 2, 7);
  f.y_ticks = ticks_within(f.y0, f.y1, max_y, false, &step);
  for (double t : f.y_ticks) f.y_labels.push_back(tick_label(t, step));
  const int max_x = std::clamp(static_cast<int>(f.plot_width / 48), 2, 8);
  if (chart.log_x) {
    // Powers of ten where the range holds two or more; otherwise 1-2-5 values of the linear range.
    std::vector<double> decades = ticks_within(f.x0, f.x1, max_x, true, &step);
    if (decades.size() >= 2) {
      for (double d : decades) {
        f.x_ticks.push_back(std::pow(10.0, d));
        f.x_labels.push_back(tick_label(f.x_ticks.back(), std::pow(10.0, std::max(0.0, d))));
      }
    } else {
      double linear_step = 1;
      for (double t : ticks_within(std::pow(10.0, f.x0), std::pow(10.0, f.x1), max_x, false, &linear_step))
        if (t > 0) {
          f.x_ticks.push_back(t);
          f.x_labels.push_back(tick_label(t, linear_step));
        }
    }
  } else {
    f.x_ticks = ticks_within(f.x0, f.x1, max_x, chart.integer_x, &step);
    for (double t : f.x_ticks) f.x_labels.push_back(tick_label(t, step));
  }
  double widest = 0;
  for (const std::string& label : f.y_labels) widest = std::max(widest, font_text_width(label, kTickFontSize));
  f.left = std::max(ChartFrame::kLeft, std::ceil(widest) + 12);
  f.plot_width = width - f.left - ChartFrame::kRight;

  // The legend: a corner where it hides nothing, else outside on the right.
  LegendBox& legend = f.legend;
  double text_width = 0;
  for (size_t k = 0; k < chart.series.size(); ++k)
    if (!chart.series[k].name.empty()) {
      legend.entries.push_back(k);
      text_width = std::max(text_width, font_text_width(chart.series[k].name, kLegendFontSize));
    }
  if (legend.entries.empty()) return f;
  legend.shown = true;
  legend.width = std::ceil(LegendBox::kPad * 3 + LegendBox::kSwatch + text_width);
  legend.height = LegendBox::kPad * 2 + LegendBox::kRow * static_cast<double>(legend.entries.size()) - 2;
  // matplotlib's loc="best" order: the four corners, then the middles of the right and left sides, of the
  // bottom and top, and the centre.
  const double inset = 6, right = f.left + f.plot_width - inset - legend.width;
  const double bottom = f.top + f.plot_height - inset - legend.height, left = f.left + inset, top = f.top + inset;
  const double middle_x = f.left + (f.plot_width - legend.width) / 2;
  const double middle_y = f.top + (f.plot_height - legend.height) / 2;
  const double corners[9][2] = {{right, top},       {left, top},        {left, bottom},
                                {right, bottom},    {right, middle_y},  {left, middle_y},
                                {middle_x, bottom}, {middle_x, top},    {middle_x, middle_y}};
  for (const auto& corner : corners)
    if (corner[0] >= f.left && corner[1] >= f.top &&
        !box_hides_data(chart, f, corner[0], corner[1], legend.width, legend.height)) {
      legend.x = corner[0];
      legend.y = corner[1];
      return f;
    }
  legend.outside = true;
  f.plot_width = std::max(20.0, f.plot_width - legend.width - 8);
  legend.x = f.left + f.plot_width + 8;
  legend.y = f.top;
  return f;
}

double ChartFrame::px(double x) const {
  return left + ((log_x ? std::log10(std::max(x, 1e-300)) : x) - x0) / (x1 - x0) * plot_width;
}
double ChartFrame::py(double y) const { return top + (1 - (y - y0) / (y1 - y0)) * plot_height; }

std::string xml_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string svg_chart(const Chart& chart, int width, int height) {
  const ChartFrame f = chart_frame(chart, width, height);
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" viewBox=\"0 0 " << width << " " << height << "\" font-family=\"" << kSvgFontFamily << "\" font-size=\""
    << kTickFontSize << "\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << width / 2 << "\" y=\"16\" text-anchor=\"middle\" font-size=\"" << kTitleFontSize
    << "\" font-weight=\"bold\">" << xml_escape(chart.title) << "</text>\n";
  if (!f.has_data) {
    o << "<text x=\"" << width / 2 << "\" y=\"" << height / 2 << "\" text-anchor=\"middle\" font-size=\""
      << kAxisFontSize << "\">no data</text>\n</svg>\n";
    return o.str();
  }
  const double bottom = f.top + f.plot_height, right = f.left + f.plot_width;
  for (size_t i = 0; i < f.y_ticks.size(); ++i) {
    const double yy = f.py(f.y_ticks[i]);
    o << "<line x1=\"" << num(f.left) << "\" x2=\"" << num(right) << "\" y1=\"" << num(yy) << "\" y2=\"" << num(yy)
      << "\" stroke=\"" << hex(kGridRgb) << "\"/><line x1=\"" << num(f.left - 4) << "\" x2=\"" << num(f.left)
      << "\" y1=\"" << num(yy) << "\" y2=\"" << num(yy) << "\" stroke=\"" << hex(kFrameRgb) << "\"/><text x=\""
      << num(f.left - 6) << "\" y=\"" << num(yy + 3.5) << "\" text-anchor=\"end\">" << xml_escape(f.y_labels[i])
      << "</text>\n";
  }
  for (size_t i = 0; i < f.x_ticks.size(); ++i) {
    const double xx = f.px(f.x_ticks[i]);
    o << "<line x1=\"" << num(xx) << "\" x2=\"" << num(xx) << "\" y1=\"" << num(bottom) << "\" y2=\""
      << num(bottom + 4) << "\" stroke=\"" << hex(kFrameRgb) << "\"/><text x=\"" << num(xx) << "\" y=\""
      << num(bottom + 15) << "\" text-anchor=\"middle\">" << xml_escape(f.x_labels[i]) << "</text>\n";
  }
  o << "<rect x=\"" << num(f.left) << "\" y=\"" << num(f.top) << "\" width=\"" << num(f.plot_width) << "\" height=\""
    << num(f.plot_height) << "\" fill=\"none\" stroke=\"" << hex(kFrameRgb) << "\"/>\n";
  o << "<text x=\"" << num(f.left + f.plot_width / 2) << "\" y=\"" << height - 6 << "\" text-anchor=\"middle\" "
    << "font-size=\"" << kAxisFontSize << "\">" << xml_escape(chart.x_label) << "</text>\n";
  for (size_t k = 0; k < chart.series.size(); ++k) {
    const Series& s = chart.series[k];
    const std::string color = series_color(k);
    std::string points;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!drawable_point(chart, s.x[i], s.y[i])) continue;
      points += num(f.px(s.x[i])) + "," + num(f.py(s.y[i])) + " ";
      o << "<circle cx=\"" << num(f.px(s.x[i])) << "\" cy=\"" << num(f.py(s.y[i])) << "\" r=\"2.5\" fill=\"" << color
        << "\"/>";
    }
    o << "\n<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.5\" points=\"" << points << "\"/>\n";
  }
  if (f.legend.shown) {
    const LegendBox& l = f.legend;
    o << "<g class=\"legend\"><rect x=\"" << num(l.x) << "\" y=\"" << num(l.y) << "\" width=\"" << num(l.width)
      << "\" height=\"" << num(l.height) << "\" rx=\"2\" fill=\"white\" fill-opacity=\"0.9\" stroke=\""
      << hex(kLegendEdgeRgb) << "\"/>\n";
    for (size_t i = 0; i < l.entries.size(); ++i) {
      const double sx = l.x + LegendBox::kPad, sy = l.swatch_y(i);
      const std::string color = series_color(l.entries[i]);
      o << "<line x1=\"" << num(sx) << "\" x2=\"" << num(sx + LegendBox::kSwatch) << "\" y1=\"" << num(sy)
        << "\" y2=\"" << num(sy) << "\" stroke=\"" << color << "\" stroke-width=\"1.5\"/><circle cx=\""
        << num(sx + LegendBox::kSwatch / 2) << "\" cy=\"" << num(sy) << "\" r=\"2.5\" fill=\"" << color
        << "\"/><text x=\"" << num(sx + LegendBox::kSwatch + LegendBox::kPad) << "\" y=\"" << num(l.row_baseline(i))
        << "\" font-size=\"" << kLegendFontSize << "\">" << xml_escape(chart.series[l.entries[i]].name) << "</text>\n";
    }
    o << "</g>\n";
  }
  o << "</svg>\n";
  return o.str();
}

std::string svg_chart_grid(const std::vector<Chart>& charts, const std::string& title, int columns, int panel_width,
                           int panel_height) {
  const int w = panel_width, h = panel_height, head = 28;
  columns = std::max(1, std::min(columns, static_cast<int>(std::max<size_t>(1, charts.size()))));
  const int rows = static_cast<int>((charts.size() + static_cast<size_t>(columns) - 1) / static_cast<size_t>(columns));
  std::ostringstream o;
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w * columns
    << "\" height=\"" << head + h * std::max(rows, 1) << "\" font-family=\"" << kSvgFontFamily << "\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"8\" y=\"20\" font-size=\"16\">"
    << xml_escape(title) << "</text>\n";
  for (size_t i = 0; i < charts.size(); ++i) {
    const int cx = static_cast<int>(i % static_cast<size_t>(columns)) * w;
    const int cy = head + static_cast<int>(i / static_cast<size_t>(columns)) * h;
    o << "<g transform=\"translate(" << cx << "," << cy << ")\">\n" << svg_chart(charts[i], w, h) << "</g>\n";
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace experiment
