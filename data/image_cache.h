// The decoded-image cache: resized uint8 images (1 or 3 channels) kept after the first epoch so that
// later epochs never decode PNGs again. In memory while the memory budget lasts, then (or always, in
// disk mode) in one packed file: an unlinked temporary file in `dir` (it vanishes with the process),
// appended with pwrite at reserved offsets and read back with pread.
//
// Thread safety: put() and get() may run concurrently for different items; one item is written once,
// before it is read (the loader's epochs are separated by joining its workers).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "data/image.h"

namespace data {

enum class CacheMode : uint8_t { off, memory, disk, automatic };  // automatic: memory up to the budget, then disk
const char* cache_mode_name(CacheMode mode);
CacheMode parse_cache_mode(const std::string& name);  // "off" | "memory" | "disk" | "auto"

class DecodedCache {
 public:
  DecodedCache(int64_t items, CacheMode mode, uint64_t memory_budget_bytes, std::string dir);
  ~DecodedCache();
  DecodedCache(const DecodedCache&) = delete;
  DecodedCache& operator=(const DecodedCache&) = delete;

  bool enabled() const { return mode_ != CacheMode::off; }
  // Stores item's image (no-op when off or already stored).
  void put(int64_t item, const ImageU8& image);
  // Views item's pixels (in memory, or read from disk into `scratch`); false when not cached.
  bool get(int64_t item, std::vector<uint8_t>& scratch, ImageU8View& view) const;

  int64_t memory_items() const { return memory_items_.load(); }
  int64_t disk_items() const { return disk_items_.load(); }
  uint64_t memory_bytes() const { return memory_bytes_.load(); }
  uint64_t disk_bytes() const { return disk_end_.load(); }

 private:
  struct Entry {
    uint8_t where = 0;  // 0 absent, 1 memory, 2 disk
    uint8_t channels = 0;
    uint16_t height = 0, width = 0;
    std::unique_ptr<uint8_t[]> memory;
    uint64_t disk_offset = 0;
  };
  int open_disk_file();

  CacheMode mode_;
  uint64_t budget_;
  std::string dir_;
  std::vector<Entry> entries_;
  std::atomic<uint64_t> memory_bytes_{0}, disk_end_{0};
  std::atomic<int64_t> memory_items_{0}, disk_items_{0};
  std::mutex file_mutex_;
  std::atomic<int> fd_{-1};
};

}  // namespace data
