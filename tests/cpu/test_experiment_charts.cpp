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

constexpr int kPanelW = 320, kPanelH = 220, kHead = 28;

// The plot area of panel `i` of a one-row grid, widened by `margin` pixels (the dots' radius reaches past
// the frame at the first and last x).
struct Box {
  int x0, y0, x1, y1;
  bool contains(int x, int y) const { return x >= x0 && x <= x1 && y >= y0 && y <= y1; }
};
Box plot_area(int i, int margin) {
  const int left = i * kPanelW + static_cast<int>(ChartFrame::kLeft), top = kHead + static_cast<int>(ChartFrame::kTop);
  const int right = (i + 1) * kPanelW - static_cast<int>(ChartFrame::kRight);
  const int bottom = kHead + kPanelH - static_cast<int>(ChartFrame::kBottom);
  return {left - margin, top - margin, right + margin, bottom + margin};
}

TEST(ChartPng, CurvesHaveTheGridSizeAndSeriesStayInTheirPlots) {
  const Decoded d = decode(png_chart_grid(curves_charts(rising_rows(10)), "densenet201 training curves", 5));
  ASSERT_EQ(d.image.width, 5 * kPanelW);
  ASSERT_EQ(d.image.height, kHead + kPanelH);
  const Rgb blue = series_rgb(0);
  for (int i = 0; i < 5; ++i) {
    const Box inside = plot_area(i, 0);
    int exact = 0;
    for (int y = inside.y0; y <= inside.y1; ++y)
      for (int x = inside.x0; x <= inside.x1; ++x) exact += d.is(x, y, blue);
    EXPECT_GT(exact, 60) << "panel " << i << " has too few pixels of the series colour";
  }
  // No series colour anywhere outside the five plot areas (plus the dots' reach).
  int outside = 0;
  for (int y = 0; y < d.image.height; ++y)
    for (int x = 0; x < d.image.width; ++x) {
      bool in_a_plot = false;
      for (int i = 0; i < 5; ++i) in_a_plot = in_a_plot || plot_area(i, 4).contains(x, y);
      outside += !in_a_plot && d.tinted(x, y);
    }
  EXPECT_EQ(outside, 0);
}

// The mean row of the series' pixels in each of `buckets` column bands of panel i's plot.
std::vector<double> mean_rows(const Decoded& d, int i, int buckets) {
  const Box box = plot_area(i, 0);
  std::vector<double> sum(static_cast<size_t>(buckets), 0), count(static_cast<size_t>(buckets), 0);
  for (int y = box.y0 + 1; y < box.y1; ++y)
    for (int x = box.x0 + 1; x < box.x1; ++x)
      if (d.tinted(x, y)) {
        const size_t b = static_cast<size_t>((x - box.x0 - 1) * buckets / (box.x1 - box.x0 - 1));
        sum[b] += y;
        count[b] += 1;
      }
  for (size_t b = 0; b < sum.size(); ++b) {
    EXPECT_GT(count[b], 0) << "panel " << i << " band " << b << " has no series pixels";
    sum[b] /= std::max(1.0, count[b]);
  }
  return sum;
}

TEST(ChartPng, ARisingSeriesRisesAndAFallingOneFalls) {
  const Decoded d = decode(png_chart_grid(curves_charts(rising_rows(10)), "curves", 5));
  const std::vector<double> accuracy = mean_rows(d, 2, 8), loss = mean_rows(d, 0, 8);
  for (size_t b = 1; b < accuracy.size(); ++b) {
    EXPECT_LT(accuracy[b], accuracy[b - 1]) << "train accuracy rises: its pixels must climb (smaller rows), band " << b;
    EXPECT_GT(loss[b], loss[b - 1]) << "train loss falls: its pixels must descend, band " << b;
  }
  // Rows go from near the bottom of the plot to near its top (5% padding each side).
  EXPECT_GT(accuracy.front(), plot_area(2, 0).y1 - 40);
  EXPECT_LT(accuracy.back(), plot_area(2, 0).y0 + 40);
}

