// Tests of image decoding, resizing, normalisation, augmentation and rendering (data/image.h) and of
// the PNG/JPEG writer (data/image_write.h): every pixel format from files written by PIL (an
// independent encoder) and by our writer, corrupt/truncated/non-image files rejected with the file's
// name, limits, hand-computed resize and normalisation values, seeded augmentation, and the fuzzer's
// regressions.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "data/crc.h"
#include "data/image.h"
#include "data/image_write.h"
#include "data/io_util.h"
#include "engine/check.h"
#include "support/temp_path.h"
#include "support/error_of.h"

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

// Files written by PIL 9.4 (Image.save), as bytes: independent of our encoder.
const std::vector<uint8_t> kPilGray = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00,
    0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, 0x00, 0x00, 0x00, 0xb8, 0x1f, 0x39, 0xc6, 0x00,
    0x00, 0x00, 0x10, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x64, 0x30, 0x32, 0x62, 0x98, 0x76, 0xe2,
    0x3f, 0x00, 0x06, 0x87, 0x02, 0xc3, 0xed, 0xb4, 0x13, 0xac, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82};

const std::vector<uint8_t> kPilRgb = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00,
    0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x7b, 0x40, 0xe8, 0xdd, 0x00,
    0x00, 0x00, 0x0f, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xc0, 0x25, 0x22, 0x07,
    0x00, 0x06, 0x65, 0x01, 0x3c, 0x92, 0x2c, 0xf5, 0xeb, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44,
    0xae, 0x42, 0x60, 0x82};

const std::vector<uint8_t> kPilPalette = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00,
    0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x02, 0x03, 0x00, 0x00, 0x00, 0x0f, 0xd8, 0xe5, 0xb7, 0x00,
    0x00, 0x00, 0x09, 0x50, 0x4c, 0x54, 0x45, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x0a, 0xc8, 0x1e, 0x87,
    0x7d, 0x66, 0x82, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x10, 0x60, 0x98,
    0x00, 0x00, 0x00, 0xc4, 0x00, 0xa1, 0x16, 0x5c, 0xba, 0x96, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82};

const std::vector<uint8_t> kPilGray16 = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00,
    0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x10, 0x00, 0x00, 0x00, 0x00, 0x6e, 0x1b, 0x97, 0x2b, 0x00,
    0x00, 0x00, 0x0f, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x60, 0x60, 0x7e, 0xf1, 0xff, 0x3f,
    0x00, 0x05, 0xc8, 0x02, 0xea, 0x94, 0x66, 0x84, 0x05, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44,
    0xae, 0x42, 0x60, 0x82};

const std::vector<uint8_t> kPilGrayAlpha = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00,
    0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x08, 0x04, 0x00, 0x00, 0x00, 0x5e, 0x2b, 0xb7, 0x01, 0x00,
    0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x48, 0xf9, 0x7f, 0x82, 0x01, 0x00, 0x06,
    0x22, 0x02, 0x2c, 0x0a, 0x32, 0x84, 0x53, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42,
    0x60, 0x82};

const std::vector<uint8_t> kPilRgba = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00,
    0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00,
    0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x64, 0x62, 0x66, 0x01, 0x00, 0x00,
    0x19, 0x00, 0x0b, 0xe7, 0x5a, 0x46, 0xa4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42,
    0x60, 0x82};

const std::vector<uint8_t> kPilJpeg = {
    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x02, 0x01, 0x01, 0x01, 0x01, 0x01, 0x02, 0x01, 0x01,
    0x01, 0x02, 0x02, 0x02, 0x02, 0x02, 0x04, 0x03, 0x02, 0x02, 0x02, 0x02, 0x05, 0x04, 0x04, 0x03, 0x04,
    0x06, 0x05, 0x06, 0x06, 0x06, 0x05, 0x06, 0x06, 0x06, 0x07, 0x09, 0x08, 0x06, 0x07, 0x09, 0x07, 0x06,
    0x06, 0x08, 0x0b, 0x08, 0x09, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x06, 0x08, 0x0b, 0x0c, 0x0b, 0x0a, 0x0c,
    0x09, 0x0a, 0x0a, 0x0a, 0xff, 0xc0, 0x00, 0x0b, 0x08, 0x00, 0x08, 0x00, 0x10, 0x01, 0x01, 0x11, 0x00,
    0xff, 0xc4, 0x00, 0x1f, 0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0xff,
    0xc4, 0x00, 0xb5, 0x10, 0x00, 0x02, 0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00,
    0x00, 0x01, 0x7d, 0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51,
    0x61, 0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1,
    0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a,
    0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73,
    0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93,
    0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2,
    0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca,
    0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8,
    0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xff, 0xda, 0x00, 0x08, 0x01,
    0x01, 0x00, 0x00, 0x3f, 0x00, 0x28, 0xaf, 0xff, 0xd9};

data::Image decode(const std::vector<uint8_t>& bytes, const std::string& name = "test.png",
                   const data::DecodeLimits& limits = {}) {
  return data::decode_image(bytes.data(), bytes.size(), name, limits);
}

std::vector<float> values(const data::Image& image) { return image.pixels; }

// The message of the engine::Error that `f` throws ("" when it does not throw).
using test_support::error_of;

data::PngImage png(int w, int h, data::PngColor color, std::vector<uint16_t> samples, int depth = 8) {
  data::PngImage p;
  p.width = w;
  p.height = h;
  p.color = color;
  p.bit_depth = depth;
  p.samples = std::move(samples);
  return p;
}

class TempDir : public test_support::TempDirTest {};

// ---------------------------------------------------------------------------------------------------
// Decoding files from an independent encoder

// The PNG chunks' CRC-32: the standard check value, and continuation over pieces equals one pass.
TEST(Crc, Crc32CheckValueAndContinuation) {
  EXPECT_EQ(data::crc32("123456789", 9), 0xCBF43926u);
  EXPECT_EQ(data::crc32("", 0), 0u);
  EXPECT_EQ(data::crc32("6789", 4, data::crc32("12345", 5)), 0xCBF43926u);
  EXPECT_EQ(data::crc32c("6789", 4, data::crc32c("12345", 5)), 0xE3069283u);
}

TEST(DecodePil, GrayKeepsOneChannel) {
  const data::Image im = decode(kPilGray);
  EXPECT_EQ(im.width, 3);
  EXPECT_EQ(im.height, 2);
  EXPECT_EQ(im.channels, 1);
  EXPECT_EQ(values(im), (std::vector<float>{0, 50, 100, 150, 200, 255}));
  const data::Image rgb = data::to_three_channels(im);
  EXPECT_EQ(rgb.channels, 3);
  EXPECT_EQ(rgb.pixels[3 * 4 + 0], 200);
  EXPECT_EQ(rgb.pixels[3 * 4 + 1], 200);
  EXPECT_EQ(rgb.pixels[3 * 4 + 2], 200);
}

TEST(DecodePil, Rgb) {
  const data::Image im = decode(kPilRgb);
  EXPECT_EQ(im.channels, 3);
  EXPECT_EQ(values(im), (std::vector<float>{255, 0, 0, 10, 20, 30}));
}

