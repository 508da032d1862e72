// curves.png and tensorboard/: the raster charts (decoded back: size, where the series colour lies, a
// rising curve rises, text is drawn, empty and non-finite charts) and the TensorBoard event files
// (CRC-32C known answers, TFRecord framing and the Event protobuf read back by a small reader here, and
// TensorBoard's own loader run on the file when ENGINE_PYTHON names a Python with tensorboard).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "data/image.h"
#include "data/image_write.h"
#include "data/io_util.h"
#include "engine/check.h"
#include "data/crc.h"
#include "experiment/chart_png.h"
#include "experiment/curves.h"
#include "experiment/tensorboard.h"
#include "experiment/trainer.h"
#include "support/temp_path.h"

namespace {

namespace fs = std::filesystem;
using namespace experiment;

std::string temp_dir(const std::string& name) {
  const std::string dir = test_support::fresh_temp_path("experiment_charts", name);
  fs::create_directories(dir);
  return dir;
}

// ---------------------------------------------------------------------------------------------------
// PNG charts

// The PNG as a file would hold it, decoded again by the data library's decoder.
struct Decoded {
  data::Image image;
  const float* at(int x, int y) const {
    return &image.pixels[(static_cast<size_t>(y) * static_cast<size_t>(image.width) + static_cast<size_t>(x)) * 3];
  }
  // Every element but the series is gray (white, #eee, #888, black): colour means a series.
  bool tinted(int x, int y) const {
    const float* p = at(x, y);
    return std::max({p[0], p[1], p[2]}) - std::min({p[0], p[1], p[2]}) > 8;
  }
  bool dark(int x, int y) const { return at(x, y)[0] < 128 && at(x, y)[1] < 128 && at(x, y)[2] < 128; }
  bool is(int x, int y, Rgb c) const { return at(x, y)[0] == c.r && at(x, y)[1] == c.g && at(x, y)[2] == c.b; }
};

Decoded decode(const data::PngImage& png) {
  const std::vector<uint8_t> bytes = data::encode_png(png);
  Decoded d{data::decode_image(bytes.data(), bytes.size(), "curves.png")};
  EXPECT_EQ(d.image.channels, 3);
  return d;
}

std::vector<EpochRow> rising_rows(int epochs) {
  std::vector<EpochRow> rows;
  for (int e = 1; e <= epochs; ++e) {
    EpochRow r;
    r.epoch = e;
    r.train_loss = 0.7 * std::exp(-e / 4.0) + 0.1;  // falls
    r.val_loss = 0.8 - 0.02 * e;
    r.train_acc = 0.5 + 0.04 * e;  // rises
    r.val_acc = 0.5 + 0.03 * e;
    r.seconds = 60 + (e % 3);
    r.images_per_s = 100 + e;
    r.lr = 1e-5;
    rows.push_back(r);
  }
  return rows;
}

constexpr int kPanelW = kCurvesPanelWidth, kPanelH = kCurvesPanelHeight, kHead = 28;

// A box of pixels, inclusive.
struct Box {
  int x0, y0, x1, y1;
  bool contains(int x, int y) const { return x >= x0 && x <= x1 && y >= y0 && y <= y1; }
};
// The plot area of chart i of a one-row grid of width x height panels, widened by `margin` pixels (the
// dots' radius reaches past the frame at the first and last x).
Box plot_area(const std::vector<Chart>& charts, size_t i, int margin, int width = kPanelW, int height = kPanelH) {
  const ChartFrame f = chart_frame(charts[i], width, height);
  const int x = static_cast<int>(i) * width;
  return {x + static_cast<int>(std::lround(f.left)) - margin, kHead + static_cast<int>(std::lround(f.top)) - margin,
          x + static_cast<int>(std::lround(f.left + f.plot_width)) + margin,
          kHead + static_cast<int>(std::lround(f.top + f.plot_height)) + margin};
}
// The legend's box of chart i (empty when there is none).
Box legend_area(const std::vector<Chart>& charts, size_t i, int width = kPanelW, int height = kPanelH) {
  const ChartFrame f = chart_frame(charts[i], width, height);
  if (!f.legend.shown) return {0, 0, -1, -1};
  const int x = static_cast<int>(i) * width;
  return {x + static_cast<int>(std::floor(f.legend.x)), kHead + static_cast<int>(std::floor(f.legend.y)),
          x + static_cast<int>(std::ceil(f.legend.x + f.legend.width)),
          kHead + static_cast<int>(std::ceil(f.legend.y + f.legend.height))};
}

// Pixels of series k's hue (anti-aliased edges included): blue (train) or orange (validation).
bool of_series(const Decoded& d, int x, int y, size_t k) {
  const float* p = d.at(x, y);
  return k == 0 ? p[2] > p[0] + 40 && p[2] > p[1] + 10 : p[0] > p[2] + 60 && p[1] > p[2] + 10;
}

TEST(ChartPng, CurvesAreThreePanelsOfTrainAndValidation) {
  const std::vector<Chart> charts = curves_charts(rising_rows(10));
  ASSERT_EQ(charts.size(), 3u);
  EXPECT_EQ(charts[0].title, "loss");
  EXPECT_EQ(charts[1].title, "accuracy");
  EXPECT_EQ(charts[2].title, "epoch time (s)");
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_EQ(charts[i].series.size(), 2u) << charts[i].title;
    EXPECT_EQ(charts[i].series[0].name, "train");
    EXPECT_EQ(charts[i].series[1].name, "validation");
  }
  const Decoded d = decode(png_chart_grid(charts, "densenet201 training curves", kCurvesColumns, kPanelW, kPanelH));
  ASSERT_EQ(d.image.width, 3 * kPanelW);
  ASSERT_EQ(d.image.height, kHead + kPanelH);
  for (size_t i = 0; i < 3; ++i) {
    const Box inside = plot_area(charts, i, 0);
    for (size_t k = 0; k < charts[i].series.size(); ++k) {
      int exact = 0;
      for (int y = inside.y0; y <= inside.y1; ++y)
        for (int x = inside.x0; x <= inside.x1; ++x) exact += d.is(x, y, series_rgb(k));
      EXPECT_GT(exact, 60) << "panel " << i << " has too few pixels of series " << k << "'s colour";
    }
  }
  // No series colour anywhere outside the plot areas (plus the dots' reach) and the legends.
  int outside = 0;
  for (int y = 0; y < d.image.height; ++y)
    for (int x = 0; x < d.image.width; ++x) {
      bool allowed = false;
      for (size_t i = 0; i < 3; ++i)
        allowed = allowed || plot_area(charts, i, 4).contains(x, y) || legend_area(charts, i).contains(x, y);
      outside += !allowed && d.tinted(x, y);
    }
  EXPECT_EQ(outside, 0);
}