TEST(ChartPng, TitlesTicksAndLabelsAreDrawn) {
  const Decoded d = decode(png_chart_grid(curves_charts(rising_rows(4)), "densenet201 training curves", 5));
  auto dark_in = [&](int x0, int y0, int x1, int y1) {
    int n = 0;
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) n += d.dark(x, y);
    return n;
  };
  EXPECT_GT(dark_in(0, 0, 600, kHead - 1), 200) << "the grid's title";
  EXPECT_EQ(dark_in(700, 0, 5 * kPanelW - 1, kHead - 1), 0) << "the title is short and left-aligned";
  for (int i = 0; i < 5; ++i) {
    const int x0 = i * kPanelW;
    EXPECT_GT(dark_in(x0, kHead, x0 + kPanelW - 1, kHead + 18), 20) << "panel " << i << " title";
    EXPECT_GT(dark_in(x0, kHead + 20, x0 + 44, kHead + 190), 50) << "panel " << i << " y tick labels";
    EXPECT_GT(dark_in(x0 + 40, kHead + 186, x0 + kPanelW - 1, kHead + 198), 30) << "panel " << i << " x tick labels";
    EXPECT_GT(dark_in(x0 + 140, kHead + 205, x0 + 230, kHead + 219), 10) << "panel " << i << " axis label";
    // The frame: #888 along the plot's left edge.
    const Box box = plot_area(i, 0);
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
  const Decoded d = decode(png_chart_grid(charts, "odd data", 4));
  ASSERT_EQ(d.image.width, 4 * kPanelW);
  for (int i = 0; i < 2; ++i) {
    // "no data" in the middle, no frame, no series.
    int dark = 0, frame = 0, tinted = 0;
    for (int y = kHead; y < kHead + kPanelH; ++y)
      for (int x = i * kPanelW; x < (i + 1) * kPanelW; ++x) {
        const bool middle = std::abs(y - (kHead + kPanelH / 2)) <= 8 && std::abs(x - (i * kPanelW + kPanelW / 2)) <= 30;
        dark += middle && d.dark(x, y);
        frame += d.is(x, y, kFrameRgb);
        tinted += d.tinted(x, y);
      }
    EXPECT_GT(dark, 20) << "panel " << i << " says no data";
    EXPECT_EQ(frame, 0) << "panel " << i;
    EXPECT_EQ(tinted, 0) << "panel " << i;
  }
  // Both series of panel 2 are drawn, with a legend (their colours left of the plot's middle, at the top).
  for (size_t k = 0; k < 2; ++k) {
    int legend = 0, anywhere = 0;
    const Box box = plot_area(2, 0);
    for (int y = box.y0; y <= box.y1; ++y)
      for (int x = box.x0; x <= box.x1; ++x) {
        anywhere += d.is(x, y, series_rgb(k));
        legend += d.is(x, y, series_rgb(k)) && x <= box.x0 + 22 && y <= box.y0 + 12 + 12 * static_cast<int>(k);
      }
    EXPECT_GT(anywhere, 30) << "series " << k;
    EXPECT_GT(legend, 5) << "legend of series " << k;
  }
  // Skipped points draw nothing anywhere: no series colour outside the plot areas.
  int outside = 0;
  for (int y = 0; y < d.image.height; ++y)
    for (int x = 0; x < d.image.width; ++x)
      outside += d.tinted(x, y) && !plot_area(x / kPanelW, 4).contains(x, y);
  EXPECT_EQ(outside, 0);
  // Log x: x <= 0 skipped; 100, 3000, 10000 at log10 positions 2, 3.48, 4 of [2, 4].
  const Box box = plot_area(3, 0);
  const double x3000 = box.x0 + (std::log10(3000.0) - 2) / 2 * (box.x1 - box.x0);
  int near = 0;
  for (int y = box.y0; y <= box.y1; ++y)
    for (int x = static_cast<int>(x3000) - 1; x <= static_cast<int>(x3000) + 2; ++x) near += d.is(x, y, series_rgb(0));
  EXPECT_GT(near, 3) << "the dot at x = 3000 on the log axis";
}

