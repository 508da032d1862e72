// The decoded-image cache (see image_cache.h).
#include "data/image_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "data/io_util.h"
#include "engine/check.h"

namespace data {

const char* cache_mode_name(CacheMode mode) {
  switch (mode) {
    case CacheMode::off: return "off";
    case CacheMode::memory: return "memory";
    case CacheMode::disk: return "disk";
    case CacheMode::automatic: return "auto";
  }
  return "?";
}

CacheMode parse_cache_mode(const std::string& name) {
  if (name == "off") return CacheMode::off;
  if (name == "memory") return CacheMode::memory;
  if (name == "disk") return CacheMode::disk;
  if (name == "auto") return CacheMode::automatic;
  ENGINE_USER_FAIL() << "unknown cache mode '" << name << "' (use off, memory, disk or auto)";
}

DecodedCache::DecodedCache(int64_t items, CacheMode mode, uint64_t memory_budget_bytes, std::string dir)
    : mode_(mode), budget_(memory_budget_bytes), dir_(std::move(dir)) {
  ENGINE_CHECK(items >= 0) << "DecodedCache: negative item count";
  if (mode_ != CacheMode::off) entries_.resize(static_cast<size_t>(items));
  if (dir_.empty()) dir_ = std::filesystem::temp_directory_path().string();
}

DecodedCache::~DecodedCache() {
  const int fd = fd_.load();
  if (fd >= 0) ::close(fd);
}

int DecodedCache::open_disk_file() {
  int fd = fd_.load();
  if (fd >= 0) return fd;
  std::lock_guard<std::mutex> lock(file_mutex_);
  fd = fd_.load();
  if (fd >= 0) return fd;
  make_directories(dir_);
  std::string pattern = dir_ + "/mura_decoded_cache_XXXXXX";
  fd = ::mkstemp(pattern.data());
  ENGINE_USER_CHECK(fd >= 0) << "cannot create the disk cache in " << dir_ << ": " << errno_text(errno)
                             << " (choose a writable cache folder, or cache mode memory/off)";
  ::unlink(pattern.c_str());  // the space is released when the file is closed, whatever happens
  fd_.store(fd);
  return fd;
}

void DecodedCache::put(int64_t item, const ImageU8& image) {
  if (mode_ == CacheMode::off) return;
  ENGINE_CHECK(item >= 0 && item < static_cast<int64_t>(entries_.size())) << "DecodedCache: item " << item << " out of range";
  ENGINE_CHECK(image.height > 0 && image.height <= 65535 && image.width > 0 && image.width <= 65535 &&
               (image.channels == 1 || image.channels == 3) &&
               image.pixels.size() == static_cast<size_t>(image.height) * image.width * image.channels)
      << "DecodedCache: malformed image";
  Entry& entry = entries_[item];
  if (entry.where != 0) return;
  const uint64_t size = image.pixels.size();
  bool in_memory = mode_ == CacheMode::memory;
  if (mode_ == CacheMode::automatic) {
    const uint64_t before = memory_bytes_.fetch_add(size);
    in_memory = before + size <= budget_;
    if (!in_memory) memory_bytes_.fetch_sub(size);
  } else if (in_memory) {
    memory_bytes_.fetch_add(size);
  }
  entry.height = static_cast<uint16_t>(image.height);
  entry.width = static_cast<uint16_t>(image.width);
  entry.channels = static_cast<uint8_t>(image.channels);
  if (in_memory) {
    entry.memory.reset(new uint8_t[size]);
    std::memcpy(entry.memory.get(), image.pixels.data(), size);
    entry.where = 1;
    memory_items_.fetch_add(1);
    return;
  }
  const int fd = open_disk_file();
  const uint64_t offset = disk_end_.fetch_add(size);
  size_t done = 0;
  while (done < size) {
    const ssize_t put = ::pwrite(fd, image.pixels.data() + done, size - done, static_cast<off_t>(offset + done));
    if (put < 0 && errno == EINTR) continue;
    ENGINE_USER_CHECK(put > 0) << "writing the disk cache in " << dir_ << " failed: " << errno_text(errno)
                               << " (disk full? choose another cache folder or a larger memory budget)";
    done += static_cast<size_t>(put);
  }
  entry.disk_offset = offset;
  entry.where = 2;
  disk_items_.fetch_add(1);
}

bool DecodedCache::get(int64_t item, std::vector<uint8_t>& scratch, ImageU8View& view) const {
  if (mode_ == CacheMode::off || item < 0 || item >= static_cast<int64_t>(entries_.size())) return false;
  const Entry& entry = entries_[item];
  if (entry.where == 0) return false;
  view.height = entry.height;
  view.width = entry.width;
  view.channels = entry.channels;
  if (entry.where == 1) {
    view.pixels = entry.memory.get();
    return true;
  }
  const size_t size = static_cast<size_t>(entry.height) * entry.width * entry.channels;
  scratch.resize(size);
  size_t done = 0;
  const int fd = fd_.load();
  while (done < size) {
    const ssize_t got = ::pread(fd, scratch.data() + done, size - done, static_cast<off_t>(entry.disk_offset + done));
    if (got < 0 && errno == EINTR) continue;
    ENGINE_USER_CHECK(got > 0) << "reading the disk cache in " << dir_ << " failed: "
                               << (got == 0 ? std::string("unexpected end") : errno_text(errno));
    done += static_cast<size_t>(got);
  }
  view.pixels = scratch.data();
  return true;
}

}  // namespace data