// The mean row of series k's pixels in each of `buckets` column bands of panel i's plot (the legend
// left out).
std::vector<double> mean_rows(const Decoded& d, const std::vector<Chart>& charts, size_t i, size_t k, int buckets) {
  const Box box = plot_area(charts, i, 0), legend = legend_area(charts, i);
  std::vector<double> sum(static_cast<size_t>(buckets), 0), count(static_cast<size_t>(buckets), 0);
  for (int y = box.y0 + 1; y < box.y1; ++y)
    for (int x = box.x0 + 1; x < box.x1; ++x)
      if (of_series(d, x, y, k) && !legend.contains(x, y)) {
        const size_t b = static_cast<size_t>((x - box.x0 - 1) * buckets / (box.x1 - box.x0 - 1));
        sum[b] += y;
        count[b] += 1;
      }
  for (size_t b = 0; b < sum.size(); ++b) {
    EXPECT_GT(count[b], 0) << "panel " << i << " band " << b << " has no pixels of series " << k;
    sum[b] /= std::max(1.0, count[b]);
  }
  return sum;
}

TEST(ChartPng, ARisingSeriesRisesAndAFallingOneFalls) {
  const std::vector<Chart> charts = curves_charts(rising_rows(10));
  const Decoded d = decode(png_chart_grid(charts, "curves", kCurvesColumns, kPanelW, kPanelH));
  for (size_t k = 0; k < 2; ++k) {
    const std::vector<double> accuracy = mean_rows(d, charts, 1, k, 6), loss = mean_rows(d, charts, 0, k, 6);
    for (size_t b = 1; b < accuracy.size(); ++b) {
      EXPECT_LT(accuracy[b], accuracy[b - 1]) << "accuracy rises: series " << k << "'s pixels climb, band " << b;
      EXPECT_GT(loss[b], loss[b - 1]) << "loss falls: series " << k << "'s pixels descend, band " << b;
    }
  }
}

TEST(ChartPng, TitlesTicksAndLabelsAreDrawn) {
  const std::vector<Chart> charts = curves_charts(rising_rows(4));
  const Decoded d = decode(png_chart_grid(charts, "densenet201 training curves", kCurvesColumns, kPanelW, kPanelH));
  auto dark_in = [&](int x0, int y0, int x1, int y1) {
    int n = 0;
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) n += d.dark(x, y);
    return n;
  };
  EXPECT_GT(dark_in(0, 0, 400, kHead - 1), 150) << "the grid's title";
  EXPECT_EQ(dark_in(500, 0, 3 * kPanelW - 1, kHead - 1), 0) << "the title is short and left-aligned";
  for (size_t i = 0; i < 3; ++i) {
    const int x0 = static_cast<int>(i) * kPanelW;
    const Box box = plot_area(charts, i, 0);
    EXPECT_GT(dark_in(x0, kHead, x0 + kPanelW - 1, kHead + 20), 20) << "panel " << i << " title";
    EXPECT_GT(dark_in(x0, box.y0, box.x0 - 5, box.y1), 40) << "panel " << i << " y tick labels";
    EXPECT_GT(dark_in(box.x0, box.y1 + 5, box.x1, box.y1 + 18), 15) << "panel " << i << " x tick labels";
    EXPECT_GT(dark_in(x0, kHead + kPanelH - 18, x0 + kPanelW - 1, kHead + kPanelH - 1), 10) << "panel " << i
                                                                                            << " axis label";
    // The frame: #888 along the plot's left edge.
    int frame = 0;
    for (int y = box.y0; y <= box.y1; ++y) frame += d.is(box.x0, y, kFrameRgb);
    EXPECT_GT(frame, (box.y1 - box.y0) / 2) << "panel " << i << " frame";
  }
}