TEST(DecodePil, PaletteIsExpanded) {
  const data::Image im = decode(kPilPalette);
  ASSERT_EQ(im.channels, 3);
  EXPECT_EQ(values(im), (std::vector<float>{0, 0, 0, 255, 255, 255, 10, 200, 30, 255, 255, 255}));
}

TEST(DecodePil, SixteenBitScaledBy257) {
  const data::Image im = decode(kPilGray16);
  ASSERT_EQ(im.channels, 1);
  ASSERT_EQ(im.pixels.size(), 3u);
  EXPECT_FLOAT_EQ(im.pixels[0], 0.0f);
  EXPECT_FLOAT_EQ(im.pixels[1], 1000.0f / 257.0f);
  EXPECT_FLOAT_EQ(im.pixels[2], 255.0f);
}

TEST(DecodePil, AlphaIsDropped) {
  const data::Image la = decode(kPilGrayAlpha);
  EXPECT_EQ(la.channels, 1);
  EXPECT_EQ(values(la), (std::vector<float>{100, 200}));
  const data::Image rgba = decode(kPilRgba);
  EXPECT_EQ(rgba.channels, 3);
  EXPECT_EQ(values(rgba), (std::vector<float>{1, 2, 3}));
}

TEST(DecodePil, Jpeg) {
  const data::Image im = decode(kPilJpeg, "flat.jpg");
  EXPECT_EQ(im.width, 16);
  EXPECT_EQ(im.height, 8);
  EXPECT_EQ(im.channels, 1);
  for (float v : im.pixels) EXPECT_NEAR(v, 128.0f, 1.0f);
  const engine::Tensor t = data::image_to_tensor(im);
  EXPECT_EQ(t.shape(), (engine::Shape{8, 16, 3}));
}

// ---------------------------------------------------------------------------------------------------
// Our writer, every colour type and depth, through the decoder

struct FormatCase {
  const char* name;
  data::PngColor color;
  int depth;
  std::vector<uint16_t> samples;  // 2 pixels
  int expected_channels;
  std::vector<float> expected;
};
void PrintTo(const FormatCase& c, std::ostream* os) { *os << c.name; }

class WriterFormats : public ::testing::TestWithParam<FormatCase> {};

TEST_P(WriterFormats, DecodesToExpectedValues) {
  const FormatCase& c = GetParam();
  const data::Image im = decode(data::encode_png(png(2, 1, c.color, c.samples, c.depth)));
  EXPECT_EQ(im.channels, c.expected_channels);
  ASSERT_EQ(im.pixels.size(), c.expected.size());
  for (size_t i = 0; i < c.expected.size(); ++i) EXPECT_FLOAT_EQ(im.pixels[i], c.expected[i]) << i;
  // Three channels in any case.
  EXPECT_EQ(data::to_three_channels(im).pixels.size(), 6u);
}

INSTANTIATE_TEST_SUITE_P(
    AllPngKinds, WriterFormats,
    ::testing::Values(
        FormatCase{"gray8", data::PngColor::gray, 8, {7, 250}, 1, {7, 250}},
        FormatCase{"gray16", data::PngColor::gray, 16, {257 * 7, 65535}, 1, {7, 255}},
        FormatCase{"gray_alpha8", data::PngColor::gray_alpha, 8, {9, 0, 90, 255}, 1, {9, 90}},
        FormatCase{"gray_alpha16", data::PngColor::gray_alpha, 16, {257 * 9, 0, 257 * 90, 65535}, 1, {9, 90}},
        FormatCase{"rgb8", data::PngColor::rgb, 8, {1, 2, 3, 4, 5, 6}, 3, {1, 2, 3, 4, 5, 6}},
        FormatCase{"rgb8_gray", data::PngColor::rgb, 8, {5, 5, 5, 9, 9, 9}, 1, {5, 9}},
        FormatCase{"rgb16", data::PngColor::rgb, 16, {257, 514, 771, 0, 0, 65535}, 3, {1, 2, 3, 0, 0, 255}},
        FormatCase{"rgba8", data::PngColor::rgba, 8, {1, 2, 3, 0, 4, 5, 6, 255}, 3, {1, 2, 3, 4, 5, 6}},
        FormatCase{"rgba16", data::PngColor::rgba, 16, {257, 257, 257, 0, 514, 514, 514, 9}, 1, {1, 2}}));

TEST(Writer, PaletteWithTransparency) {
  data::PngImage p = png(3, 1, data::PngColor::palette, {2, 0, 1});
  p.palette = {{{10, 20, 30}}, {{40, 50, 60}}, {{70, 80, 90}}};
  p.palette_alpha = {255, 0, 128};
  const data::Image im = decode(data::encode_png(p));
  ASSERT_EQ(im.channels, 3);
  EXPECT_EQ(values(im), (std::vector<float>{70, 80, 90, 10, 20, 30, 40, 50, 60}));
}

TEST(Writer, LargerImageRoundTripsExactly) {
  // Every filter type gets chosen somewhere in a gradient + noise image; the values survive exactly.
  const int w = 97, h = 61;
  std::vector<uint16_t> samples(w * h);
  uint32_t state = 12345;
  for (int i = 0; i < w * h; ++i) {
    state = state * 1664525u + 1013904223u;
    samples[i] = static_cast<uint16_t>(((i % w) * 2 + (i / w) + (state >> 28)) & 0xFF);
  }
  const data::Image im = decode(data::encode_png(png(w, h, data::PngColor::gray, samples)));
  ASSERT_EQ(im.pixels.size(), samples.size());
  for (size_t i = 0; i < samples.size(); ++i) ASSERT_EQ(im.pixels[i], samples[i]) << i;
}

TEST(Writer, JpegRoundTripIsClose) {
  std::vector<uint8_t> rgb(16 * 16 * 3);
  for (size_t i = 0; i < rgb.size(); i += 3) rgb[i] = 200, rgb[i + 1] = 100, rgb[i + 2] = 50;
  const data::Image im = decode(data::encode_jpeg(rgb.data(), 16, 16, 3, 95), "x.jpg");
  ASSERT_EQ(im.channels, 3);
  for (size_t i = 0; i < im.pixels.size(); i += 3) {
    EXPECT_NEAR(im.pixels[i], 200, 4);
    EXPECT_NEAR(im.pixels[i + 1], 100, 4);
    EXPECT_NEAR(im.pixels[i + 2], 50, 4);
  }
}

TEST(Writer, RejectsInconsistentImages) {
  EXPECT_THROW(data::encode_png(png(2, 2, data::PngColor::gray, {1, 2, 3})), engine::Error);
  EXPECT_THROW(data::encode_png(png(1, 1, data::PngColor::gray, {300})), engine::Error);
  EXPECT_THROW(data::encode_png(png(1, 1, data::PngColor::palette, {0}, 16)), engine::Error);
}

// ---------------------------------------------------------------------------------------------------
// Bad files: every error names the file

