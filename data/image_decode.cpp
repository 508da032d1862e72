// Hardened image decoding on stb_image (see image.h). The only translation unit with stb_image's
// implementation, compiled static (private to this file) with PNG and JPEG support only.
//
// Defences, in order:
//  - a size limit on the file, then the magic bytes: only PNG and JPEG ever reach stb;
//  - JPEG: an end-of-image marker after the last scan (stb decodes a truncated JPEG silently, padding
//    with zeros), and a walk over the marker segments that refuses Huffman tables of more than 256 codes
//    and scans naming tables never defined (stb_image 2.27 writes past a 257-entry table on the first
//    and reads uninitialised tables on the second); both before stb parses anything;
//  - PNG: empty IDAT chunks (legal, but stb then memcpy's to a null pointer) dropped from a copy;
//  - the header's dimensions against the caps (stbi_info), before any pixel is allocated;
//  - every stb allocation zeroed and refused above a cap derived from the dimensions (a zlib bomb cannot
//    exhaust memory).
// The stb problems were found by fuzz/fuzz_decode_image; their inputs are regression tests in
// tests/cpu/test_data_image.cpp (FuzzRegression.*).
#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "data/image.h"
#include "data/io_util.h"
#include "engine/check.h"

namespace data {
namespace {
// The largest single allocation stb may make in this thread's current decode.
thread_local size_t stb_allocation_cap = size_t(1) << 30;
// calloc, not malloc: stb_image 2.27 reads Huffman tables a JPEG never defined (a scan may name any
// table) from its uninitialised decoder struct; zeroed, such a table decodes nothing instead of indexing
// out of bounds (found by fuzz/fuzz_decode_image). Large zeroed blocks come from mmap at no cost.
void* capped_malloc(size_t size) { return size > stb_allocation_cap ? nullptr : std::calloc(1, size); }
void* capped_realloc(void* p, size_t size) { return size > stb_allocation_cap ? nullptr : std::realloc(p, size); }
}  // namespace
}  // namespace data

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_MAX_DIMENSIONS 65535
#define STBI_MALLOC(size) ::data::capped_malloc(size)
#define STBI_REALLOC(p, size) ::data::capped_realloc(p, size)
#define STBI_FREE(p) std::free(p)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#if defined(__clang__)
#pragma GCC diagnostic ignored "-Wcomma"
#pragma GCC diagnostic ignored "-Wcast-qual"
#else
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

