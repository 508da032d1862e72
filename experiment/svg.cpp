// SVG line charts (see svg.h).
#include "experiment/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace experiment {

namespace {
constexpr Rgb kSeriesRgb[] = {{0x1f, 0x77, 0xb4}, {0xd6, 0x27, 0x28}, {0x2c, 0xa0, 0x2c},
                              {0xff, 0x7f, 0x0e}, {0x94, 0x67, 0xbd}, {0x8c, 0x56, 0x4b}};

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
}  // namespace

Rgb series_rgb(size_t index) { return kSeriesRgb[index % (sizeof kSeriesRgb / sizeof kSeriesRgb[0])]; }
std::string series_color(size_t index) { return hex(series_rgb(index)); }

std::string tick_label(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3g", value);
  return buffer;
}

bool drawable_point(const Chart& chart, double x, double y) {
  return std::isfinite(x) && std::isfinite(y) && !(chart.log_x && x <= 0);
}

ChartFrame chart_frame(const Chart& chart, int width, int height) {
  ChartFrame f;
  f.log_x = chart.log_x;
  f.plot_width = width - ChartFrame::kLeft - ChartFrame::kRight;
  f.plot_height = height - ChartFrame::kTop - ChartFrame::kBottom;
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
  if (!f.has_data) return f;
  if (x1 == x0) { x0 -= 0.5; x1 += 0.5; }
  if (y1 == y0) { y0 -= 0.5; y1 += 0.5; }
  const double pad = (y1 - y0) * 0.05;
  f.x0 = x0;
  f.x1 = x1;
  f.y0 = y0 - pad;
  f.y1 = y1 + pad;
  return f;
}

double ChartFrame::px(double x) const {
  return left + ((log_x ? std::log10(std::max(x, 1e-300)) : x) - x0) / (x1 - x0) * plot_width;
}
double ChartFrame::py(double y) const { return top + (1 - (y - y0) / (y1 - y0)) * plot_height; }
double ChartFrame::y_tick_value(int i) const { return y0 + (y1 - y0) * i / (kTicks - 1); }
double ChartFrame::x_tick_value(int i) const {
  const double t = x0 + (x1 - x0) * i / (kTicks - 1);
  return log_x ? std::pow(10.0, t) : t;
}
double ChartFrame::x_tick_pixel(int i) const { return left + plot_width * i / (kTicks - 1); }

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
    << "\" viewBox=\"0 0 " << width << " " << height << "\" font-family=\"sans-serif\" font-size=\"10\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << width / 2 << "\" y=\"14\" text-anchor=\"middle\" font-size=\"12\">" << xml_escape(chart.title)
    << "</text>\n";
  if (!f.has_data) {
    o << "<text x=\"" << width / 2 << "\" y=\"" << height / 2 << "\" text-anchor=\"middle\">no data</text>\n</svg>\n";
    return o.str();
  }
  o << "<rect x=\"" << f.left << "\" y=\"" << f.top << "\" width=\"" << f.plot_width << "\" height=\"" << f.plot_height
    << "\" fill=\"none\" stroke=\"" << hex(kFrameRgb) << "\"/>\n";
  for (int i = 0; i < ChartFrame::kTicks; ++i) {
    const double yv = f.y_tick_value(i), yy = f.py(yv);
    o << "<line x1=\"" << f.left - 3 << "\" x2=\"" << f.left + f.plot_width << "\" y1=\"" << num(yy) << "\" y2=\""
      << num(yy) << "\" stroke=\"" << hex(kGridRgb) << "\"/><text x=\"" << f.left - 5 << "\" y=\"" << num(yy + 3)
      << "\" text-anchor=\"end\">" << tick_label(yv) << "</text>\n";
    o << "<text x=\"" << num(f.x_tick_pixel(i)) << "\" y=\"" << num(f.top + f.plot_height + 12)
      << "\" text-anchor=\"middle\">" << tick_label(f.x_tick_value(i)) << "</text>\n";
  }
  o << "<text x=\"" << num(f.left + f.plot_width / 2) << "\" y=\"" << height - 4 << "\" text-anchor=\"middle\">"
    << xml_escape(chart.x_label) << "</text>\n";
  int legend = 0;
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
    if (!s.name.empty()) {
      const double ly = f.top + 10 + 12 * legend++;
      o << "<line x1=\"" << f.left + 6 << "\" x2=\"" << f.left + 20 << "\" y1=\"" << num(ly - 3) << "\" y2=\""
        << num(ly - 3) << "\" stroke=\"" << color << "\" stroke-width=\"2\"/><text x=\"" << f.left + 24 << "\" y=\""
        << num(ly) << "\">" << xml_escape(s.name) << "</text>\n";
    }
  }
  o << "</svg>\n";
  return o.str();
}

std::string svg_chart_grid(const std::vector<Chart>& charts, const std::string& title, int columns) {
  const int w = 320, h = 220, head = 28;
  columns = std::max(1, std::min(columns, static_cast<int>(std::max<size_t>(1, charts.size()))));
  const int rows = static_cast<int>((charts.size() + static_cast<size_t>(columns) - 1) / static_cast<size_t>(columns));
  std::ostringstream o;
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w * columns
    << "\" height=\"" << head + h * std::max(rows, 1) << "\" font-family=\"sans-serif\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"8\" y=\"18\" font-size=\"14\">"
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