TEST(DecodeErrors, NonImagesNameTheFile) {
  const std::string text = "path,label\n";
  EXPECT_THAT(error_of([&] { decode(std::vector<uint8_t>(text.begin(), text.end()), "/data/list.png"); }),
              HasSubstr("/data/list.png: not a PNG or JPEG file"));
  EXPECT_THAT(error_of([&] { decode({}, "empty.png"); }), HasSubstr("empty.png: not a PNG or JPEG file (empty)"));
  // A macOS AppleDouble sidecar.
  std::vector<uint8_t> sidecar = {0x00, 0x05, 0x16, 0x07, 0x00, 0x02, 0x00, 0x00};
  sidecar.resize(4096, 0);
  EXPECT_THAT(error_of([&] { decode(sidecar, "._image1.png"); }), HasSubstr("._image1.png: not a PNG or JPEG"));
  // Other formats are refused even though stb could read some.
  const std::vector<uint8_t> bmp = {'B', 'M', 0x3a, 0, 0, 0, 0, 0, 0, 0, 0x36, 0, 0, 0};
  EXPECT_THAT(error_of([&] { decode(bmp, "x.bmp"); }), HasSubstr("only PNG and JPEG"));
  const std::vector<uint8_t> gif = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0};
  EXPECT_THAT(error_of([&] { decode(gif, "x.gif"); }), HasSubstr("x.gif: not a PNG or JPEG"));
}

TEST(DecodeErrors, TruncatedPngAtEveryLengthFailsOrDecodesExactly) {
  std::vector<uint16_t> samples(40 * 30);
  for (size_t i = 0; i < samples.size(); ++i) samples[i] = static_cast<uint16_t>((i * 37) % 251);
  const std::vector<uint8_t> full = data::encode_png(png(40, 30, data::PngColor::gray, samples));
  const data::Image reference = decode(full);
  int failures = 0;
  for (size_t len = 0; len < full.size(); ++len) {
    const std::vector<uint8_t> cut(full.begin(), full.begin() + len);
    const std::string message = error_of([&] {
      const data::Image im = decode(cut, "cut.png");
      // Only a cut inside the final IEND chunk may still decode, and then to the same pixels.
      EXPECT_GE(len, full.size() - 12) << "a PNG cut to " << len << " bytes decoded";
      EXPECT_EQ(im.pixels, reference.pixels);
    });
    if (!message.empty()) {
      ++failures;
      EXPECT_THAT(message, HasSubstr("cut.png: ")) << len;
    }
  }
  EXPECT_GE(failures, static_cast<int>(full.size()) - 12);
}

TEST(DecodeErrors, TruncatedJpegIsRejected) {
  std::vector<uint8_t> gray(32 * 32);
  for (size_t i = 0; i < gray.size(); ++i) gray[i] = static_cast<uint8_t>(i * 7);
  const std::vector<uint8_t> full = data::encode_jpeg(gray.data(), 32, 32, 1, 90);
  EXPECT_NO_THROW(decode(full, "ok.jpg"));
  for (size_t len : {full.size() - 2, full.size() - 40, full.size() / 2, size_t(200), size_t(3)}) {
    const std::vector<uint8_t> cut(full.begin(), full.begin() + len);
    EXPECT_THAT(error_of([&] { decode(cut, "cut.jpg"); }), HasSubstr("cut.jpg: ")) << len;
  }
  EXPECT_THAT(error_of([&] { decode(kPilJpeg.size() > 50 ? std::vector<uint8_t>(kPilJpeg.begin(), kPilJpeg.end() - 30) : kPilJpeg, "pil.jpg"); }),
              HasSubstr("truncated JPEG"));
}

TEST(DecodeErrors, CorruptHeaderAndData) {
  std::vector<uint8_t> bad_header = kPilGray;
  bad_header[12] = 'X';  // IHDR -> XHDR
  EXPECT_THAT(error_of([&] { decode(bad_header, "hdr.png"); }), HasSubstr("hdr.png: corrupt"));
  // Garbage where the compressed data should be.
  std::vector<uint16_t> samples(64 * 64, 100);
  std::vector<uint8_t> bytes = data::encode_png(png(64, 64, data::PngColor::gray, samples));
  for (size_t i = 45; i < bytes.size() - 20; ++i) bytes[i] = static_cast<uint8_t>(0xA5 ^ (i * 13));
  EXPECT_THAT(error_of([&] { decode(bytes, "garbage.png"); }), HasSubstr("garbage.png: "));
}

TEST(DecodeErrors, DimensionCaps) {
  const std::vector<uint8_t> bytes = data::encode_png(png(20, 10, data::PngColor::gray, std::vector<uint16_t>(200, 1)));
  data::DecodeLimits limits;
  limits.max_side = 16;
  EXPECT_THAT(error_of([&] { decode(bytes, "big.png", limits); }), HasSubstr("big.png: 20x10 PNG is over the limits"));
  limits = {};
  limits.max_pixels = 199;
  EXPECT_THAT(error_of([&] { decode(bytes, "big.png", limits); }), HasSubstr("over the limits"));
  limits = {};
  limits.max_file_bytes = 10;
  EXPECT_THAT(error_of([&] { decode(bytes, "big.png", limits); }), HasSubstr("over the image file limit"));
  // A header that claims 60000 x 60000 is refused before anything is allocated.
  std::vector<uint8_t> huge = kPilGray;
  huge[16] = 0, huge[17] = 0, huge[18] = 0xEA, huge[19] = 0x60;
  huge[20] = 0, huge[21] = 0, huge[22] = 0xEA, huge[23] = 0x60;
  EXPECT_THAT(error_of([&] { decode(huge, "huge.png"); }), HasSubstr("huge.png: 60000x60000 PNG is over the limits"));
}

// A PNG's first 33 bytes: the signature and an IHDR chunk (8-bit gray) with its CRC, built by hand.
std::vector<uint8_t> png_header_only(uint32_t width, uint32_t height) {
  std::vector<uint8_t> bytes = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  for (uint32_t v : {width, height})
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<uint8_t>(v >> shift));
  bytes.insert(bytes.end(), {8, 0, 0, 0, 0});  // depth 8, gray, deflate, filter 0, no interlace
  const uint32_t crc = data::crc32(bytes.data() + 12, 17);
  for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<uint8_t>(crc >> shift));
  return bytes;
}

// Regression: a 60000x60000 PNG was refused as a "corrupt or truncated PNG header" (stb's own size
// check spoke first); it is over the size limits and must say so, as a JPEG does.
TEST(DecodeErrors, HugePngIsOverTheLimitsNotCorrupt) {
  for (const auto& [w, h] : {std::pair<uint32_t, uint32_t>{60000, 60000}, {70000, 10}, {10, 0x7fffffff}, {9000, 9000}}) {
    const std::string message = error_of([&] { decode(png_header_only(w, h), "huge.png"); });
    EXPECT_THAT(message, HasSubstr("huge.png: " + std::to_string(w) + "x" + std::to_string(h) + " PNG is over the limits"));
    EXPECT_THAT(message, Not(HasSubstr("corrupt")));
  }
  // Within the limits, the header alone is a truncated PNG (no image data), as before.
  EXPECT_THAT(error_of([&] { decode(png_header_only(64, 64), "short.png"); }), HasSubstr("short.png: corrupt"));
}

