// Text in a real TrueType font for the raster pictures (curves.png, chart_png.h's canvas): the font
// file compiled into the library at build time (CMakeLists.txt embeds ENGINE_CHART_FONT, DejaVu Sans
// by default), rasterised by stb_truetype with anti-aliased coverage.
//
// Sizes are CSS font sizes: `size` pixels to the em, as the SVG charts' font-size is, so that curves.png
// and curves.svg set their text alike. Text is UTF-8; a byte that is not part of valid UTF-8, and a
// control character, draws '?'.
#pragma once
#include <functional>
#include <string>

namespace experiment {

// The advance width of `text` in pixels at `size` pixels to the em (kerning included).
double font_text_width(const std::string& text, double size);
// The font's ascent and descent (positive, below the baseline) in pixels at `size`.
double font_ascent(double size);
double font_descent(double size);

// Calls plot(x, y, coverage) once for every pixel that `text` covers (coverage in (0, 1]), the text
// starting at column x0 with its baseline at row `baseline`; bold thickens the strokes (the glyphs drawn
// again 0.6 pixels to the right, the coverage the maximum of both).
void font_rasterize(const std::string& text, double x0, double baseline, double size, bool bold,
                    const std::function<void(int x, int y, float coverage)>& plot);

}  // namespace experiment