TEST(ChartPng, ExtremeValuesDoNotCrash) {
  const std::vector<Chart> charts = {{"huge", "x", {{"", {-1e308, 1e308}, {-1e308, 1e308}}}},
                                     {"tiny", "x", {{"", {0, 1e-300}, {1e-300, 2e-300}}}, true}};
  const data::PngImage png = png_chart_grid(charts, std::string("odd \x01\xff text"), 2);
  EXPECT_EQ(png.width, 2 * kPanelW);
  EXPECT_EQ(png.samples.size(), static_cast<size_t>(png.width) * static_cast<size_t>(png.height) * 3);
}

TEST(ChartPng, EveryGlyphIsDistinct) {
  // 95 one-character titles, one per panel: the title bands must all differ (and only space is blank).
  std::vector<Chart> charts;
  for (char c = 32; c <= 126; ++c) charts.push_back({std::string(1, c), "", {}});
  const int w = 80, h = 80, columns = 10;
  const data::PngImage png = png_chart_grid(charts, "", columns, w, h);
  std::set<std::vector<uint16_t>> bands;
  for (size_t i = 0; i < charts.size(); ++i) {
    std::vector<uint16_t> band;
    const int x0 = static_cast<int>(i % columns) * w, y0 = kHead + static_cast<int>(i / columns) * h;
    for (int y = y0; y < y0 + 18; ++y)
      for (int x = x0; x < x0 + w; ++x) band.push_back(png.samples[(static_cast<size_t>(y) * png.width + x) * 3]);
    const bool blank = std::all_of(band.begin(), band.end(), [](uint16_t v) { return v == 255; });
    EXPECT_EQ(blank, i == 0) << "glyph " << static_cast<int>(32 + i);
    bands.insert(band);
  }
  EXPECT_EQ(bands.size(), charts.size());
  EXPECT_EQ(png_text_width("abc"), 17);
  EXPECT_EQ(png_text_width("abc", 2), 34);
}

TEST(ChartPng, TooSmallPanelsAndTooLargeImagesAreRefused) {
  EXPECT_THROW(png_chart_grid({}, "t", 1, 40, 40), engine::Error);
  EXPECT_THROW(png_chart_grid(std::vector<Chart>(100), "too tall", 1), engine::Error);
  const data::PngImage none = png_chart_grid({}, "nothing", 5);
  EXPECT_EQ(none.width, kPanelW);  // no charts: one empty column
  EXPECT_EQ(none.height, kHead + kPanelH);
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

TEST(TensorBoard, EpochRowsBecomeTheSevenScalars) {
  const std::vector<EpochRow> rows = rising_rows(3);
  const std::vector<ScalarEvent> events = epoch_scalar_events(rows);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[2].step, 3);
  EXPECT_DOUBLE_EQ(events[2].seconds, rows[0].seconds + rows[1].seconds + rows[2].seconds);
  std::vector<std::string> tags;
  for (const auto& [tag, value] : events[1].values) tags.push_back(tag);
  EXPECT_EQ(tags, (std::vector<std::string>{"train/loss", "train/accuracy", "val/loss", "val/accuracy",
                                             "time/epoch_seconds", "time/images_per_s", "lr"}));
  EXPECT_EQ(events[1].values[2].second, static_cast<float>(rows[1].val_loss));
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
TEST(TensorBoard, TensorBoardReadsTheScalars) {
  const char* python = std::getenv("ENGINE_PYTHON");
  if (!python || !*python) GTEST_SKIP() << "set ENGINE_PYTHON to a python with tensorboard; scripts/test.sh does";
  const std::string dir = temp_dir("tensorboard");
  const std::string quoted = "'" + std::string(python) + "'";
  if (std::system((quoted + " -c 'import tensorboard' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << "ENGINE_PYTHON (" << python << ") cannot import tensorboard; set ENGINE_PYTHON to a python with "
                 << "tensorboard; scripts/test.sh does";
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

}  // namespace