// A path that names some other file (a split row "../../etc/passwd") must not leak its content.
TEST(DecodeErrors, NeverPrintsTheFilesBytes) {
  const std::string secret = "root:x:0:0:root:/root:/bin/bash\n";
  const std::string message = error_of([&] { decode(std::vector<uint8_t>(secret.begin(), secret.end()), "passwd"); });
  EXPECT_THAT(message, HasSubstr("passwd: not a PNG or JPEG file"));
  EXPECT_THAT(message, Not(HasSubstr("root")));
  EXPECT_THAT(message, Not(HasSubstr("72 6f 6f 74")));  // "root" in hex
}

TEST_F(TempDir, FilesNameThemselves) {
  const std::string missing = dir_ + "/nope.png";
  EXPECT_THAT(error_of([&] { data::decode_image_file(missing); }), HasSubstr(missing + ": cannot open"));
  EXPECT_THAT(error_of([&] { data::decode_image_file(dir_); }), HasSubstr(dir_ + ": not a regular file"));
  const std::string text = dir_ + "/notes.png";
  data::write_file_atomic(text, std::string("hello"));
  EXPECT_THAT(error_of([&] { data::decode_image_file(text); }), HasSubstr(text + ": not a PNG or JPEG"));
  const std::string good = dir_ + "/good.png";
  data::write_bytes_file(good, kPilGray);
  EXPECT_EQ(data::decode_image_file(good).pixels.size(), 6u);
}

TEST(Sniff, MagicBytes) {
  EXPECT_EQ(data::sniff_image_format(kPilGray.data(), kPilGray.size()), data::ImageFormat::png);
  EXPECT_EQ(data::sniff_image_format(kPilJpeg.data(), kPilJpeg.size()), data::ImageFormat::jpeg);
  EXPECT_EQ(data::sniff_image_format(kPilGray.data(), 7), data::ImageFormat::unknown);
  const uint8_t two[2] = {0xFF, 0xD8};
  EXPECT_EQ(data::sniff_image_format(two, 2), data::ImageFormat::unknown);
}

// ---------------------------------------------------------------------------------------------------
// Resizing and quantisation against hand values

data::Image row(std::vector<float> v) {
  data::Image im;
  im.height = 1;
  im.width = static_cast<int>(v.size());
  im.channels = 1;
  im.pixels = std::move(v);
  return im;
}

TEST(Resize, NearestLikePil) {
  // out 2 of in 4: sources floor((o + 0.5) * 2) = 1, 3.
  EXPECT_EQ(data::resize_image(row({10, 20, 30, 40}), 1, 2, data::ResizeMode::nearest).pixels,
            (std::vector<float>{20, 40}));
  // out 3 of in 2 (enlarging): floor((o + 0.5) * 2/3) = 0, 1, 1.
  EXPECT_EQ(data::resize_image(row({10, 20}), 1, 3, data::ResizeMode::nearest).pixels,
            (std::vector<float>{10, 20, 20}));
}

TEST(Resize, BilinearHalfPixelCentres) {
  // out 2 of in 4: centres 0.5, 2.5 -> means of neighbours.
  EXPECT_EQ(data::resize_image(row({0, 10, 20, 30}), 1, 2, data::ResizeMode::bilinear).pixels,
            (std::vector<float>{5, 25}));
  // out 4 of in 2: centres -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
  EXPECT_EQ(data::resize_image(row({0, 10}), 1, 4, data::ResizeMode::bilinear).pixels,
            (std::vector<float>{0, 2.5f, 7.5f, 10}));
}

TEST(Resize, AreaAveragesCoverage) {
  const std::vector<float> halves = data::resize_image(row({0, 10, 20, 30}), 1, 2, data::ResizeMode::area).pixels;
  EXPECT_FLOAT_EQ(halves[0], 5);
  EXPECT_FLOAT_EQ(halves[1], 25);
  // out 2 of in 3: [0, 1.5) = 1 * v0 + 0.5 * v1 over 1.5; [1.5, 3) = 0.5 * v1 + 1 * v2 over 1.5.
  const std::vector<float> thirds = data::resize_image(row({3, 6, 12}), 1, 2, data::ResizeMode::area).pixels;
  EXPECT_NEAR(thirds[0], (3 + 0.5 * 6) / 1.5, 1e-5);
  EXPECT_NEAR(thirds[1], (0.5 * 6 + 12) / 1.5, 1e-5);
  // Enlarging with area is bilinear.
  EXPECT_EQ(data::resize_image(row({0, 10}), 1, 4, data::ResizeMode::area).pixels,
            (std::vector<float>{0, 2.5f, 7.5f, 10}));
}

TEST(Resize, TwoDimensionsAndChannels) {
  // 2x2 RGB -> 1x1 area: the mean of each channel.
  data::Image im;
  im.height = im.width = 2;
  im.channels = 3;
  im.pixels = {0, 100, 200, 10, 110, 210, 20, 120, 220, 30, 130, 230};
  const data::Image out = data::resize_image(im, 1, 1, data::ResizeMode::area);
  EXPECT_EQ(out.pixels, (std::vector<float>{15, 115, 215}));
  // A constant image stays constant in every mode and shape.
  data::Image flat;
  flat.height = 37, flat.width = 53, flat.channels = 1;
  flat.pixels.assign(37 * 53, 77.0f);
  for (auto mode : {data::ResizeMode::nearest, data::ResizeMode::bilinear, data::ResizeMode::area})
    for (float v : data::resize_image(flat, 24, 24, mode).pixels) ASSERT_NEAR(v, 77.0f, 1e-3) << data::resize_mode_name(mode);
}

TEST(Quantize, RoundsAndClamps) {
  const data::ImageU8 q = data::quantize_u8(row({2.5f, 2.49f, -3, 300, 254.6f, 0.5f}));
  EXPECT_EQ(q.pixels, (std::vector<uint8_t>{3, 2, 0, 255, 255, 1}));
}

TEST(Modes, ParseAndErrors) {
  EXPECT_EQ(data::parse_resize_mode("nearest"), data::ResizeMode::nearest);
  EXPECT_EQ(data::parse_norm_mode("tf"), data::NormMode::tf);
  EXPECT_THAT(error_of([] { data::parse_resize_mode("cubic"); }), HasSubstr("use nearest, bilinear or area"));
  EXPECT_THAT(error_of([] { data::parse_norm_mode("caffe"); }), HasSubstr("study"));
}

// ---------------------------------------------------------------------------------------------------
// Normalisation, augmentation, rendering

std::vector<float> render(const data::ImageU8& im, data::AugmentParams params, data::NormMode mode) {
  std::vector<float> out(static_cast<size_t>(im.height) * im.width * 3, -99.0f);
  data::render_image({im.pixels.data(), im.height, im.width, im.channels}, params, data::Normalizer::make(mode), out.data());
  return out;
}

data::ImageU8 gray_u8(int h, int w, std::vector<uint8_t> v) {
  data::ImageU8 im;
  im.height = h, im.width = w, im.channels = 1;
  im.pixels = std::move(v);
  return im;
}

