// SVG line charts (see svg.h).
#include "experiment/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace experiment {

namespace {
const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

std::string num(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.1f", v);
  return buffer;
}
std::string tick(double v) {
  char buffer[32];
  if (std::fabs(v) >= 1000 || (std::fabs(v) < 0.01 && v != 0)) std::snprintf(buffer, sizeof buffer, "%.3g", v);
  else std::snprintf(buffer, sizeof buffer, "%.3g", v);
  return buffer;
}
}  // namespace

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
  const double left = 48, right = 10, top = 24, bottom = 36;
  const double pw = width - left - right, ph = height - top - bottom;
  auto tx = [&](double x) { return chart.log_x ? std::log10(std::max(x, 1e-300)) : x; };
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const Series& s : chart.series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i]) || (chart.log_x && s.x[i] <= 0)) continue;
      x0 = std::min(x0, tx(s.x[i]));
      x1 = std::max(x1, tx(s.x[i]));
      y0 = std::min(y0, s.y[i]);
      y1 = std::max(y1, s.y[i]);
    }
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" viewBox=\"0 0 " << width << " " << height << "\" font-family=\"sans-serif\" font-size=\"10\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << width / 2 << "\" y=\"14\" text-anchor=\"middle\" font-size=\"12\">" << xml_escape(chart.title)
    << "</text>\n";
  if (!std::isfinite(x0)) {
    o << "<text x=\"" << width / 2 << "\" y=\"" << height / 2 << "\" text-anchor=\"middle\">no data</text>\n</svg>\n";
    return o.str();
  }
  if (x1 == x0) { x0 -= 0.5; x1 += 0.5; }
  if (y1 == y0) { y0 -= 0.5; y1 += 0.5; }
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  auto px = [&](double x) { return left + (tx(x) - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) { return top + (1 - (y - y0) / (y1 - y0)) * ph; };
  o << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
    << "\" fill=\"none\" stroke=\"#888\"/>\n";
  for (int i = 0; i <= 4; ++i) {
    const double yv = y0 + (y1 - y0) * i / 4, yy = py(yv);
    o << "<line x1=\"" << left - 3 << "\" x2=\"" << left + pw << "\" y1=\"" << num(yy) << "\" y2=\"" << num(yy)
      << "\" stroke=\"#eee\"/><text x=\"" << left - 5 << "\" y=\"" << num(yy + 3) << "\" text-anchor=\"end\">"
      << tick(yv) << "</text>\n";
    const double xt = x0 + (x1 - x0) * i / 4, xv = chart.log_x ? std::pow(10.0, xt) : xt;
    const double xx = left + (xt - x0) / (x1 - x0) * pw;
    o << "<text x=\"" << num(xx) << "\" y=\"" << num(top + ph + 12) << "\" text-anchor=\"middle\">" << tick(xv)
      << "</text>\n";
  }
  o << "<text x=\"" << num(left + pw / 2) << "\" y=\"" << height - 4 << "\" text-anchor=\"middle\">"
    << xml_escape(chart.x_label) << "</text>\n";
  int legend = 0;
  for (size_t k = 0; k < chart.series.size(); ++k) {
    const Series& s = chart.series[k];
    const char* color = kColors[k % 6];
    std::string points;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i]) || (chart.log_x && s.x[i] <= 0)) continue;
      points += num(px(s.x[i])) + "," + num(py(s.y[i])) + " ";
      o << "<circle cx=\"" << num(px(s.x[i])) << "\" cy=\"" << num(py(s.y[i])) << "\" r=\"2.5\" fill=\"" << color
        << "\"/>";
    }
    o << "\n<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.5\" points=\"" << points << "\"/>\n";
    if (!s.name.empty()) {
      const double ly = top + 10 + 12 * legend++;
      o << "<line x1=\"" << left + 6 << "\" x2=\"" << left + 20 << "\" y1=\"" << num(ly - 3) << "\" y2=\"" << num(ly - 3)
        << "\" stroke=\"" << color << "\" stroke-width=\"2\"/><text x=\"" << left + 24 << "\" y=\"" << num(ly) << "\">"
        << xml_escape(s.name) << "</text>\n";
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
