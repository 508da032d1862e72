// Writing PNG and JPEG files: the synthetic MURA images and the decoder's test files. PNG in every
// colour type and bit depth the decoder must read (gray, gray+alpha, RGB, RGBA, palette; 8 or 16 bits),
// compressed with stb_image_write's deflate; JPEG through stb_image_write.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace data {

enum class PngColor : uint8_t { gray = 0, rgb = 2, palette = 3, gray_alpha = 4, rgba = 6 };
int png_channels(PngColor color);  // samples per pixel: 1, 3, 1 (index), 2, 4

struct PngImage {
  int width = 0, height = 0;
  PngColor color = PngColor::gray;
  int bit_depth = 8;              // 8, or 16 (not with palette)
  std::vector<uint16_t> samples;  // [height, width, png_channels(color)], each < 2^bit_depth
  std::vector<std::array<uint8_t, 3>> palette;  // palette images: up to 256 RGB entries
  std::vector<uint8_t> palette_alpha;           // optional tRNS alpha per palette entry
};

// The PNG file's bytes. Throws engine::Error on an inconsistent PngImage.
std::vector<uint8_t> encode_png(const PngImage& image);
// 8-bit pixels [height, width, channels] (1 gray, 3 RGB) as a baseline JPEG of `quality` (1..100).
std::vector<uint8_t> encode_jpeg(const uint8_t* pixels, int width, int height, int channels, int quality);

// Atomic writes (see io_util.h); durable=false skips the fsync (generated data).
void write_png_file(const std::string& path, const PngImage& image, bool durable = false);
void write_bytes_file(const std::string& path, const std::vector<uint8_t>& bytes, bool durable = false);

}  // namespace data