TEST(Normalize, HandValues) {
  const data::ImageU8 im = gray_u8(1, 3, {0, 124, 255});
  const std::vector<float> study = render(im, {}, data::NormMode::study);
  EXPECT_FLOAT_EQ(study[0], 0.0f);
  EXPECT_NEAR(study[3], 124.0 / 255.0, 1e-6);
  EXPECT_NEAR(study[8], 1.0, 1e-6);
  const std::vector<float> tf = render(im, {}, data::NormMode::tf);
  EXPECT_NEAR(tf[0], -1.0, 1e-6);
  EXPECT_NEAR(tf[4], 124.0 / 127.5 - 1.0, 1e-6);
  EXPECT_NEAR(tf[8], 1.0, 1e-6);
  const std::vector<float> torch = render(im, {}, data::NormMode::torch);
  const double mean[3] = {0.485, 0.456, 0.406}, stddev[3] = {0.229, 0.224, 0.225};
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(torch[c], (0.0 - mean[c]) / stddev[c], 1e-5);
    EXPECT_NEAR(torch[3 + c], (124.0 / 255.0 - mean[c]) / stddev[c], 1e-5);
    EXPECT_NEAR(torch[6 + c], (1.0 - mean[c]) / stddev[c], 1e-5);
  }
}

TEST(Render, ColorAndFlip) {
  data::ImageU8 rgb;
  rgb.height = 1, rgb.width = 2, rgb.channels = 3;
  rgb.pixels = {255, 0, 51, 0, 102, 255};
  using ::testing::FloatNear;
  using ::testing::Pointwise;
  EXPECT_THAT(render(rgb, {}, data::NormMode::study), Pointwise(FloatNear(1e-6f), std::vector<float>{1, 0, 0.2f, 0, 0.4f, 1}));
  data::AugmentParams flip;
  flip.flip = true;
  EXPECT_THAT(render(rgb, flip, data::NormMode::study), Pointwise(FloatNear(1e-6f), std::vector<float>{0, 0.4f, 1, 1, 0, 0.2f}));
  const std::vector<float> gray = render(gray_u8(1, 3, {0, 51, 255}), flip, data::NormMode::study);
  EXPECT_THAT(gray, Pointwise(FloatNear(1e-6f), std::vector<float>{1, 1, 1, 0.2f, 0.2f, 0.2f, 0, 0, 0}));
}

TEST(Render, RotationByNinetyDegreesMovesCorners) {
  // 3x3: counter-clockwise by 90 degrees (as displayed) brings the top-right pixel to the top-left.
  const data::ImageU8 im = gray_u8(3, 3, {10, 20, 30, 40, 50, 60, 70, 80, 90});
  data::AugmentParams rot;
  rot.angle_degrees = 90;
  const std::vector<float> out = render(im, rot, data::NormMode::study);
  const float expected[9] = {30, 60, 90, 20, 50, 80, 10, 40, 70};
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(out[3 * i] * 255.0f, expected[i], 0.05f) << i;
  // Flip, then rotate.
  rot.flip = true;
  const std::vector<float> flipped = render(im, rot, data::NormMode::study);
  const float expected_flipped[9] = {10, 40, 70, 20, 50, 80, 30, 60, 90};
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(flipped[3 * i] * 255.0f, expected_flipped[i], 0.05f) << i;
}

TEST(Render, RotationKeepsCentreAndFillsCornersWithZero) {
  std::vector<uint8_t> v(64 * 64, 200);
  const data::ImageU8 im = gray_u8(64, 64, v);
  data::AugmentParams rot;
  rot.angle_degrees = 30;
  const std::vector<float> out = render(im, rot, data::NormMode::study);
  EXPECT_NEAR(out[(32 * 64 + 32) * 3] * 255.0f, 200.0f, 0.01f);  // interior: the constant
  EXPECT_NEAR(out[0], 0.0f, 1e-6);                                // corners: outside the source
  EXPECT_NEAR(out[(64 * 64 - 1) * 3], 0.0f, 1e-6);
  for (float x : out) ASSERT_TRUE(x >= 0.0f && x <= 200.0f / 255.0f + 1e-5f);
}

TEST(Render, RotationOfGrayEqualsRotationOfItsRgb) {
  // The fixed-point interior, the checked border and both channel counts agree.
  const int h = 45, w = 31;
  data::ImageU8 gray = gray_u8(h, w, std::vector<uint8_t>(h * w));
  data::ImageU8 rgb;
  rgb.height = h, rgb.width = w, rgb.channels = 3;
  rgb.pixels.resize(h * w * 3);
  for (int i = 0; i < h * w; ++i) {
    gray.pixels[i] = static_cast<uint8_t>((i * 53) % 256);
    rgb.pixels[3 * i] = rgb.pixels[3 * i + 1] = rgb.pixels[3 * i + 2] = gray.pixels[i];
  }
  for (float angle : {-30.0f, -7.5f, 0.3f, 12.0f, 29.9f, 90.0f, 180.0f}) {
    for (bool flip : {false, true}) {
      data::AugmentParams p;
      p.angle_degrees = angle;
      p.flip = flip;
      EXPECT_EQ(render(gray, p, data::NormMode::torch), render(rgb, p, data::NormMode::torch)) << angle << " " << flip;
    }
  }
}

TEST(Augment, SeededPerImageAndEpoch) {
  data::AugmentOptions options;
  options.flip = true;
  options.max_rotation_degrees = 30;
  int flips = 0;
  float lo = 0, hi = 0;
  for (uint64_t item = 0; item < 2000; ++item) {
    const data::AugmentParams a = data::draw_augment(options, 7, 3, item);
    const data::AugmentParams b = data::draw_augment(options, 7, 3, item);
    ASSERT_EQ(a.flip, b.flip);
    ASSERT_EQ(a.angle_degrees, b.angle_degrees);
    flips += a.flip;
    lo = std::min(lo, a.angle_degrees);
    hi = std::max(hi, a.angle_degrees);
    ASSERT_LE(std::fabs(a.angle_degrees), 30.0f);
  }
  EXPECT_NEAR(flips, 1000, 120);
  EXPECT_LT(lo, -25.0f);
  EXPECT_GT(hi, 25.0f);
  // Another epoch, seed or item draws differently.
  const data::AugmentParams base = data::draw_augment(options, 7, 3, 5);
  EXPECT_NE(base.angle_degrees, data::draw_augment(options, 7, 4, 5).angle_degrees);
  EXPECT_NE(base.angle_degrees, data::draw_augment(options, 8, 3, 5).angle_degrees);
  EXPECT_NE(base.angle_degrees, data::draw_augment(options, 7, 3, 6).angle_degrees);
  // Off means identity.
  const data::AugmentParams none = data::draw_augment({}, 7, 3, 5);
  EXPECT_FALSE(none.flip);
  EXPECT_EQ(none.angle_degrees, 0.0f);
  options.flip = false;
  EXPECT_FALSE(data::draw_augment(options, 7, 3, 5).flip);
}