TEST(ChartPng, EmptyAndNonFiniteChartsStillDraw) {
  const double inf = INFINITY, nan = NAN;
  const std::vector<Chart> charts = {
      {"empty", "x", {}},
      {"all non-finite", "x", {{"", {1, 2, inf}, {nan, inf, 3}}}},
      {"some non-finite", "x", {{"a", {1, 2, 3, nan, 5}, {1, nan, 3, 4, 5}}, {"b", {1, 5}, {5, 1}}}},
      {"log x", "images", {{"", {-1, 0, 100, 3000, 10000}, {9, 9, 0.6, 0.7, 0.8}}}, true},
  };
  const Decoded d = decode(png_chart_grid(charts, "odd data", 4, kPanelW, kPanelH));
  ASSERT_EQ(d.image.width, 4 * kPanelW);
  for (int i = 0; i < 2; ++i) {
    // "no data" in the middle, no frame, no series.
    // (The frame would be a long column of #888 pixels; anti-aliased text has short stems of that grey.)
    int dark = 0, frame = 0, tinted = 0;
    for (int x = i * kPanelW; x < (i + 1) * kPanelW; ++x) {
      int column = 0;
      for (int y = kHead; y < kHead + kPanelH; ++y) {
        const bool middle = std::abs(y - (kHead + kPanelH / 2)) <= 10 && std::abs(x - (i * kPanelW + kPanelW / 2)) <= 30;
        dark += middle && d.dark(x, y);
        column += d.is(x, y, kFrameRgb);
        tinted += d.tinted(x, y);
      }
      frame = std::max(frame, column);
    }
    EXPECT_GT(dark, 20) << "panel " << i << " says no data";
    EXPECT_LT(frame, 20) << "panel " << i << " has no frame (it would be a column of " << kPanelH / 2 << "+)";
    EXPECT_EQ(tinted, 0) << "panel " << i;
  }
  // Both series of panel 2 are drawn, with a legend.
  const Box legend = legend_area(charts, 2);
  ASSERT_LT(legend.x0, legend.x1) << "panel 2 has a legend";
  for (size_t k = 0; k < 2; ++k) {
    int in_legend = 0, anywhere = 0;
    for (int y = kHead; y < kHead + kPanelH; ++y)
      for (int x = 2 * kPanelW; x < 3 * kPanelW; ++x) {
        anywhere += d.is(x, y, series_rgb(k));
        in_legend += d.is(x, y, series_rgb(k)) && legend.contains(x, y);
      }
    EXPECT_GT(anywhere, 30) << "series " << k;
    EXPECT_GT(in_legend, 5) << "legend of series " << k;
  }
  // Skipped points draw nothing anywhere: no series colour outside the plot areas and the legend.
  int outside = 0;
  for (int y = 0; y < d.image.height; ++y)
    for (int x = 0; x < d.image.width; ++x) {
      const size_t i = static_cast<size_t>(x / kPanelW);
      outside += d.tinted(x, y) && !plot_area(charts, i, 4).contains(x, y) && !legend_area(charts, i).contains(x, y);
    }
  EXPECT_EQ(outside, 0);
  // Log x: x <= 0 skipped; 100, 3000, 10000 at their log10 positions.
  const ChartFrame f = chart_frame(charts[3], kPanelW, kPanelH);
  const double x3000 = 3 * kPanelW + f.px(3000);
  int near = 0;
  for (int y = kHead; y < kHead + kPanelH; ++y)
    for (int x = static_cast<int>(x3000) - 1; x <= static_cast<int>(x3000) + 2; ++x) near += d.is(x, y, series_rgb(0));
  EXPECT_GT(near, 3) << "the dot at x = 3000 on the log axis";
  EXPECT_EQ(f.x_labels, (std::vector<std::string>{"100", "1000", "10000"})) << "powers of ten on the log axis";
}

TEST(ChartPng, ExtremeValuesDoNotCrash) {
  const std::vector<Chart> charts = {{"huge", "x", {{"", {-1e308, 1e308}, {-1e308, 1e308}}}},
                                     {"tiny", "x", {{"", {0, 1e-300}, {1e-300, 2e-300}}}, true}};
  const data::PngImage png = png_chart_grid(charts, std::string("odd \x01\xff text"), 2);
  EXPECT_EQ(png.width, 2 * 320);
  EXPECT_EQ(png.samples.size(), static_cast<size_t>(png.width) * static_cast<size_t>(png.height) * 3);
}

TEST(ChartPng, EveryGlyphIsDistinct) {
  // 95 one-character titles, one per panel: the title bands must all differ (and only space is blank).
  std::vector<Chart> charts;
  for (char c = 32; c <= 126; ++c) charts.push_back({std::string(1, c), "", {}});
  const int w = 90, h = 90, columns = 10;
  const data::PngImage png = png_chart_grid(charts, "", columns, w, h);
  std::set<std::vector<uint16_t>> bands;
  for (size_t i = 0; i < charts.size(); ++i) {
    std::vector<uint16_t> band;
    const int x0 = static_cast<int>(i % columns) * w, y0 = kHead + static_cast<int>(i / columns) * h;
    for (int y = y0; y < y0 + 22; ++y)
      for (int x = x0; x < x0 + w; ++x) band.push_back(png.samples[(static_cast<size_t>(y) * png.width + x) * 3]);
    const bool blank = std::all_of(band.begin(), band.end(), [](uint16_t v) { return v == 255; });
    EXPECT_EQ(blank, i == 0) << "glyph " << static_cast<int>(32 + i);
    bands.insert(band);
  }
  EXPECT_EQ(bands.size(), charts.size());
  // Proportional widths that scale with the size: 'W' is wider than 'i'; twice the size, twice the width.
  EXPECT_GT(png_text_width("WWW", 10), png_text_width("iii", 10) + 10);
  EXPECT_NEAR(png_text_width("accuracy", 20), 2 * png_text_width("accuracy", 10), 2);
}

// The text is the TrueType font, anti-aliased: its glyphs carry intermediate grey levels (a bitmap font
// is black and white only), and a letter looks like the font's, not the old 5x9 grid's.
TEST(ChartPng, TextIsAntiAliasedTrueType) {
  Canvas canvas(200, 40);
  canvas.text(4, 28, "Accuracy 0.25", kTextRgb, TextAnchor::start, 16);
  std::set<int> levels;
  int ink = 0, top = 40, bottom = 0;
  for (int y = 0; y < 40; ++y)
    for (int x = 0; x < 200; ++x) {
      const int v = canvas.pixels()[(static_cast<size_t>(y) * 200 + static_cast<size_t>(x)) * 3];
      if (v < 255) {
        levels.insert(v);
        ++ink;
        top = std::min(top, y);
        bottom = std::max(bottom, y);
      }
    }
  EXPECT_GT(ink, 150);
  EXPECT_GT(levels.size(), 20u) << "anti-aliased edges have many grey levels";
  EXPECT_GE(bottom - top, 13) << "16-pixel text: capitals and descenders span more than the old 9-row glyphs";
  // 'A' at 16 px in DejaVu Sans is about 11 px wide; the old font's was 5 columns per scale step.
  EXPECT_GE(png_text_width("A", 16), 9);
  EXPECT_LE(png_text_width("A", 16), 13);
  // UTF-8 text draws its letters (an e-acute is not '?'), and bad bytes draw something, not nothing.
  EXPECT_NE(png_text_width("\xc3\xa9", 16), png_text_width("?", 16));
  EXPECT_EQ(png_text_width("\xff", 16), png_text_width("?", 16));
}

