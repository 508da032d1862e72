// TensorBoard scalar event files (see tensorboard.h): CRC-32C, TFRecord framing, the Event protobuf
// encoded by hand, and the update of a run's file (append, or rewrite atomically).
//
// Protobuf wire format used here: a field is its key varint (field_number << 3 | wire_type) followed by
// its value; wire type 0 = varint (int64: two's complement, 7 bits per byte, low first, high bit = more),
// 1 = 8 little-endian bytes (double), 2 = varint length then bytes (string, nested message),
// 5 = 4 little-endian bytes (float).
#include "experiment/tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "data/crc.h"
#include "data/io_util.h"
#include "engine/check.h"

namespace experiment {

namespace fs = std::filesystem;

namespace {

void put_le(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((value >> (8 * i)) & 0xff);
}

// --- Protobuf encoding ---
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out += static_cast<char>((value & 0x7f) | 0x80);
    value >>= 7;
  }
  out += static_cast<char>(value);
}
void put_key(std::string& out, uint32_t field, WireType type) { put_varint(out, uint64_t(field) << 3 | type); }
void put_int64(std::string& out, uint32_t field, int64_t value) {
  put_key(out, field, kVarint);
  put_varint(out, static_cast<uint64_t>(value));
}
void put_double(std::string& out, uint32_t field, double value) {
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  put_key(out, field, kFixed64);
  put_le(out, bits, 8);
}
void put_float(std::string& out, uint32_t field, float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  put_key(out, field, kFixed32);
  put_le(out, bits, 4);
}
void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out += bytes;
}

// Field numbers of tensorboard/compat/proto/event.proto and summary.proto.
constexpr uint32_t kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5;
constexpr uint32_t kSummaryValue = 1;
constexpr uint32_t kValueTag = 1, kValueSimpleValue = 2;

std::string scalar_event(const ScalarEvent& event, double start_time) {
  std::string summary;
  for (const auto& [tag, value] : event.values) {
    std::string v;
    put_bytes(v, kValueTag, tag);
    put_float(v, kValueSimpleValue, value);
    put_bytes(summary, kSummaryValue, v);
  }
  std::string e;
  put_double(e, kEventWallTime, start_time + event.seconds);
  put_int64(e, kEventStep, event.step);
  put_bytes(e, kEventSummary, summary);
  return e;
}

// Appends `size` bytes to the file at `path` and fsyncs it.
void append_durably(const std::string& path, const char* bytes, size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  ENGINE_USER_CHECK(fd >= 0) << "cannot open " << path << " to append to it: " << data::errno_text(errno);
  size_t done = 0;
  while (done < size) {
    const ssize_t put = ::write(fd, bytes + done, size - done);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) {
      const int code = errno;
      ::close(fd);
      ENGINE_USER_FAIL() << "appending to " << path << " failed after " << done << " of " << size
                         << " bytes: " << data::errno_text(code) << " (is the disk full?)";
    }
    done += static_cast<size_t>(put);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0)
    ENGINE_USER_FAIL() << "appending to " << path << " failed: " << data::errno_text(errno);
}

constexpr const char* kPrefix = "events.out.tfevents.";
constexpr const char* kSuffix = ".mura-engine";

// T of a file named events.out.tfevents.<T>.mura-engine, or -1.
int64_t start_of_event_file(const std::string& name) {
  const size_t p = std::strlen(kPrefix), s = std::strlen(kSuffix);
  if (name.size() <= p + s || name.compare(0, p, kPrefix) != 0 || name.compare(name.size() - s, s, kSuffix) != 0)
    return -1;
  const std::string digits = name.substr(p, name.size() - p - s);
  if (digits.size() > 15 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(digits);
}

}  // namespace

uint32_t masked_crc32c(const void* bytes, size_t size) {
  const uint32_t crc = data::crc32c(bytes, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string tfrecord(const std::string& payload) {
  std::string record;
  put_le(record, payload.size(), 8);
  const uint32_t length_crc = masked_crc32c(record.data(), 8);
  put_le(record, length_crc, 4);
  record += payload;
  put_le(record, masked_crc32c(payload.data(), payload.size()), 4);
  return record;
}

std::string tensorboard_events(const std::vector<ScalarEvent>& events, double start_time) {
  std::string first;
  put_double(first, kEventWallTime, start_time);
  put_int64(first, kEventStep, 0);
  put_bytes(first, kEventFileVersion, "brain.Event:2");
  std::string file = tfrecord(first);
  for (const ScalarEvent& event : events) file += tfrecord(scalar_event(event, start_time));
  return file;
}

std::string write_tensorboard_run(const std::string& dir, const std::vector<ScalarEvent>& events, double start_time) {
  ENGINE_CHECK(std::isfinite(start_time) && start_time >= 0)
      << "write_tensorboard_run: the start time must be seconds since 1970, got " << start_time;
  data::make_directories(dir);
  int64_t start = -1;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const int64_t t = start_of_event_file(entry.path().filename().string());
    if (t >= 0 && (start < 0 || t < start)) start = t;
  }
  ENGINE_USER_CHECK(!ec) << "cannot list " << dir << ": " << ec.message();
  if (start < 0) start = static_cast<int64_t>(std::floor(start_time));
  const std::string path = dir + "/" + kPrefix + std::to_string(start) + kSuffix;
  const std::string file = tensorboard_events(events, static_cast<double>(start));

  // The usual case, one more epoch: the file on disk is a prefix of the new one; append the rest.
  const uint64_t old_size = fs::is_regular_file(path, ec) ? fs::file_size(path, ec) : 0;
  if (!ec && old_size > 0 && old_size <= file.size()) {
    const std::vector<uint8_t> old = data::read_file_bytes(path, file.size());
    if (std::equal(old.begin(), old.end(), file.begin(),
                   [](uint8_t a, char b) { return a == static_cast<uint8_t>(b); })) {
      if (old.size() < file.size()) append_durably(path, file.data() + old.size(), file.size() - old.size());
      return path;
    }
  }
  // Otherwise (the first write, a resume that dropped epochs, a torn append): the whole file, staged under
  // a name without "tfevents" (which TensorBoard ignores, as it does write_file_atomic's temporary file
  // of it) and renamed over the event file.
  const std::string staging = dir + "/next-events" + kSuffix;
  data::write_file_atomic(staging, file);
  fs::rename(staging, path, ec);
  ENGINE_USER_CHECK(!ec) << "cannot rename " << staging << " over " << path << ": " << ec.message();
  return path;
}

int remove_event_files(const std::string& dir) {
  std::error_code ec;
  std::vector<fs::path> ours;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.is_regular_file(ec) && start_of_event_file(entry.path().filename().string()) >= 0)
      ours.push_back(entry.path());
  for (const fs::path& path : ours) {
    fs::remove(path, ec);
    ENGINE_USER_CHECK(!ec) << "cannot remove the old event file " << path.string() << ": " << ec.message();
  }
  return static_cast<int>(ours.size());
}

}  // namespace experiment
