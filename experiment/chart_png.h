// Raster line charts: the Chart model of svg.h drawn into an RGB PNG (curves.png), with the SVG's layout
// (ChartFrame), tick labels and colours, so that a run's curves can be looked at without a browser.
#pragma once
#include <string>
#include <vector>

#include "data/image_write.h"
#include "experiment/svg.h"

namespace experiment {

// `charts` in rows of `columns` panels of panel_width x panel_height pixels, under `title` (a 28-pixel
// heading): an 8-bit RGB image of (panel_width * columns) x (28 + panel_height * rows). Each panel has
// its title, the plot frame, five y ticks with gridlines and labels, five x tick labels, the x-axis
// label, each series as an anti-aliased line with dots, a legend of the named series, and "no data"
// when nothing is drawable. Throws engine::Error when a panel is too small for the margins.
data::PngImage png_chart_grid(const std::vector<Chart>& charts, const std::string& title, int columns,
                              int panel_width = 320, int panel_height = 220);

// Width in pixels of `text` in the charts' bitmap font at `scale` (6 pixels per character, less the
// last column's spacing).
int png_text_width(const std::string& text, int scale = 1);

}  // namespace experiment
