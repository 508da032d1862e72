// Small file helpers for the data pipeline: read a whole file, write a file atomically (temporary file
// in the same folder, fsync, rename over the destination), make folders. Errors are engine::Error
// naming the path and the system's reason.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace data {

// The whole file. Throws engine::Error naming the path when it cannot be read or is larger than
// max_bytes (a guard against reading a stray multi-gigabyte file into memory).
std::vector<uint8_t> read_file_bytes(const std::string& path, uint64_t max_bytes = uint64_t(1) << 31);
std::string read_file_text(const std::string& path, uint64_t max_bytes = uint64_t(1) << 31);

// Writes `bytes` to `path` atomically: readers see the old file or the complete new one, never a part.
// durable: fsync before the rename (results, split lists); generated images skip it for speed.
void write_file_atomic(const std::string& path, const void* bytes, size_t size, bool durable = true);
inline void write_file_atomic(const std::string& path, std::string_view text, bool durable = true) {
  write_file_atomic(path, text.data(), text.size(), durable);
}

// mkdir -p; throws naming the path when it fails.
void make_directories(const std::string& path);

// The system error text for errno `code`.
std::string errno_text(int code);

}  // namespace data