TEST(ChartPng, TooSmallPanelsAndTooLargeImagesAreRefused) {
  EXPECT_THROW(png_chart_grid({}, "t", 1, 40, 40), engine::Error);
  EXPECT_THROW(png_chart_grid(std::vector<Chart>(100), "too tall", 1), engine::Error);
  const data::PngImage none = png_chart_grid({}, "nothing", 5);
  EXPECT_EQ(none.width, 320);  // no charts: one empty column
  EXPECT_EQ(none.height, kHead + 220);
}

// ---------------------------------------------------------------------------------------------------
// Layout: ticks, limits, legends

// Ticks evenly spaced by a step of 1, 2 or 5 x 10^k, each a multiple of it.
bool round_ticks(const std::vector<double>& t) {
  if (t.size() < 2) return t.size() == 1;
  const double raw = t[1] - t[0], decade = std::pow(10.0, std::floor(std::log10(raw) + 1e-6));
  const double m = std::round(raw / decade), step = m * decade;
  if (!(m == 1 || m == 2 || m == 5)) return false;
  for (size_t i = 0; i < t.size(); ++i) {
    if (std::abs(t[i] / step - std::round(t[i] / step)) > 1e-6) return false;
    if (i && std::abs(t[i] - t[i - 1] - step) > step * 1e-6) return false;
  }
  return true;
}

bool round_number(double v) {
  if (v == 0) return true;
  const double m = std::abs(v) / std::pow(10.0, std::floor(std::log10(std::abs(v)) + 1e-12));
  for (double r : {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0})
    if (std::abs(m - r) < 1e-9) return true;
  return false;
}

TEST(ChartLayout, NiceTicksAreRoundNumbersInSteps125) {
  EXPECT_EQ(nice_ticks(0, 1, 6), (std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1}));
  EXPECT_EQ(nice_ticks(1, 10, 6, true), (std::vector<double>{0, 2, 4, 6, 8, 10}));
  EXPECT_EQ(nice_ticks(1, 3, 6, true), (std::vector<double>{1, 2, 3})) << "integer: no 1.5";
  EXPECT_EQ(nice_ticks(0.52, 0.93, 6), (std::vector<double>{0.5, 0.6, 0.7, 0.8, 0.9, 1}));
  EXPECT_EQ(nice_ticks(58, 63, 6), (std::vector<double>{58, 59, 60, 61, 62, 63}));
  EXPECT_EQ(nice_ticks(58, 64.5, 6), (std::vector<double>{58, 60, 62, 64, 66}));
  EXPECT_EQ(nice_ticks(-3, 7, 6), (std::vector<double>{-5, 0, 5, 10}));
  for (double lo : {-123.4, -1.0, 0.0, 1e-7, 0.31, 5.0, 1234.5, 3e9})
    for (double span : {1e-6, 0.013, 0.7, 1.0, 3.3, 47.0, 1e4})
      for (int max_ticks : {3, 5, 6, 8})
        for (bool integer : {false, true}) {
          const double hi = lo + span;
          if (std::abs(lo) / span > 1e6) continue;  // near the end of double's digits
          const std::vector<double> t = nice_ticks(lo, hi, max_ticks, integer);
          ASSERT_GE(t.size(), 2u) << lo << ".." << hi;
          EXPECT_LE(static_cast<int>(t.size()), max_ticks) << lo << ".." << hi;
          EXPECT_LE(t.front(), lo + 1e-9 * std::abs(lo)) << "the ticks cover the range";
          EXPECT_GE(t.back(), hi - 1e-9 * std::abs(hi));
          // The step, as the ticks' differences give it up to rounding.
          const double raw = t[1] - t[0], decade = std::pow(10.0, std::floor(std::log10(raw) + 1e-6));
          const double step = std::round(raw / decade) * decade;
          EXPECT_NEAR(raw, step, step * 1e-6);
          EXPECT_TRUE(round_number(step)) << "step " << step << " of " << lo << ".." << hi;
          const double m = step / std::pow(10.0, std::floor(std::log10(step) + 1e-12));
          EXPECT_TRUE(std::abs(m - 1) < 1e-6 || std::abs(m - 2) < 1e-6 || std::abs(m - 5) < 1e-6) << step;
          if (integer) {
            EXPECT_GE(step, 1.0);
          }
          for (size_t i = 0; i < t.size(); ++i) {
            EXPECT_NEAR(t[i] / step, std::round(t[i] / step), 1e-6 * std::max(1.0, std::abs(t[i] / step)))
                << "tick " << t[i] << " is a multiple of " << step;
            if (i) {
              EXPECT_NEAR(t[i] - t[i - 1], step, step * 1e-6);
            }
          }
        }
  // Degenerate ranges still give ticks.
  EXPECT_GE(nice_ticks(5, 5).size(), 2u);
  EXPECT_GE(nice_ticks(0, 0).size(), 2u);
  EXPECT_EQ(nice_ticks(NAN, 1).size(), 5u);
}

TEST(ChartLayout, TickLabelsShowTheDigitsOfTheStep) {
  EXPECT_EQ(tick_label(0.6000000000000001, 0.2), "0.6");
  EXPECT_EQ(tick_label(0.25, 0.05), "0.25");
  EXPECT_EQ(tick_label(10000, 2000), "10000");
  EXPECT_EQ(tick_label(-0.0, 0.1), "0");
  EXPECT_EQ(tick_label(3, 1), "3");
  EXPECT_EQ(tick_label(2e8, 1e8), "2e+08");
}

