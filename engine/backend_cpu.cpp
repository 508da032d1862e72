// The CPU's device table (see backend.h): 64-byte aligned host blocks counted in memory_stats.h,
// memcpy copies, and a strided copy that moves dense innermost rows with one memcpy each.
#include <malloc.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "engine/backend.h"
#include "engine/check.h"
#include "engine/memory_stats.h"
#include "engine/runtime.h"
#include "kernels/cpu_info.h"
#include "kernels/convert.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"

namespace engine {
namespace {

// glibc gives memory back to the system in two ways, and either makes a training step page-fault (and
// the kernel zero) its activations anew every step: a block above M_MMAP_THRESHOLD (128 KiB, rising to
// at most 32 MiB as blocks are freed) gets an mmap of its own, unmapped when freed; and free() hands the
// heap's top back (brk) once more than M_TRIM_THRESHOLD is free there. A DenseNet step at batch 16 frees
// over 1 GiB at its end: with the trim threshold at 1 GiB, DenseNet-121 at 224 px spent a quarter of its
// processor time in those faults (docs/perf-notes.md, "The heap's top given back every step"). So blocks
// up to 1 GiB come from the heap and the heap is never trimmed: it keeps a step's peak for the next step,
// as the GPU's caching allocator does. `host_heap_keeps_freed_memory()` (memory_stats.h) says whether
// glibc took both settings; other C libraries keep their own policy.
const bool host_heap_settings_taken = [] {
#if defined(__GLIBC__)
  const bool mmap_taken = mallopt(M_MMAP_THRESHOLD, 1 << 30) == 1;
  const bool trim_taken = mallopt(M_TRIM_THRESHOLD, -1) == 1;  // -1: never trim (mallopt(3))
  return mmap_taken && trim_taken;
#else
  return false;
#endif
}();

// 64-byte aligned host blocks from plain malloc: the block starts at the first 64-byte boundary past
// the pointer malloc returns (16 to 64 bytes in), and the byte just before it says how far. glibc's
// aligned_alloc instead carves the alignment out of each block and leaves the fragment in its free
// lists: with the ~5,000 allocations of a DenseNet-201 training step its searches through them cost
// about 1.5% of the step, on the main thread while the others wait.
void* host_allocate(size_t bytes) {
  char* raw = static_cast<char*>(std::malloc(bytes + 64));
  if (raw == nullptr) return nullptr;
  char* block = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + 64) & ~uintptr_t(63));
  block[-1] = static_cast<char>(block - raw);  // 1..64
  return block;
}

void host_free(void* block) {
  if (block == nullptr) return;
  char* b = static_cast<char*>(block);
  std::free(b - static_cast<unsigned char>(b[-1]));
}

// dst[...] = src[...] elementwise over shape[dim:], any strides (in elements).
void strided_copy_host(const int64_t* shape, int ndim, char* dst, const int64_t* dst_strides, const char* src,
                       const int64_t* src_strides, size_t element_size, int dim) {
  if (dim == ndim) {
    std::memcpy(dst, src, element_size);
    return;
  }
  const bool last_is_dense = dim + 1 == ndim && dst_strides[dim] == 1 && src_strides[dim] == 1;
  if (last_is_dense) {
    std::memcpy(dst, src, element_size * shape[dim]);
    return;
  }
  for (int64_t i = 0; i < shape[dim]; ++i) {
    strided_copy_host(shape, ndim, dst + i * dst_strides[dim] * element_size, dst_strides,
                      src + i * src_strides[dim] * element_size, src_strides, element_size, dim + 1);
  }
}

class CpuBackend final : public DeviceBackend {
 public:
  const char* name() const override { return "cpu"; }

  int device_count(std::string* /*reason*/) const override { return 1; }
  std::string device_description(int /*index*/) const override {
    const CpuInfo cpu = cpu_info();
    return "cpu: " + cpu.model;
  }
  std::vector<std::pair<std::string, std::string>> runtime_info() const override { return {}; }
  void make_current(int /*index*/) const override {}

