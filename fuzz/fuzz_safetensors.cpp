// libFuzzer target: the engine's safetensors reader (engine::safetensors::Reader) on arbitrary bytes.
// The bytes live in a memfd (no disk traffic), opened through /proc/self/fd/N like any file. A file the
// reader accepts must be self-consistent (tensors sorted by offset, each range dtype x shape bytes,
// ranges inside the data buffer), and every tensor must read back; only safetensors::Error may come out.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/safetensors.h"

namespace {
int memory_file() {
  static const int fd = memfd_create("fuzz_safetensors", 0);
  if (fd < 0) std::abort();
  return fd;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  namespace st = engine::safetensors;
  const int fd = memory_file();
  if (ftruncate(fd, 0) != 0) std::abort();
  for (size_t done = 0; done < size;) {
    const ssize_t n = pwrite(fd, bytes + done, size - done, static_cast<off_t>(done));
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    const st::Reader reader(path);
    uint64_t previous_end = 0, total = 0;
    for (const st::TensorInfo& t : reader.tensors()) {
      if (t.begin < previous_end || t.end < t.begin) std::abort();
      if (t.nbytes() != static_cast<uint64_t>(t.numel()) * st::dtype_size(t.dtype)) std::abort();
      if (t.nbytes() > size) std::abort();
      if (!reader.contains(t.name) || reader.info(t.name).begin != t.begin) std::abort();
      const std::vector<uint8_t> data = reader.read_bytes(t.name);
      if (data.size() != t.nbytes()) std::abort();
      previous_end = t.end;
      total += t.nbytes();
    }
    if (total > size) std::abort();
  } catch (const st::Error&) {
  }
  return 0;
}