TEST_F(TempDir, LoadResizedMatchesTheSteps) {
  std::vector<uint16_t> samples(50 * 70);
  for (size_t i = 0; i < samples.size(); ++i) samples[i] = static_cast<uint16_t>((i * 11) % 256);
  const std::string path = dir_ + "/x.png";
  data::write_png_file(path, png(70, 50, data::PngColor::gray, samples));
  const data::ImageU8 loaded = data::load_resized_u8(path, 24, 24, data::ResizeMode::area);
  const data::ImageU8 manual =
      data::quantize_u8(data::resize_image(data::decode_image_file(path), 24, 24, data::ResizeMode::area));
  EXPECT_EQ(loaded.pixels, manual.pixels);
  EXPECT_EQ(loaded.channels, 1);
}

// ---------------------------------------------------------------------------------------------------
// Regressions found by the fuzzers (fuzz/, scripts/fuzz.sh)

// fuzz_decode_image: a progressive JPEG whose DHT segment declares more than 256 codes. stb_image 2.27
// writes past its 257-entry Huffman size table (UBSan: index 257 out of bounds for 'stbi_uc[257]');
// the wrapper now walks the marker segments and refuses the file before stb sees it.
const std::vector<uint8_t> kFuzzJpegHuffmanOverflow = {
  0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01,
  0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0xff, 0xdb, 0x00, 0x43,
  0x00, 0x0a, 0x07, 0x07, 0x08, 0x07, 0x06, 0x0a, 0x08, 0x08, 0x08, 0x0b,
  0x0a, 0x0a, 0x0b, 0x0e, 0x18, 0x10, 0x0e, 0x0d, 0x0d, 0x0e, 0x1d, 0x15,
  0x16, 0x11, 0x18, 0x23, 0x1f, 0x25, 0x24, 0x22, 0x1f, 0x22, 0x21, 0x26,
  0x2b, 0x37, 0x2f, 0x26, 0x29, 0x34, 0x29, 0x21, 0x22, 0x30, 0x41, 0x31,
  0x34, 0x39, 0x3b, 0x3e, 0x3e, 0x3e, 0x25, 0x2e, 0x44, 0x49, 0x43, 0x3c,
  0x48, 0x37, 0x3d, 0x3e, 0x3b, 0xff, 0xdb, 0x00, 0x43, 0x01, 0x0a, 0x0b,
  0x0b, 0x0e, 0x0d, 0x0e, 0x1c, 0x10, 0x10, 0x1c, 0x3b, 0x28, 0x22, 0x28,
  0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b,
  0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b,
  0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b,
  0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b,
  0x3b, 0x3b, 0xff, 0xc2, 0x00, 0x11, 0x08, 0x00, 0x0c, 0x00, 0x10, 0x03,
  0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xff, 0xc4, 0x00,
  0x16, 0x00, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x01, 0x05, 0xff, 0xc4, 0x00,
  0x15, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0xff, 0xda, 0x00, 0x0c,
  0x03, 0x01, 0x00, 0x02, 0x10, 0x03, 0x10, 0x00, 0x00, 0x01, 0xa5, 0x98,
  0xd7, 0x7f, 0xff, 0xc4, 0x00, 0x1b, 0x10, 0x00, 0x01, 0x04, 0x03, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x01, 0x02, 0x03, 0x12, 0x04, 0x14, 0x22, 0xff, 0xda, 0x00, 0x08, 0x01,
  0x01, 0x00, 0x01, 0x05, 0x02, 0xad, 0x5b, 0xc3, 0x95, 0x32, 0xa4, 0x36,
  0x65, 0x3f, 0xff, 0xc4, 0x00, 0x1b, 0x11, 0x00, 0x02, 0x01, 0x05, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0xff, 0xda,
  0x00, 0x0c, 0x03, 0x01, 0x00, 0x02, 0x10, 0x03, 0x10, 0x00, 0x00, 0x01,
  0xa5, 0x98, 0xd7, 0x7f, 0xff, 0xc4, 0x00, 0x1b, 0x10, 0x00, 0x01, 0x04,
  0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x01, 0x02, 0x03, 0x12, 0x04, 0x14, 0x22, 0xff, 0xda, 0x00,
  0x08, 0x01, 0x01, 0x00, 0x01, 0x05, 0x02, 0xad, 0x5b, 0xc3, 0x95, 0x32,
  0xa4, 0x36, 0x65, 0x3f, 0xff, 0xc4, 0x00, 0x1b, 0x11, 0x00, 0x02, 0x01,
  0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x01, 0x03, 0x00, 0x02, 0x12, 0x21, 0x81, 0xf1, 0xff, 0xda, 0x00,
  0x08, 0x01, 0x03, 0x01, 0x01, 0x3f, 0x01, 0xa9, 0x41, 0x62, 0xec, 0x6b,
  0xb3, 0xff, 0xc4, 0x00, 0x1a, 0x11, 0x02, 0x9d, 0x76, 0xd2, 0x21, 0x2b,
  0x8c, 0xfa, 0x6c, 0x1e, 0x1d, 0x3f, 0xff, 0xc4, 0x00, 0x1a, 0x10, 0x01,
  0x00, 0x02, 0x03, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x01, 0x00, 0x11, 0x10, 0x41, 0x71, 0xb1, 0xff, 0xda,
  0x00, 0x08, 0x01, 0x01, 0x00, 0x01, 0x3f, 0x21, 0x4b, 0x35, 0xad, 0x29,
  0x89, 0x58, 0xba, 0x78, 0xc7, 0x0d, 0xa9, 0xc2, 0x7f, 0xff, 0xda, 0x00,
  0x0c, 0x03, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x10, 0x3f,
  0xff, 0xc4, 0x00, 0x19, 0x11, 0x01, 0x00, 0x02, 0x03, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x11,
  0x71, 0xb1, 0xc1, 0xff, 0xda, 0x00, 0x08, 0x01, 0x03, 0x01, 0x01, 0x3f,
  0x10, 0xbc, 0x01, 0x83, 0xd5, 0xb9, 0xff, 0xc4, 0x00, 0x18, 0x11, 0x01,
  0x00, 0x03, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x01, 0x00, 0x11, 0x51, 0xb1, 0xff, 0xda, 0x00, 0x08,
  0x01, 0x02, 0x01, 0x01, 0x3f, 0x10, 0xac, 0x92, 0xea, 0x5c, 0x27, 0xff,
  0xc4, 0x00, 0x1c, 0x10, 0x01, 0x00, 0x03, 0x00, 0x02, 0x03, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x11, 0x21,
  0x91, 0xd1, 0x51, 0x61, 0x81, 0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00,
  0x01, 0x3f, 0x10, 0x28, 0x1d, 0x35, 0xad, 0xac, 0x0d, 0x61, 0x24, 0xc1,
  0x54, 0x57, 0x08, 0x3e, 0xcf, 0x2b, 0x83, 0xdc, 0x70, 0x4f, 0x47, 0xb2,
  0x7f, 0xff, 0xd9};