TEST(ChartLayout, EpochsAreIntegersAndAccuracyStaysWithinZeroAndOne) {
  for (int epochs : {1, 2, 3, 7, 10, 30, 120}) {
    std::vector<EpochRow> rows = rising_rows(epochs);
    rows.back().train_acc = 1.0;  // touches the top
    rows.front().val_acc = 0.0;   // and the bottom
    const std::vector<Chart> charts = curves_charts(rows);
    for (const Chart& chart : charts) {
      const ChartFrame f = chart_frame(chart, kPanelW, kPanelH);
      ASSERT_FALSE(f.x_ticks.empty()) << epochs << " epochs, " << chart.title;
      for (double t : f.x_ticks) EXPECT_EQ(t, std::round(t)) << epochs << " epochs: the x ticks are whole epochs";
      for (const std::string& label : f.x_labels) EXPECT_EQ(label.find('.'), std::string::npos) << label;
      EXPECT_TRUE(round_ticks(f.y_ticks)) << chart.title;
      EXPECT_TRUE(round_ticks(f.x_ticks)) << chart.title;
    }
    const ChartFrame acc = chart_frame(charts[1], kPanelW, kPanelH);
    EXPECT_GE(acc.y0, 0.0) << epochs << " epochs";
    EXPECT_LE(acc.y1, 1.0) << epochs << " epochs";
    EXPECT_GE(acc.y_ticks.size(), 2u);
    for (double t : acc.y_ticks) {
      EXPECT_GE(t, 0.0);
      EXPECT_LE(t, 1.0);
    }
  }
}

// The legend's box holds no data: no dot centre within it (grown by the dots' radius) in the layout,
// and in the picture no pixel of a series' colour under it but its own line samples.
TEST(ChartLayout, TheLegendHidesNoData) {
  std::vector<std::vector<EpochRow>> cases = {rising_rows(1), rising_rows(2), rising_rows(10), rising_rows(40)};
  // Data everywhere: a zigzag of train and validation over the whole accuracy range.
  std::vector<EpochRow> zigzag = rising_rows(20);
  for (size_t i = 0; i < zigzag.size(); ++i) {
    zigzag[i].train_acc = i % 2 ? 1.0 : 0.0;
    zigzag[i].val_acc = i % 2 ? 0.0 : 1.0;
    zigzag[i].train_loss = i % 2 ? 3.0 : 0.1;
    zigzag[i].val_loss = 0.5 + 0.1 * static_cast<double>(i % 3);
  }
  cases.push_back(zigzag);
  bool saw_outside = false;
  for (size_t c = 0; c < cases.size(); ++c) {
    const std::vector<Chart> charts = curves_charts(cases[c]);
    const Decoded d = decode(png_chart_grid(charts, "legend", kCurvesColumns, kPanelW, kPanelH));
    for (size_t i = 0; i < charts.size(); ++i) {
      const ChartFrame f = chart_frame(charts[i], kPanelW, kPanelH);
      ASSERT_TRUE(f.legend.shown);
      saw_outside = saw_outside || f.legend.outside;
      for (const Series& s : charts[i].series)
        for (size_t p = 0; p < s.x.size(); ++p) {
          const double x = f.px(s.x[p]), y = f.py(s.y[p]);
          EXPECT_FALSE(x >= f.legend.x - 3.5 && x <= f.legend.x + f.legend.width + 3.5 && y >= f.legend.y - 3.5 &&
                       y <= f.legend.y + f.legend.height + 3.5)
              << "case " << c << ", " << charts[i].title << ": the point of epoch " << s.x[p] << " is under the legend";
        }
      const Box legend = legend_area(charts, i);
      const int samples_end = legend.x0 + static_cast<int>(LegendBox::kPad + LegendBox::kSwatch) + 3;
      int hidden = 0;
      for (int y = legend.y0; y <= legend.y1; ++y)
        for (int x = samples_end; x <= legend.x1; ++x) hidden += d.tinted(x, y);
      EXPECT_EQ(hidden, 0) << "case " << c << ", " << charts[i].title << ": series colour under the legend's text";
    }
  }
  EXPECT_TRUE(saw_outside) << "the zigzag fills every corner: its legend goes outside the plot";
}

TEST(ChartSvg, TheSvgHasTheSameTicksLegendAndFont) {
  const std::vector<Chart> charts = curves_charts(rising_rows(10));
  const std::string svg = svg_chart(charts[1], kPanelW, kPanelH);
  const ChartFrame f = chart_frame(charts[1], kPanelW, kPanelH);
  for (const std::string& label : f.y_labels) EXPECT_NE(svg.find(">" + label + "</text>"), std::string::npos) << label;
  for (const std::string& label : f.x_labels) EXPECT_NE(svg.find(">" + label + "</text>"), std::string::npos) << label;
  EXPECT_NE(svg.find("<g class=\"legend\">"), std::string::npos);
  EXPECT_NE(svg.find(">train</text>"), std::string::npos);
  EXPECT_NE(svg.find(">validation</text>"), std::string::npos);
  EXPECT_NE(svg.find("DejaVu Sans"), std::string::npos);
  const std::string grid = curves_svg(rising_rows(10), "t");
  EXPECT_NE(grid.find("width=\"" + std::to_string(3 * kPanelW) + "\""), std::string::npos);
}

// ---------------------------------------------------------------------------------------------------
// TensorBoard event files

