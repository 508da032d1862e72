// PNG encoder (chunks, CRC-32, per-row adaptive filters, a literal-only dynamic-Huffman deflate) and
// JPEG via stb_image_write. The only translation unit with stb_image_write's implementation (static).
//
// Deflate: filtered radiograph rows are small residuals around zero that LZ77 matching barely helps
// (noise) but a Huffman code compresses well, so each IDAT stream is one dynamic-Huffman block of
// literals (RFC 1951 section 3.2.7) - about 10x faster than stb_image_write's matcher at a similar size,
// and decoding it costs the decoder a full Huffman inflate, as real PNGs do.
#include <algorithm>
#include <cstring>
#include <queue>

#include "data/image_write.h"
#include "data/crc.h"
#include "data/io_util.h"
#include "engine/check.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBI_WRITE_NO_STDIO
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wtype-limits"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace data {
namespace {

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  out.push_back(static_cast<uint8_t>(v >> 24));
  out.push_back(static_cast<uint8_t>(v >> 16));
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

void put_chunk(std::vector<uint8_t>& out, const char type[4], const uint8_t* data, size_t size) {
  put_u32(out, static_cast<uint32_t>(size));
  const size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  if (size) out.insert(out.end(), data, data + size);
  put_u32(out, crc32(out.data() + start, size + 4));
}

// Bits into a byte vector, least significant first (deflate's order).
struct BitWriter {
  std::vector<uint8_t>& out;
  uint64_t buffer = 0;
  int count = 0;
  void put(uint32_t value, int bits) {
    buffer |= static_cast<uint64_t>(value) << count;
    count += bits;
    while (count >= 8) {
      out.push_back(static_cast<uint8_t>(buffer));
      buffer >>= 8;
      count -= 8;
    }
  }
  void flush() {
    if (count > 0) out.push_back(static_cast<uint8_t>(buffer));
    buffer = 0;
    count = 0;
  }
};

// Huffman code lengths for `freq`, none longer than `limit` (frequencies are flattened until it fits).
std::vector<int> huffman_lengths(std::vector<uint32_t> freq, int limit) {
  const int n = static_cast<int>(freq.size());
  std::vector<int> lengths(n, 0);
  for (;;) {
    std::vector<int> used;
    for (int i = 0; i < n; ++i)
      if (freq[i] > 0) used.push_back(i);
    if (used.empty()) return lengths;
    if (used.size() == 1) {
      lengths[used[0]] = 1;
      return lengths;
    }
    // Nodes 0..n-1 are leaves; internal nodes are appended. parent[] gives the depth of every leaf.
    std::vector<int> parent(2 * n, -1);
    using Item = std::pair<uint64_t, int>;
    std::priority_queue<Item, std::vector<Item>, std::greater<Item>> queue;
    for (int i : used) queue.push({freq[i], i});
    int next = n;
    while (queue.size() > 1) {
      const Item a = queue.top();
      queue.pop();
      const Item b = queue.top();
      queue.pop();
      parent[a.second] = parent[b.second] = next;
      queue.push({a.first + b.first, next++});
    }
    int longest = 0;
    for (int i : used) {
      int depth = 0;
      for (int node = i; parent[node] >= 0; node = parent[node]) ++depth;
      lengths[i] = depth;
      longest = std::max(longest, depth);
    }
    if (longest <= limit) return lengths;
    for (uint32_t& f : freq)
      if (f > 0) f = (f + 1) / 2;
  }
}

// Canonical codes (RFC 1951 3.2.2), bit-reversed for the LSB-first stream.
std::vector<uint32_t> canonical_codes(const std::vector<int>& lengths) {
  int bl_count[16] = {0};
  for (int l : lengths) ++bl_count[l];
  bl_count[0] = 0;
  uint32_t next_code[16] = {0};
  uint32_t code = 0;
  for (int bits = 1; bits < 16; ++bits) {
    code = (code + bl_count[bits - 1]) << 1;
    next_code[bits] = code;
  }
  std::vector<uint32_t> codes(lengths.size(), 0);
  for (size_t i = 0; i < lengths.size(); ++i) {
    const int len = lengths[i];
    if (len == 0) continue;
    uint32_t c = next_code[len]++, reversed = 0;
    for (int k = 0; k < len; ++k) reversed |= ((c >> k) & 1u) << (len - 1 - k);
    codes[i] = reversed;
  }
  return codes;
}

// zlib stream of `data`: one dynamic-Huffman block of literals, then Adler-32.
std::vector<uint8_t> zlib_literal_huffman(const uint8_t* data, size_t size) {
  std::vector<uint8_t> out = {0x78, 0x01};
  std::vector<uint32_t> freq(257, 0);
  for (size_t i = 0; i < size; ++i) ++freq[data[i]];
  freq[256] = 1;  // end of block
  const std::vector<int> lit_lengths = huffman_lengths(freq, 15);
  const std::vector<uint32_t> lit_codes = canonical_codes(lit_lengths);
  // Code lengths to send: 257 literal/length codes, then one distance code of length 1 (never used).
  std::vector<int> sent(lit_lengths);
  sent.push_back(1);
  std::vector<uint32_t> cl_freq(19, 0);
  for (int l : sent) ++cl_freq[l];
  const std::vector<int> cl_lengths = huffman_lengths(cl_freq, 7);
  const std::vector<uint32_t> cl_codes = canonical_codes(cl_lengths);
  static const int kOrder[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
  int hclen = 19;
  while (hclen > 4 && cl_lengths[kOrder[hclen - 1]] == 0) --hclen;

  BitWriter bits{out};
  bits.put(1, 1);  // final block
  bits.put(2, 2);  // dynamic Huffman
  bits.put(0, 5);  // HLIT: 257 codes
  bits.put(0, 5);  // HDIST: 1 code
  bits.put(static_cast<uint32_t>(hclen - 4), 4);
  for (int i = 0; i < hclen; ++i) bits.put(static_cast<uint32_t>(cl_lengths[kOrder[i]]), 3);
  for (int l : sent) bits.put(cl_codes[l], cl_lengths[l]);
  for (size_t i = 0; i < size; ++i) bits.put(lit_codes[data[i]], lit_lengths[data[i]]);
  bits.put(lit_codes[256], lit_lengths[256]);
  bits.flush();

  uint32_t a = 1, b = 0;
  for (size_t i = 0; i < size;) {
    const size_t chunk = std::min<size_t>(size - i, 5552);
    for (size_t k = 0; k < chunk; ++k) {
      a += data[i + k];
      b += a;
    }
    a %= 65521;
    b %= 65521;
    i += chunk;
  }
  put_u32(out, (b << 16) | a);
  return out;
}

int paeth(int a, int b, int c) {
  const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

}  // namespace

int png_channels(PngColor color) {
  switch (color) {
    case PngColor::gray: return 1;
    case PngColor::rgb: return 3;
    case PngColor::palette: return 1;
    case PngColor::gray_alpha: return 2;
    case PngColor::rgba: return 4;
  }
  return 0;
}

std::vector<uint8_t> encode_png(const PngImage& image) {
  const int channels = png_channels(image.color);
  ENGINE_CHECK(image.width > 0 && image.height > 0) << "encode_png: empty image";
  ENGINE_CHECK(image.bit_depth == 8 || (image.bit_depth == 16 && image.color != PngColor::palette))
      << "encode_png: bit depth " << image.bit_depth << " (8, or 16 without a palette)";
  ENGINE_CHECK(image.samples.size() == static_cast<size_t>(image.width) * image.height * channels)
      << "encode_png: " << image.samples.size() << " samples for " << image.width << "x" << image.height << "x"
      << channels;
  if (image.color == PngColor::palette)
    ENGINE_CHECK(!image.palette.empty() && image.palette.size() <= 256 &&
                 image.palette_alpha.size() <= image.palette.size())
        << "encode_png: a palette image needs 1..256 palette entries";
  const uint32_t max_sample = image.bit_depth == 16 ? 65535u
                              : image.color == PngColor::palette ? static_cast<uint32_t>(image.palette.size() - 1)
                                                                 : 255u;
  for (uint16_t s : image.samples) ENGINE_CHECK(s <= max_sample) << "encode_png: sample " << s << " out of range";

  // Raw scanlines (big-endian samples), then each row filtered with the filter that minimises the sum
  // of absolute (signed) bytes - the usual heuristic.
  const int bpp = channels * image.bit_depth / 8;  // bytes per pixel
  const size_t row_bytes = static_cast<size_t>(image.width) * bpp;
  std::vector<uint8_t> raw(row_bytes * image.height);
  for (size_t i = 0; i < image.samples.size(); ++i) {
    if (image.bit_depth == 16) {
      raw[2 * i] = static_cast<uint8_t>(image.samples[i] >> 8);
      raw[2 * i + 1] = static_cast<uint8_t>(image.samples[i]);
    } else {
      raw[i] = static_cast<uint8_t>(image.samples[i]);
    }
  }
  std::vector<uint8_t> filtered((row_bytes + 1) * image.height);
  std::vector<uint8_t> candidate(row_bytes);
  const std::vector<uint8_t> zero_row(row_bytes, 0);
  for (int y = 0; y < image.height; ++y) {
    const uint8_t* row = raw.data() + y * row_bytes;
    const uint8_t* up = y ? raw.data() + (y - 1) * row_bytes : zero_row.data();
    int best_filter = 0;
    long best_cost = -1;
    uint8_t* dst = filtered.data() + y * (row_bytes + 1);
    for (int filter = 0; filter < 5; ++filter) {
      long cost = 0;
      for (size_t i = 0; i < row_bytes; ++i) {
        const int a = i >= static_cast<size_t>(bpp) ? row[i - bpp] : 0;
        const int b = up[i];
        const int c = i >= static_cast<size_t>(bpp) ? up[i - bpp] : 0;
        int predicted = 0;
        switch (filter) {
          case 1: predicted = a; break;
          case 2: predicted = b; break;
          case 3: predicted = (a + b) / 2; break;
          case 4: predicted = paeth(a, b, c); break;
          default: break;
        }
        candidate[i] = static_cast<uint8_t>(row[i] - predicted);
        cost += std::abs(static_cast<int>(static_cast<int8_t>(candidate[i])));
      }
      if (best_cost < 0 || cost < best_cost) {
        best_cost = cost;
        best_filter = filter;
        std::memcpy(dst + 1, candidate.data(), row_bytes);
      }
    }
    dst[0] = static_cast<uint8_t>(best_filter);
  }
  const std::vector<uint8_t> compressed = zlib_literal_huffman(filtered.data(), filtered.size());

  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::vector<uint8_t> header;
  put_u32(header, static_cast<uint32_t>(image.width));
  put_u32(header, static_cast<uint32_t>(image.height));
  header.push_back(static_cast<uint8_t>(image.bit_depth));
  header.push_back(static_cast<uint8_t>(image.color));
  header.push_back(0);  // deflate
  header.push_back(0);  // adaptive filtering
  header.push_back(0);  // no interlace
  put_chunk(png, "IHDR", header.data(), header.size());
  if (image.color == PngColor::palette) {
    std::vector<uint8_t> plte;
    for (const auto& rgb : image.palette) plte.insert(plte.end(), rgb.begin(), rgb.end());
    put_chunk(png, "PLTE", plte.data(), plte.size());
    if (!image.palette_alpha.empty()) put_chunk(png, "tRNS", image.palette_alpha.data(), image.palette_alpha.size());
  }
  put_chunk(png, "IDAT", compressed.data(), compressed.size());
  put_chunk(png, "IEND", nullptr, 0);
  return png;
}

std::vector<uint8_t> encode_jpeg(const uint8_t* pixels, int width, int height, int channels, int quality) {
  ENGINE_CHECK(width > 0 && height > 0 && (channels == 1 || channels == 3) && quality >= 1 && quality <= 100)
      << "encode_jpeg: bad arguments " << width << "x" << height << "x" << channels << " quality " << quality;
  std::vector<uint8_t> out;
  auto append = [](void* context, void* data, int size) {
    auto* bytes = static_cast<std::vector<uint8_t>*>(context);
    const uint8_t* p = static_cast<const uint8_t*>(data);
    bytes->insert(bytes->end(), p, p + size);
  };
  const int ok = stbi_write_jpg_to_func(append, &out, width, height, channels, pixels, quality);
  ENGINE_CHECK(ok != 0 && !out.empty()) << "encode_jpeg: stb_image_write failed";
  return out;
}

void write_bytes_file(const std::string& path, const std::vector<uint8_t>& bytes, bool durable) {
  write_file_atomic(path, bytes.data(), bytes.size(), durable);
}

void write_png_file(const std::string& path, const PngImage& image, bool durable) {
  write_bytes_file(path, encode_png(image), durable);
}

}  // namespace data