  // Every allocation is counted, an empty one (nullptr) too.
  void* allocate(size_t bytes) const override {
    const size_t rounded = (bytes + 63) / 64 * 64;
    void* block = rounded ? host_allocate(rounded) : nullptr;
    ENGINE_CHECK(block != nullptr || rounded == 0) << "out of host memory allocating " << bytes << " bytes";
    note_host_allocation(bytes);
    return block;
  }
  void release(void* ptr, size_t bytes) const override {
    host_free(ptr);
    note_host_free(bytes);
  }
  // Without a device to copy to, page-locked memory gains nothing: ordinary aligned blocks, uncounted.
  void* pinned_allocate(size_t bytes) const override { return bytes ? host_allocate(bytes) : nullptr; }
  void pinned_free(void* ptr) const override { host_free(ptr); }
  DeviceMemoryStats memory_stats() const override {
    const HostMemoryStats host = host_memory_stats();
    DeviceMemoryStats stats;
    stats.in_use_bytes = host.live_bytes;
    stats.peak_bytes = host.peak_bytes;
    stats.requested_bytes = stats.in_use_bytes;
    stats.peak_requested_bytes = stats.peak_bytes;
    return stats;
  }
  void reset_memory_peak() const override { reset_host_memory_peak(); }
  // The heap keeps what tensors freed (above); this gives its free pages back to the system.
  void empty_cache() const override {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
  }
  bool is_out_of_memory(const std::exception& e) const override {
    return dynamic_cast<const std::bad_alloc*>(&e) != nullptr;
  }

  void copy_from_host(void* dst, const void* src, size_t bytes) const override {
    count_host_sync();
    copy_within(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) const override {
    count_host_sync();
    copy_within(dst, src, bytes);
  }
  void copy_within(void* dst, const void* src, size_t bytes) const override {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void fill(float* dst, int64_t count, float value) const override {
    if (count > 0) kernels::cpu::fill(kernels::MatrixView(dst, 1, count, count), value);
  }
  void strided_copy(int ndim, const int64_t* shape, void* dst, const int64_t* dst_strides, const void* src,
                    const int64_t* src_strides, size_t element_size) const override {
    strided_copy_host(shape, ndim, static_cast<char*>(dst), dst_strides, static_cast<const char*>(src), src_strides,
                      element_size, 0);
  }
  // The dense elements as rows of kConvertRow (the kernel threads over rows), then the tail as one row.
  void convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t count) const override {
    constexpr int64_t kConvertRow = 4096;
    const int64_t rows = count / kConvertRow, tail = count - rows * kConvertRow;
    if (rows > 0)
      kernels::cpu::convert({src, rows, kConvertRow, kConvertRow, src_dtype},
                            {dst, rows, kConvertRow, kConvertRow, dst_dtype});
    if (tail > 0)
      kernels::cpu::convert({static_cast<const char*>(src) + rows * kConvertRow * dtype_size(src_dtype), 1, tail, tail,
                             src_dtype},
                            {static_cast<char*>(dst) + rows * kConvertRow * dtype_size(dst_dtype), 1, tail, tail,
                             dst_dtype});
  }
  void synchronize() const override { count_host_sync(); }

  // The host's copies are done when they return: a marker has nothing to wait for.
  void copy_from_host_async(void* dst, const void* src, size_t bytes) const override { copy_within(dst, src, bytes); }
  void copy_to_host_async(void* dst, const void* src, size_t bytes) const override { copy_within(dst, src, bytes); }
  std::shared_ptr<DeviceMarker> record_marker() const override {
    struct Done : DeviceMarker {
      void wait() const override { count_host_sync(); }
    };
    return std::make_shared<Done>();
  }

  // The CPU kernels are deterministic and have no TF32.
  void set_deterministic(bool /*deterministic*/) const override {}
  bool deterministic() const override { return true; }
  void set_allow_tf32(bool /*allow*/) const override {}
  bool allow_tf32() const override { return false; }
};

}  // namespace

const DeviceBackend& cpu_backend() {
  static const CpuBackend backend;
  return backend;
}

bool host_heap_keeps_freed_memory() { return host_heap_settings_taken; }

// --- runtime.h: the CPU's threads and machine ----------------------------------------------------------

CpuInfo cpu_info() { return kernels::cpu::cpu_info(); }

int num_threads() { return kernels::cpu::num_threads(); }
void set_num_threads(int threads) { kernels::cpu::set_num_threads(threads); }

}  // namespace engine