TEST(TensorBoard, Crc32cKnownAnswers) {
  // The check value of CRC-32C and the iSCSI test vectors of RFC 3720, B.4.
  EXPECT_EQ(data::crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(data::crc32c("", 0), 0u);
  uint8_t bytes[32];
  std::memset(bytes, 0, sizeof bytes);
  EXPECT_EQ(data::crc32c(bytes, 32), 0x8A9136AAu);
  std::memset(bytes, 0xff, sizeof bytes);
  EXPECT_EQ(data::crc32c(bytes, 32), 0x62A8AB43u);
  for (int i = 0; i < 32; ++i) bytes[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(data::crc32c(bytes, 32), 0x46DD794Eu);
  for (int i = 0; i < 32; ++i) bytes[i] = static_cast<uint8_t>(31 - i);
  EXPECT_EQ(data::crc32c(bytes, 32), 0x113FDB5Cu);
  // The mask: rotate right by 15, add 0xa282ead8.
  const uint32_t crc = data::crc32c("123456789", 9);
  EXPECT_EQ(masked_crc32c("123456789", 9), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
}

// A reader of what tensorboard.h writes, independent of the writer's code.
uint64_t le(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = v << 8 | static_cast<uint8_t>(s.at(at + static_cast<size_t>(i)));
  return v;
}

std::vector<std::string> read_records(const std::string& file) {
  std::vector<std::string> records;
  size_t at = 0;
  auto masked = [](const std::string& bytes) {
    const uint32_t c = data::crc32c(bytes.data(), bytes.size());
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
  };
  while (at < file.size()) {
    EXPECT_LE(at + 12, file.size()) << "truncated header";
    const uint64_t length = le(file, at, 8);
    EXPECT_EQ(le(file, at + 8, 4), masked(file.substr(at, 8))) << "length CRC of the record at " << at;
    EXPECT_LE(at + 16 + length, file.size()) << "truncated record";
    const std::string payload = file.substr(at + 12, length);
    EXPECT_EQ(le(file, at + 12 + length, 4), masked(payload)) << "payload CRC of the record at " << at;
    records.push_back(payload);
    at += 16 + length;
  }
  return records;
}

struct Field {
  uint32_t number = 0, wire = 0;
  uint64_t varint = 0;  // wire 0; the bits of fixed64 / fixed32
  std::string bytes;    // wire 2
};

std::vector<Field> parse_message(const std::string& m) {
  std::vector<Field> fields;
  size_t at = 0;
  auto varint = [&] {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      const uint8_t b = static_cast<uint8_t>(m.at(at++));
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
  };
  while (at < m.size()) {
    const uint64_t key = varint();
    Field f;
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire = static_cast<uint32_t>(key & 7);
    if (f.wire == 0) {
      f.varint = varint();
    } else if (f.wire == 1 || f.wire == 5) {
      const int n = f.wire == 1 ? 8 : 4;
      f.varint = le(m, at, n);
      at += static_cast<size_t>(n);
    } else if (f.wire == 2) {
      const size_t n = varint();
      f.bytes = m.substr(at, n);
      at += n;
    } else {
      ADD_FAILURE() << "unexpected wire type " << f.wire;
      break;
    }
    fields.push_back(f);
  }
  return fields;
}

struct ReadEvent {
  double wall_time = NAN;
  int64_t step = -1;
  std::string file_version;
  std::vector<std::pair<std::string, float>> values;
};

ReadEvent parse_event(const std::string& payload) {
  ReadEvent e;
  for (const Field& f : parse_message(payload)) {
    if (f.number == 1 && f.wire == 1) std::memcpy(&e.wall_time, &f.varint, 8);
    else if (f.number == 2 && f.wire == 0) e.step = static_cast<int64_t>(f.varint);
    else if (f.number == 3 && f.wire == 2) e.file_version = f.bytes;
    else if (f.number == 5 && f.wire == 2) {
      for (const Field& value : parse_message(f.bytes)) {
        EXPECT_EQ(value.number, 1u);
        std::string tag;
        float simple = NAN;
        for (const Field& v : parse_message(value.bytes)) {
          if (v.number == 1 && v.wire == 2) tag = v.bytes;
          if (v.number == 2 && v.wire == 5) {
            const uint32_t bits = static_cast<uint32_t>(v.varint);
            std::memcpy(&simple, &bits, 4);
          }
        }
        e.values.emplace_back(tag, simple);
      }
    } else {
      ADD_FAILURE() << "unexpected Event field " << f.number << " (wire " << f.wire << ")";
    }
  }
  return e;
}

std::vector<ScalarEvent> sample_events() {
  return {{1, 61.5, {{"train/loss", 0.6931f}, {"val/accuracy", 0.5f}}},
          {2, 120.25, {{"train/loss", 0.5f}, {"val/accuracy", 0.625f}, {"lr", 1e-5f}}},
          {300, 1e6, {{"negative", -2.5f}}}};
}

TEST(TensorBoard, RecordsRoundTripThroughAReader) {
  const std::string record = tfrecord("hello");
  ASSERT_EQ(record.size(), 16u + 5u);
  EXPECT_EQ(read_records(record), std::vector<std::string>{"hello"});
  EXPECT_EQ(read_records(tfrecord("")), std::vector<std::string>{""});

  const double start = 1700000000;
  const std::vector<ScalarEvent> events = sample_events();
  const std::vector<std::string> records = read_records(tensorboard_events(events, start));
  ASSERT_EQ(records.size(), events.size() + 1);
  const ReadEvent first = parse_event(records[0]);
  EXPECT_EQ(first.file_version, "brain.Event:2");
  EXPECT_EQ(first.wall_time, start);
  EXPECT_TRUE(first.values.empty());
  for (size_t i = 0; i < events.size(); ++i) {
    const ReadEvent e = parse_event(records[i + 1]);
    EXPECT_EQ(e.step, events[i].step);
    EXPECT_EQ(e.wall_time, start + events[i].seconds);
    EXPECT_EQ(e.file_version, "");
    EXPECT_EQ(e.values, events[i].values);
  }
}

// Train and validation in two runs under the same tags, so that TensorBoard overlays them as Keras'
// callback has them.
TEST(TensorBoard, EpochRowsBecomeTrainAndValidationRunsWithOneTagEach) {
  const std::vector<EpochRow> rows = rising_rows(3);
  const EpochScalars runs = epoch_scalar_events(rows);
  ASSERT_EQ(runs.train.size(), 3u);
  ASSERT_EQ(runs.validation.size(), 3u);
  for (const auto* events : {&runs.train, &runs.validation}) {
    EXPECT_EQ((*events)[2].step, 3);
    EXPECT_DOUBLE_EQ((*events)[2].seconds, rows[0].seconds + rows[1].seconds + rows[2].seconds);
  }
  auto tags = [](const ScalarEvent& e) {
    std::vector<std::string> t;
    for (const auto& [tag, value] : e.values) t.push_back(tag);
    return t;
  };
  EXPECT_EQ(tags(runs.train[1]),
            (std::vector<std::string>{"loss", "accuracy", "time/epoch_seconds", "time/images_per_s", "lr"}));
  EXPECT_EQ(tags(runs.validation[1]), (std::vector<std::string>{"loss", "accuracy"}));
  EXPECT_EQ(runs.train[1].values[0].second, static_cast<float>(rows[1].train_loss));
  EXPECT_EQ(runs.validation[1].values[0].second, static_cast<float>(rows[1].val_loss));
  EXPECT_EQ(runs.validation[1].values[1].second, static_cast<float>(rows[1].val_acc));
}

// A run's folder after epochs 1..3 written epoch by epoch (a resume in between, later in time) holds the
// same bytes as one written at once: tensorboard/train/ and tensorboard/validation/ each one event file.
TEST(TensorBoard, ResumedRunsRegenerateIdenticalFilesInBothRuns) {
  const std::vector<EpochRow> rows = rising_rows(3);
  const std::string stepwise = temp_dir("stepwise"), at_once = temp_dir("at_once");
  for (size_t n = 1; n <= rows.size(); ++n)
    write_run_curves(stepwise, std::vector<EpochRow>(rows.begin(), rows.begin() + static_cast<long>(n)), "t",
                     1700000000.5 + 1000.0 * static_cast<double>(n - 1));
  write_run_curves(at_once, rows, "t", 1700000000.5);
  for (const char* run : {"train", "validation"}) {
    std::vector<std::string> a, b;
    for (const auto& e : fs::directory_iterator(stepwise + "/tensorboard/" + run)) a.push_back(e.path().string());
    for (const auto& e : fs::directory_iterator(at_once + "/tensorboard/" + run)) b.push_back(e.path().string());
    ASSERT_EQ(a.size(), 1u) << run;
    ASSERT_EQ(b.size(), 1u) << run;
    EXPECT_EQ(fs::path(a[0]).filename(), fs::path(b[0]).filename()) << run;
    EXPECT_EQ(fs::path(a[0]).filename().string(), "events.out.tfevents.1700000000.mura-engine");
    EXPECT_EQ(data::read_file_text(a[0]), data::read_file_text(b[0])) << run << ": the resumed file differs";
  }
  for (const char* file : {"/curves.svg", "/curves.png"})
    EXPECT_EQ(data::read_file_text(stepwise + file), data::read_file_text(at_once + file)) << file;
}

// A run folder of the older layout (one event file in tensorboard/ itself) resumed: that file goes, the
// two runs come, and a file that is not ours stays.
TEST(TensorBoard, TheOlderSingleFileLayoutIsReplacedOnResume) {
  const std::string out = temp_dir("older");
  fs::create_directories(out + "/tensorboard");
  const std::string old_file = out + "/tensorboard/events.out.tfevents.1600000000.mura-engine";
  std::ofstream(old_file) << "old";
  std::ofstream(out + "/tensorboard/events.out.tfevents.1600000000.other-writer") << "not ours";
  write_run_curves(out, rising_rows(2), "t", 1700000000);
  EXPECT_FALSE(fs::exists(old_file));
  EXPECT_TRUE(fs::exists(out + "/tensorboard/events.out.tfevents.1600000000.other-writer"));
  EXPECT_TRUE(fs::exists(out + "/tensorboard/train/events.out.tfevents.1700000000.mura-engine"));
  EXPECT_TRUE(fs::exists(out + "/tensorboard/validation/events.out.tfevents.1700000000.mura-engine"));
  EXPECT_EQ(remove_event_files(out + "/tensorboard/train"), 1);
  EXPECT_EQ(remove_event_files(out + "/nonexistent"), 0);
}

TEST(TensorBoard, ARunKeepsItsFileNameAcrossRewrites) {
  const std::string dir = temp_dir("rewrite") + "/tensorboard";
  const std::vector<ScalarEvent> events = sample_events();
  const std::string path = write_tensorboard_run(dir, {events[0]}, 1700000123.75);
  EXPECT_EQ(path, dir + "/events.out.tfevents.1700000123.mura-engine");
  // A resumed run starts later, but the file (and its start time) stays.
  EXPECT_EQ(write_tensorboard_run(dir, events, 1700009999.0), path);
  EXPECT_EQ(data::read_file_text(path), tensorboard_events(events, 1700000123));
  // Fewer events (a resume that dropped epochs): the file is replaced, not appended to.
  EXPECT_EQ(write_tensorboard_run(dir, {events[0], events[2]}, 1700009999.0), path);
  EXPECT_EQ(data::read_file_text(path), tensorboard_events({events[0], events[2]}, 1700000123));
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"events.out.tfevents.1700000123.mura-engine"}) << "nothing else is left";
}

// TensorBoard's own reader on our file, when a Python with tensorboard is at hand.
// The quoted ENGINE_PYTHON when it can import tensorboard; otherwise "" and why in `reason`.
std::string tensorboard_python(std::string& reason) {
  const char* python = std::getenv("ENGINE_PYTHON");
  if (!python || !*python) {
    reason = "set ENGINE_PYTHON to a python with tensorboard; scripts/test.sh does";
    return "";
  }
  const std::string quoted = "'" + std::string(python) + "'";
  if (std::system((quoted + " -c 'import tensorboard' >/dev/null 2>&1").c_str()) != 0) {
    reason = "ENGINE_PYTHON (" + std::string(python) + ") cannot import tensorboard; set ENGINE_PYTHON to a python "
             "with tensorboard; scripts/test.sh does";
    return "";
  }
  return quoted;
}

TEST(TensorBoard, TensorBoardReadsTheScalars) {
  std::string reason;
  const std::string quoted = tensorboard_python(reason);
  if (quoted.empty()) GTEST_SKIP() << reason;
  const std::string dir = temp_dir("tensorboard");
  const std::vector<ScalarEvent> events = sample_events();
  const double start = 1700000000;
  const std::string path = write_tensorboard_run(dir + "/run", events, start);
  std::ofstream(dir + "/read.py") << R"(import sys
from tensorboard.backend.event_processing import event_accumulator, event_file_loader
path = sys.argv[1]
first = next(iter(event_file_loader.LegacyEventFileLoader(path).Load()))
print("file_version", first.file_version)
acc = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.SCALARS: 0})
acc.Reload()
for tag in sorted(acc.Tags()["scalars"]):
    for s in acc.Scalars(tag):
        print("scalar", tag, s.step, repr(s.value), repr(s.wall_time))
)";
  const std::string out = dir + "/out.txt", err = dir + "/err.txt";
  const std::string command = quoted + " '" + dir + "/read.py' '" + path + "' >'" + out + "' 2>'" + err + "'";
  const int status = std::system(command.c_str());
  ASSERT_EQ(status, 0) << "TensorBoard's loader failed:\n" << data::read_file_text(err);

  std::multiset<std::string> expected, got;
  for (const ScalarEvent& e : events)
    for (const auto& [tag, value] : e.values) {
      std::ostringstream line;
      line.precision(17);
      line << tag << " " << e.step << " " << static_cast<double>(value) << " " << start + e.seconds;
      expected.insert(line.str());
    }
  std::istringstream lines(data::read_file_text(out));
  std::string kind, version;
  lines >> kind >> version;
  EXPECT_EQ(kind + " " + version, "file_version brain.Event:2");
  for (std::string tag; lines >> kind >> tag;) {
    int64_t step;
    double value, wall_time;
    lines >> step >> value >> wall_time;
    std::ostringstream line;
    line.precision(17);
    line << tag << " " << step << " " << value << " " << wall_time;
    got.insert(line.str());
  }
  EXPECT_EQ(got, expected) << "TensorBoard read:\n" << data::read_file_text(out);
}