// The same stb overflow reached through stbi_info (header parsing builds the Huffman tables too), in a
// file that also lacks its end marker: the structure checks now run before stb parses anything.
const std::vector<uint8_t> kFuzzJpegHuffmanOverflowInHeader = {
  0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01,
  0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0xff, 0xdb, 0x00, 0x43,
  0x00, 0x0a, 0x07, 0x07, 0x08, 0x07, 0x06, 0x0a, 0x08, 0x08, 0x08, 0x0b,
  0x0a, 0x0a, 0x0b, 0x0e, 0x18, 0x10, 0x0e, 0x0d, 0x0d, 0x0e, 0x1d, 0x15,
  0x16, 0x11, 0x18, 0x23, 0x1f, 0x25, 0x24, 0x22, 0x1f, 0x22, 0x21, 0x26,
  0x2b, 0x37, 0x2f, 0x26, 0x29, 0x34, 0x29, 0x21, 0x22, 0x30, 0x41, 0x31,
  0x34, 0x39, 0x3b, 0x3e, 0x3e, 0x3e, 0x25, 0x2e, 0x44, 0x49, 0x43, 0x3c,
  0x48, 0x37, 0x3d, 0x3e, 0x3b, 0xff, 0xdb, 0x00, 0x43, 0x01, 0x0a, 0x0b,
  0x0b, 0x0e, 0x0d, 0x0e, 0x1c, 0x10, 0x10, 0x1c, 0x3b, 0x28, 0x22, 0x28,
  0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b,
  0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b,
  0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b,
  0x3b, 0x3b, 0x3b, 0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49,
  0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0xff,
  0xdb, 0x00, 0x43, 0x00, 0x0a, 0x07, 0x07, 0x08, 0x07, 0x06, 0x0a, 0x08,
  0x08, 0x08, 0x0b, 0x0a, 0x0a, 0x0b, 0x0e, 0x18, 0x10, 0x0e, 0x0d, 0x0d,
  0x0e, 0x1d, 0x15, 0x16, 0x11, 0x18, 0x23, 0x1f, 0x25, 0x24, 0x22, 0x1f,
  0x22, 0x21, 0x26, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b,
  0x3b, 0x3b, 0xff, 0xc2, 0x00, 0x11, 0x08, 0x00, 0x0c, 0x00, 0x10, 0x03,
  0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xff, 0xc4, 0x00,
  0x16, 0x00, 0x2b, 0x37, 0x2f, 0x26, 0x29, 0x34, 0x29, 0x21, 0x22, 0x30,
  0x41, 0x31, 0x34, 0x39, 0x3b, 0x3e, 0x3e, 0x3e, 0x25, 0x2e, 0x44, 0x49,
  0x43, 0x3c, 0x48, 0x37, 0x3d, 0x3e, 0x3b, 0xff, 0xdb, 0x00, 0x43, 0x01,
  0x0a, 0x0b, 0x0b, 0x0e, 0x0d, 0x0e, 0x1c, 0x10, 0x10, 0x1c, 0x3b, 0x28,
  0x22, 0x28, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b,
  0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b,
  0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x01, 0x01,
  0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x03, 0x01, 0x05, 0xff, 0xc4, 0x00, 0x15, 0x3b, 0x01, 0x01,
  0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b,
  0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0xff, 0xc2, 0x00, 0x00};

TEST(FuzzRegression, JpegHuffmanTableWithTooManyCodes) {
  EXPECT_THAT(error_of([] { decode(kFuzzJpegHuffmanOverflow, "fuzz.jpg"); }),
              HasSubstr("fuzz.jpg: corrupt JPEG (a Huffman table with"));
  EXPECT_THAT(error_of([] { decode(kFuzzJpegHuffmanOverflowInHeader, "fuzz2.jpg"); }),
              HasSubstr("fuzz2.jpg: truncated JPEG"));
}

// fuzz_decode_image: a progressive JPEG whose scan names a Huffman table no DHT segment defined.
// stb_image 2.27 then decodes with the uninitialised table of its malloc'd decoder struct (UBSan:
// index -24446 out of bounds for 'stbi_uc[256]'). The wrapper refuses such scans, and stb's
// allocations are zeroed (calloc) in case another path reads what was never written.
const std::vector<uint8_t> kFuzzJpegUndefinedHuffmanTable = {
  0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01,
  0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0xff, 0xdb, 0x00, 0x43,
  0x00, 0x0a, 0x07, 0x07, 0x08, 0x07, 0x06, 0x0a, 0x08, 0x08, 0x08, 0x0b,
  0x0a, 0x0a, 0x0b, 0x0e, 0x18, 0x10, 0x0e, 0x0d, 0x0d, 0x0e, 0x1d, 0x15,
  0x16, 0x11, 0x18, 0x23, 0x1f, 0x25, 0x24, 0x22, 0x1f, 0x22, 0x21, 0x26,
  0x2b, 0x37, 0x2f, 0x26, 0x29, 0x34, 0x29, 0x21, 0x22, 0x30, 0x41, 0x31,
  0x34, 0x39, 0x3b, 0x3e, 0x3e, 0x3e, 0x25, 0x2e, 0x44, 0x49, 0x43, 0x3c,
  0x48, 0x37, 0x3d, 0x3e, 0x3b, 0xff, 0xdb, 0x00, 0x43, 0x01, 0x0a, 0x0b,
  0x0b, 0x0e, 0x0d, 0x0e, 0x1c, 0x10, 0x10, 0x1c, 0x3b, 0x28, 0x22, 0x28,
  0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b,
  0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b,
  0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b,
  0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b,
  0x3b, 0x3b, 0xff, 0xc2, 0x00, 0x11, 0x08, 0x00, 0x0c, 0x00, 0x10, 0x03,
  0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xff, 0xc4, 0x00,
  0x16, 0x00, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x01, 0x05, 0xff, 0xc4, 0x00,
  0x15, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0xff, 0xda, 0x00, 0x0c,
  0x03, 0x01, 0x00, 0x02, 0x10, 0x03, 0x10, 0x00, 0x00, 0x01, 0xa5, 0x98,
  0xd7, 0x7f, 0xff, 0xc4, 0x00, 0x1b, 0x10, 0x00, 0x01, 0x04, 0x03, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x01, 0x02, 0x03, 0x12, 0x04, 0x14, 0x22, 0xff, 0xda, 0x00, 0x08, 0x01,
  0x01, 0x00, 0x01, 0x05, 0x02, 0xad, 0x5b, 0xc3, 0x32, 0xa4, 0x00, 0x00,
  0x00, 0x00, 0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x11,
  0x71, 0xb1, 0xc1, 0xff, 0xda, 0x00, 0x08, 0x01, 0x03, 0x01, 0x01, 0x3f,
  0x10, 0xbc, 0x01, 0x83, 0xd5, 0xb9, 0xff, 0xc4, 0x00, 0x18, 0x11, 0x01,
  0x00, 0x03, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x01, 0x00, 0x11, 0x51, 0xb1, 0xff, 0xda, 0x00, 0x08,
  0x01, 0x02, 0x01, 0x01, 0x3f, 0x10, 0xac, 0x92, 0xea, 0x5c, 0x27, 0xff,
  0xc4, 0x00, 0x1c, 0x10, 0x01, 0x00, 0x03, 0x00, 0x02, 0x03, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x11, 0x21,
  0x91, 0xd1, 0x51, 0x61, 0x81, 0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00,
  0x01, 0x3f, 0x10, 0x28, 0x1d, 0x35, 0xad, 0xac, 0x0d, 0x61, 0x24, 0xc1,
  0x54, 0x57, 0x08, 0x3e, 0xcf, 0xfa, 0x2b, 0x83, 0xdc, 0x70, 0x4f, 0x47,
  0xb2, 0x7f, 0xff, 0xd9};

