// File helpers (see io_util.h).
#include "data/io_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "engine/check.h"

namespace data {
namespace {
// File errors reach users: a clean "<path>: <reason>" message without ENGINE_CHECK's source location.
[[noreturn]] void fail(const std::string& message) { throw engine::UserError(message); }
}  // namespace

std::string errno_text(int code) { return std::strerror(code); }

std::vector<uint8_t> read_file_bytes(const std::string& path, uint64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path + ": cannot open: " + errno_text(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    const int code = errno;
    ::close(fd);
    fail(path + ": not a regular file" + (code ? ": " + errno_text(code) : std::string()));
  }
  if (static_cast<uint64_t>(info.st_size) > max_bytes) {
    ::close(fd);
    fail(path + ": " + std::to_string(info.st_size) + " bytes is more than the limit of " + std::to_string(max_bytes) +
         " bytes for this kind of file");
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(info.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t got = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      const int code = errno;
      ::close(fd);
      fail(path + ": read failed after " + std::to_string(done) + " of " + std::to_string(bytes.size()) +
           " bytes: " + (got == 0 ? std::string("unexpected end of file") : errno_text(code)));
    }
    done += static_cast<size_t>(got);
  }
  ::close(fd);
  return bytes;
}

std::string read_file_text(const std::string& path, uint64_t max_bytes) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, max_bytes);
  return std::string(bytes.begin(), bytes.end());
}

void make_directories(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  ENGINE_USER_CHECK(!ec) << "cannot create the folder " << path << ": " << ec.message();
}

void write_file_atomic(const std::string& path, const void* bytes, size_t size, bool durable) {
  // A unique temporary name beside the destination (same file system, so rename is atomic).
  std::random_device entropy;
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(entropy());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ENGINE_USER_CHECK(fd >= 0) << "cannot create " << tmp << " (to write " << path << "): " << errno_text(errno)
                             << "; check that the folder exists and is writable";
  const char* p = static_cast<const char*>(bytes);
  size_t done = 0;
  while (done < size) {
    const ssize_t put = ::write(fd, p + done, size - done);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) {
      const int code = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      ENGINE_USER_FAIL() << "writing " << path << " failed after " << done << " of " << size
                         << " bytes: " << errno_text(code) << " (is the disk full?)";
    }
    done += static_cast<size_t>(put);
  }
  if ((durable && ::fsync(fd) != 0) || ::close(fd) != 0) {
    const int code = errno;
    ::unlink(tmp.c_str());
    ENGINE_USER_FAIL() << "writing " << path << " failed: " << errno_text(code);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int code = errno;
    ::unlink(tmp.c_str());
    ENGINE_USER_FAIL() << "cannot rename " << tmp << " over " << path << ": " << errno_text(code);
  }
}

}  // namespace data