// TensorBoard's own multiplexer over a run's tensorboard/ folder: two runs, train and validation, whose
// loss and accuracy share their tags (one chart each, both curves in it), with summary.csv's numbers.
TEST(TensorBoard, TensorBoardOverlaysTrainAndValidation) {
  std::string reason;
  const std::string quoted = tensorboard_python(reason);
  if (quoted.empty()) GTEST_SKIP() << reason;
  const std::string dir = temp_dir("overlay");
  const std::vector<EpochRow> rows = rising_rows(3);
  fs::create_directories(dir + "/run");
  write_run_curves(dir + "/run", rows, "t", 1700000000);
  std::ofstream(dir + "/read.py") << R"(import sys
from tensorboard.backend.event_processing import event_multiplexer
mux = event_multiplexer.EventMultiplexer(size_guidance={"scalars": 0})
mux.AddRunsFromDirectory(sys.argv[1])
mux.Reload()
for run, tags in sorted(mux.Runs().items()):
    for tag in sorted(tags["scalars"]):
        for s in mux.Scalars(run, tag):
            print(run, tag, s.step, repr(s.value))
)";
  const std::string out = dir + "/out.txt", err = dir + "/err.txt";
  const std::string command =
      quoted + " '" + dir + "/read.py' '" + dir + "/run/tensorboard' >'" + out + "' 2>'" + err + "'";
  ASSERT_EQ(std::system(command.c_str()), 0) << "TensorBoard's multiplexer failed:\n" << data::read_file_text(err);
  std::set<std::string> got, expected;
  std::istringstream lines(data::read_file_text(out));
  for (std::string run, tag; lines >> run >> tag;) {
    int64_t step;
    double value;
    lines >> step >> value;
    std::ostringstream line;
    line.precision(9);
    line << run << " " << tag << " " << step << " " << value;
    got.insert(line.str());
  }
  const std::vector<EpochRow> recorded = parse_summary_csv(summary_csv(rows), "summary.csv");
  for (const EpochRow& r : recorded) {
    const std::pair<const char*, std::vector<std::pair<const char*, double>>> runs[] = {
        {"train", {{"loss", r.train_loss}, {"accuracy", r.train_acc}, {"time/epoch_seconds", r.seconds},
                   {"time/images_per_s", r.images_per_s}, {"lr", r.lr}}},
        {"validation", {{"loss", r.val_loss}, {"accuracy", r.val_acc}}}};
    for (const auto& [run, values] : runs)
      for (const auto& [tag, value] : values) {
        std::ostringstream line;
        line.precision(9);
        line << run << " " << tag << " " << r.epoch << " " << static_cast<double>(static_cast<float>(value));
        expected.insert(line.str());
      }
  }
  EXPECT_EQ(got, expected) << "TensorBoard read:\n" << data::read_file_text(out);
}

}  // namespace

