// Table-driven reflected CRC-32s (one byte per step), shared by the file formats we write:
//   crc32  : polynomial 0x04C11DB7 (reflected 0xEDB88320), zlib / PNG chunks;  crc32("123456789") = 0xCBF43926
//   crc32c : Castagnoli 0x1EDC6F41 (reflected 0x82F63B78), TFRecord framing;   crc32c("123456789") = 0xE3069283
// `crc` continues a running value over several pieces (0 to start): crc32(b, n2, crc32(a, n1)) = crc32(a ++ b).
#pragma once
#include <cstddef>
#include <cstdint>

namespace data {

uint32_t crc32(const void* bytes, size_t size, uint32_t crc = 0);
uint32_t crc32c(const void* bytes, size_t size, uint32_t crc = 0);

}  // namespace data