TEST(FuzzRegression, JpegScanWithUndefinedHuffmanTable) {
  EXPECT_THAT(error_of([] { decode(kFuzzJpegUndefinedHuffmanTable, "undefined_table.jpg"); }),
              HasSubstr("undefined_table.jpg: corrupt JPEG (a scan uses a Huffman table that was never defined)"));
}

// fuzz_decode_image: a PNG whose first IDAT chunk is empty. stb_image then copies 0 bytes to a null
// buffer (UBSan: null pointer passed to memcpy); the wrapper drops empty IDAT chunks from a copy first.
const std::vector<uint8_t> kFuzzPngEmptyIdat = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
    0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x08, 0x04, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x48, 0xe9, 0x7f, 0x82, 0x40, 0x1c, 0x00, 0x00, 0x31, 0x61,
    0x00, 0x00, 0x84, 0x53, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

TEST(FuzzRegression, PngWithEmptyIdatChunks) {
  EXPECT_THAT(error_of([] { decode(kFuzzPngEmptyIdat, "empty_idat.png"); }), HasSubstr("empty_idat.png: "));
  // A valid file with empty IDAT chunks before and after the real one decodes as the original.
  std::vector<uint8_t> padded = kPilGray;
  const size_t idat = 8 + 12 + 13;  // after the signature and IHDR
  const uint8_t empty[12] = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xAF, 0x06, 0x1E};
  padded.insert(padded.begin() + idat, empty, empty + 12);
  const size_t after = idat + 12 + 12 + 16;  // past the empty chunk and PIL's 16-byte IDAT
  padded.insert(padded.begin() + after, empty, empty + 12);
  EXPECT_EQ(decode(padded).pixels, decode(kPilGray).pixels);
}

// A slow reference for render_image with study normalisation: bilinear with zeros outside, in double.
std::vector<float> reference_render(const data::ImageU8& im, const data::AugmentParams& p) {
  const int h = im.height, w = im.width, c = im.channels;
  const double radians = p.angle_degrees * 3.14159265358979323846 / 180.0, cs = std::cos(radians), sn = std::sin(radians);
  const double cx = (w - 1) * 0.5, cy = (h - 1) * 0.5;
  auto at = [&](int x, int y, int ch) -> double {
    return x < 0 || y < 0 || x >= w || y >= h ? 0.0 : im.pixels[(static_cast<size_t>(y) * w + x) * c + ch];
  };
  std::vector<float> out(static_cast<size_t>(h) * w * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      double sx = cx + cs * (x - cx) - sn * (y - cy);
      const double sy = cy + sn * (x - cx) + cs * (y - cy);
      if (p.flip) sx = (w - 1) - sx;
      const int x0 = static_cast<int>(std::floor(sx)), y0 = static_cast<int>(std::floor(sy));
      const double fx = sx - x0, fy = sy - y0;
      for (int ch = 0; ch < 3; ++ch) {
        const int k = c == 1 ? 0 : ch;
        const double v = (1 - fy) * ((1 - fx) * at(x0, y0, k) + fx * at(x0 + 1, y0, k)) +
                         fy * ((1 - fx) * at(x0, y0 + 1, k) + fx * at(x0 + 1, y0 + 1, k));
        out[(static_cast<size_t>(y) * w + x) * 3 + ch] = static_cast<float>(v / 255.0);
      }
    }
  return out;
}

// fuzz_render: a 1 x 11 image rotated by a tiny angle (float bits 0x3a001a00) with a flip. A source
// with a single row has no interior (both bilinear taps inside), but the span computation inverted its
// empty interval and read a row above the image (UBSan: pointer overflow in rotate_render_channels).
TEST(FuzzRegression, RotationOfSingleRowImages) {
  uint32_t bits = 0x3a001a00;
  float fuzz_angle = 0;
  std::memcpy(&fuzz_angle, &bits, sizeof(fuzz_angle));
  for (auto [h, w] : {std::pair<int, int>{1, 11}, {11, 1}, {1, 1}, {2, 9}, {1, 200}}) {
    // A black image between bright sentinel bytes: any tap read outside the image shows as non-zero.
    std::vector<uint8_t> padded(1024 + h * w + 1024, 255);
    std::fill(padded.begin() + 1024, padded.begin() + 1024 + h * w, 0);
    for (float angle : {fuzz_angle, -fuzz_angle, 0.01f, 10.0f, 30.0f, -30.0f, 90.0f}) {
      for (bool flip : {true, false}) {
        data::AugmentParams p;
        p.flip = flip;
        p.angle_degrees = angle;
        std::vector<float> out(static_cast<size_t>(h) * w * 3, -1.0f);
        data::render_image({padded.data() + 1024, h, w, 1}, p, data::Normalizer::make(data::NormMode::study), out.data());
        for (float v : out) ASSERT_EQ(v, 0.0f) << h << "x" << w << " angle " << angle << " flip " << flip;
      }
    }
  }
}

TEST(Render, RotationMatchesAReferenceOnAwkwardShapes) {
  // Every small shape, gray and RGB, at angles including the exact multiples of 90 degrees.
  using ::testing::FloatNear;
  using ::testing::Pointwise;
  uint32_t state = 7;
  for (int h = 1; h <= 6; ++h)
    for (int w = 1; w <= 6; ++w)
      for (int c : {1, 3}) {
        data::ImageU8 im;
        im.height = h, im.width = w, im.channels = c;
        for (int i = 0; i < h * w * c; ++i) {
          state = state * 1103515245u + 12345u;
          im.pixels.push_back(static_cast<uint8_t>(state >> 24));
        }
        for (float angle : {0.0005f, -3.0f, 29.0f, 45.0f, 90.0f, -90.0f, 180.0f, 270.0f, 359.9f}) {
          for (bool flip : {false, true}) {
            data::AugmentParams p;
            p.flip = flip;
            p.angle_degrees = angle;
            ASSERT_THAT(render(im, p, data::NormMode::study), Pointwise(FloatNear(1.5f / 255.0f), reference_render(im, p)))
                << h << "x" << w << "x" << c << " angle " << angle << " flip " << flip;
          }
        }
      }
  // And a larger one, where the fixed-point interior does most of the work.
  data::ImageU8 big = gray_u8(70, 50, {});
  for (int i = 0; i < 70 * 50; ++i) big.pixels.push_back(static_cast<uint8_t>((i * 29) % 256));
  for (float angle : {-30.0f, -11.3f, 7.7f, 30.0f}) {
    data::AugmentParams p;
    p.angle_degrees = angle;
    p.flip = angle > 0;
    EXPECT_THAT(render(big, p, data::NormMode::study), Pointwise(FloatNear(1.5f / 255.0f), reference_render(big, p))) << angle;
  }
}

}  // namespace