namespace {
// ENGINE_CHART_SAMPLES=<folder>: the charts of this file written there to be looked at (not a test).
TEST(ChartSamples, WrittenWhenAsked) {
  const char* folder = std::getenv("ENGINE_CHART_SAMPLES");
  if (!folder || !*folder) GTEST_SKIP() << "set ENGINE_CHART_SAMPLES=<folder> to write sample charts";
  fs::create_directories(folder);
  std::vector<EpochRow> zigzag = rising_rows(20);
  for (size_t i = 0; i < zigzag.size(); ++i) zigzag[i].train_acc = i % 2 ? 1.0 : 0.0;
  write_run_curves(folder, rising_rows(10), "densenet201 training curves", 1700000000);
  data::write_png_file(std::string(folder) + "/zigzag.png",
                       png_chart_grid(curves_charts(zigzag), "zigzag", kCurvesColumns, kPanelW, kPanelH), false);
  const std::vector<Chart> odd = {
      {"some non-finite", "x", {{"a", {1, 2, 3, NAN, 5}, {1, NAN, 3, 4, 5}}, {"b", {1, 5}, {5, 1}}}},
      {"log x", "images", {{"densenet", {100, 3000, 10000}, {0.6, 0.7, 0.8}}, {"resnet", {100, 3000, 10000}, {0.65, 0.72, 0.79}}}, true},
      {"one epoch", "epoch", {{"train", {1}, {0.5}}}}};
  data::write_png_file(std::string(folder) + "/odd.png", png_chart_grid(odd, "odd", 3, kPanelW, kPanelH), false);
}
}  // namespace
