// Minimal SVG line charts for the reports (curves.svg, results.html): no dependencies, self-contained.
//
// A Chart is a title, an x-axis label and series of (x, y) points; svg_chart draws one with axes, five
// ticks per axis, a line and dots per series and a legend; svg_chart_grid lays several out in a grid as a
// complete SVG document. Non-finite points are skipped.
#pragma once
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

// One chart as an <svg> element of width x height pixels (embeddable in HTML).
std::string svg_chart(const Chart& chart, int width = 320, int height = 220);
// A standalone SVG document: `charts` in rows of `columns`, under `title`.
std::string svg_chart_grid(const std::vector<Chart>& charts, const std::string& title, int columns);
// Text escaped for XML/HTML.
std::string xml_escape(const std::string& text);

}  // namespace experiment