namespace data {
namespace {

// Decoding errors are the user's data problems: a clean "<file>: <what is wrong>" message without the
// source location that ENGINE_CHECK adds.
[[noreturn]] void fail(const std::string& message) { throw engine::Error(message); }

constexpr uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

// True when an end-of-image marker (FF D9) follows the last start-of-scan marker (FF DA). Entropy-coded
// data stuffs every FF with 00, so inside a scan FF D9 appears only as the real end.
bool jpeg_has_end_after_last_scan(const uint8_t* bytes, size_t size) {
  size_t last_sos = 0, last_eoi = 0;
  bool seen_sos = false, seen_eoi = false;
  for (size_t i = 0; i + 1 < size; ++i) {
    if (bytes[i] != 0xFF) continue;
    if (bytes[i + 1] == 0xDA) last_sos = i, seen_sos = true;
    else if (bytes[i + 1] == 0xD9) last_eoi = i, seen_eoi = true;
  }
  return seen_sos && seen_eoi && last_eoi > last_sos;
}

// Walks the JPEG's marker segments (skipping entropy-coded data after each SOS) and checks what
// stb_image 2.27 trusts: every Huffman table (DHT) has at most 256 codes and fits its segment, and every
// scan (SOS) uses only tables defined before it (baseline: the DC and AC tables of each component;
// progressive: the DC table in a first DC scan, the AC table in AC scans). "" when sane.
std::string jpeg_structure_problem(const uint8_t* bytes, size_t size) {
  bool defined[2][4] = {{false, false, false, false}, {false, false, false, false}};  // [DC/AC][id]
  bool progressive = false;
  size_t i = 2;  // after SOI
  while (i + 1 < size) {
    if (bytes[i] != 0xFF) return "expected a marker at byte " + std::to_string(i);
    while (i + 1 < size && bytes[i + 1] == 0xFF) ++i;  // fill bytes
    if (i + 1 >= size) break;
    const uint8_t marker = bytes[i + 1];
    if (marker == 0xD9) return "";  // EOI
    if ((marker >= 0xD0 && marker <= 0xD7) || marker == 0x01 || marker == 0xD8) {
      i += 2;
      continue;
    }
    if (i + 4 > size) return "truncated marker segment";
    const size_t length = (static_cast<size_t>(bytes[i + 2]) << 8) | bytes[i + 3];
    if (length < 2 || i + 2 + length > size) return "marker segment of bad length";
    const size_t begin = i + 4, end = i + 2 + length;
    if (marker == 0xC2) progressive = true;
    if (marker == 0xC4) {  // DHT: tables of 1 + 16 + n bytes
      for (size_t p = begin; p < end;) {
        if (p + 17 > end) return "truncated Huffman table";
        const int table_class = bytes[p] >> 4, id = bytes[p] & 15;
        if (table_class > 1 || id > 3) return "bad Huffman table header";
        size_t codes = 0;
        for (int k = 1; k <= 16; ++k) codes += bytes[p + k];
        if (codes > 256) return "a Huffman table with " + std::to_string(codes) + " codes (at most 256)";
        p += 17 + codes;
        if (p > end) return "Huffman table longer than its segment";
        defined[table_class][id] = true;
      }
    }
    if (marker == 0xDA) {  // SOS: Ns, Ns x (component, DC/AC table ids), Ss, Se, Ah/Al
      const size_t components = begin < end ? bytes[begin] : 0;
      if (components < 1 || components > 4 || length != 6 + 2 * components) return "bad scan header";
      const int spectral_start = bytes[begin + 1 + 2 * components];
      const int approximation_high = bytes[begin + 3 + 2 * components] >> 4;
      for (size_t c = 0; c < components; ++c) {
        const int dc = bytes[begin + 2 + 2 * c] >> 4, ac = bytes[begin + 2 + 2 * c] & 15;
        const bool needs_dc = !progressive || (spectral_start == 0 && approximation_high == 0);
        const bool needs_ac = !progressive || spectral_start > 0;
        if ((needs_dc && (dc > 3 || !defined[0][dc])) || (needs_ac && (ac > 3 || !defined[1][ac])))
          return "a scan uses a Huffman table that was never defined";
      }
    }
    i = end;
    if (marker == 0xDA) {  // entropy-coded data up to the next marker (FF 00 is a stuffed FF; RSTn inside)
      while (i + 1 < size && !(bytes[i] == 0xFF && bytes[i + 1] != 0x00 && !(bytes[i + 1] >= 0xD0 && bytes[i + 1] <= 0xD7)))
        ++i;
    }
  }
  return "no end-of-image marker";
}

// The PNG without its zero-length IDAT chunks, or an empty vector when it has none (the usual case: no
// copy). Walks the chunks after the signature up to IEND; a chunk running past the end stops the walk
// (stb reports the truncation).
std::vector<uint8_t> png_without_empty_idat(const uint8_t* bytes, size_t size) {
  std::vector<std::pair<size_t, size_t>> empty_idat;  // [begin, end) of each empty IDAT chunk
  size_t i = 8;
  while (i + 12 <= size) {
    const size_t length = (static_cast<size_t>(bytes[i]) << 24) | (static_cast<size_t>(bytes[i + 1]) << 16) |
                          (static_cast<size_t>(bytes[i + 2]) << 8) | bytes[i + 3];
    if (length > size - i - 12) break;
    if (length == 0 && std::memcmp(bytes + i + 4, "IDAT", 4) == 0) empty_idat.push_back({i, i + 12});
    if (std::memcmp(bytes + i + 4, "IEND", 4) == 0) break;
    i += 12 + length;
  }
  std::vector<uint8_t> copy;
  if (empty_idat.empty()) return copy;
  copy.reserve(size);
  size_t from = 0;
  for (const auto& [begin, end] : empty_idat) {
    copy.insert(copy.end(), bytes + from, bytes + begin);
    from = end;
  }
  copy.insert(copy.end(), bytes + from, bytes + size);
  return copy;
}

bool rgb_is_gray(const float* pixels, int64_t count) {
  for (int64_t i = 0; i < count; ++i)
    if (pixels[3 * i] != pixels[3 * i + 1] || pixels[3 * i] != pixels[3 * i + 2]) return false;
  return true;
}

// stb's samples (`source_channels` per pixel, 8- or 16-bit) -> our Image (1 or 3 channels, alpha dropped).
template <typename Sample>
Image convert(const Sample* samples, int width, int height, int source_channels, float to_255) {
  Image image;
  image.height = height;
  image.width = width;
  const int64_t count = static_cast<int64_t>(width) * height;
  const bool color = source_channels >= 3;
  image.channels = color ? 3 : 1;
  image.pixels.resize(static_cast<size_t>(count * image.channels));
  float* out = image.pixels.data();
  for (int64_t i = 0; i < count; ++i) {
    const Sample* px = samples + i * source_channels;
    if (color) {
      out[3 * i] = px[0] * to_255;
      out[3 * i + 1] = px[1] * to_255;
      out[3 * i + 2] = px[2] * to_255;
    } else {
      out[i] = px[0] * to_255;
    }
  }
  if (color && rgb_is_gray(out, count)) {  // gray saved as RGB: keep one channel
    for (int64_t i = 0; i < count; ++i) out[i] = out[3 * i];
    image.pixels.resize(static_cast<size_t>(count));
    image.channels = 1;
  }
  return image;
}

}  // namespace

ImageFormat sniff_image_format(const uint8_t* bytes, size_t size) {
  if (size >= 8 && std::memcmp(bytes, kPngSignature, 8) == 0) return ImageFormat::png;
  if (size >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) return ImageFormat::jpeg;
  return ImageFormat::unknown;
}

Image decode_image(const uint8_t* bytes, size_t size, const std::string& name, const DecodeLimits& limits) {
  if (size > limits.max_file_bytes || size > static_cast<size_t>(INT_MAX))
    fail(name + ": " + std::to_string(size) + " bytes is over the image file limit of " +
         std::to_string(limits.max_file_bytes) + " bytes");
  const ImageFormat format = sniff_image_format(bytes, size);
  // Never the file's bytes in the message: a path from a file may name something that is not an image
  // at all (a password file), and the error text goes to logs.
  if (format == ImageFormat::unknown)
    fail(name + ": not a PNG or JPEG file (" + (size == 0 ? std::string("empty") : "its signature is neither") +
         "); only PNG and JPEG are read");
  const char* kind = format == ImageFormat::png ? "PNG" : "JPEG";
  const auto check_dimensions = [&](int64_t width, int64_t height) {
    if (width <= 0 || height <= 0 || width > limits.max_side || height > limits.max_side ||
        width * height > limits.max_pixels)
      fail(name + ": " + std::to_string(width) + "x" + std::to_string(height) + " " + kind + " is over the limits (" +
           std::to_string(limits.max_side) + " px a side, " + std::to_string(limits.max_pixels) + " pixels)");
  };
  // PNG: the dimensions from the IHDR chunk, which must come first, before stb sees them (stb refuses
  // an image over 2^30 bytes as a "corrupt PNG"; such an image is over our limits, and should say so).
  if (format == ImageFormat::png && size >= 24 && std::memcmp(bytes + 12, "IHDR", 4) == 0) {
    const auto be32 = [&](size_t at) {
      return (static_cast<int64_t>(bytes[at]) << 24) | (static_cast<int64_t>(bytes[at + 1]) << 16) |
             (static_cast<int64_t>(bytes[at + 2]) << 8) | static_cast<int64_t>(bytes[at + 3]);
    };
    const int64_t width = be32(16), height = be32(20);
    if (width > 0 && height > 0) check_dimensions(width, height);  // zero: stb names the corruption
  }

  // Before stb parses anything (stbi_info already builds Huffman tables).
  if (format == ImageFormat::jpeg) {
    if (!jpeg_has_end_after_last_scan(bytes, size))
      fail(name + ": truncated JPEG (no end-of-image marker after the last scan)");
    const std::string problem = jpeg_structure_problem(bytes, size);
    if (!problem.empty()) fail(name + ": corrupt JPEG (" + problem + ")");
  }

  std::vector<uint8_t> cleaned;
  if (format == ImageFormat::png) {
    cleaned = png_without_empty_idat(bytes, size);
    if (!cleaned.empty()) {
      bytes = cleaned.data();
      size = cleaned.size();
    }
  }
  const int length = static_cast<int>(size);

  int width = 0, height = 0, channels = 0;
  stb_allocation_cap = size_t(16) << 20;  // reading headers needs little
  if (!stbi_info_from_memory(bytes, length, &width, &height, &channels))
    fail(name + ": corrupt or truncated " + kind + " header (" + stbi_failure_reason() + ")");
  check_dimensions(width, height);

  // No single allocation may exceed the decoded image at 4 channels x 16 bits, plus slack.
  stb_allocation_cap = static_cast<size_t>(width) * height * 8 + (size_t(4) << 20);
  const bool sixteen = format == ImageFormat::png && stbi_is_16_bit_from_memory(bytes, length);
  int w = 0, h = 0, n = 0;
  Image image;
  if (sixteen) {
    stbi_us* samples = stbi_load_16_from_memory(bytes, length, &w, &h, &n, 0);
    if (!samples) fail(name + ": corrupt or truncated " + kind + " (" + stbi_failure_reason() + ")");
    if (w == width && h == height && n >= 1 && n <= 4) image = convert(samples, w, h, n, 1.0f / 257.0f);
    stbi_image_free(samples);
  } else {
    stbi_uc* samples = stbi_load_from_memory(bytes, length, &w, &h, &n, 0);
    if (!samples) fail(name + ": corrupt or truncated " + kind + " (" + stbi_failure_reason() + ")");
    if (w == width && h == height && n >= 1 && n <= 4) image = convert(samples, w, h, n, 1.0f);
    stbi_image_free(samples);
  }
  if (image.channels == 0)
    fail(name + ": inconsistent " + kind + " (header says " + std::to_string(width) + "x" + std::to_string(height) +
         ", decoded " + std::to_string(w) + "x" + std::to_string(h) + "x" + std::to_string(n) + ")");
  return image;
}

Image decode_image_file(const std::string& path, const DecodeLimits& limits) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, limits.max_file_bytes);
  return decode_image(bytes.data(), bytes.size(), path, limits);
}

}  // namespace data
