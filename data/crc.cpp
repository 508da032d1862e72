// CRC-32 and CRC-32C (see crc.h): init and final XOR 0xFFFFFFFF, bits processed least significant first.
#include "data/crc.h"

#include <array>

namespace data {
namespace {

using Table = std::array<uint32_t, 256>;

Table make_table(uint32_t reflected_polynomial) {
  Table table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? reflected_polynomial ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}

uint32_t update(const Table& table, const void* bytes, size_t size, uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(bytes);
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

}  // namespace

uint32_t crc32(const void* bytes, size_t size, uint32_t crc) {
  static const Table table = make_table(0xEDB88320u);
  return update(table, bytes, size, crc);
}

uint32_t crc32c(const void* bytes, size_t size, uint32_t crc) {
  static const Table table = make_table(0x82F63B78u);
  return update(table, bytes, size, crc);
}

}  // namespace data
