// The engine's one door to a device: a table of what tensor storage needs from each kind of device
// (memory, copies, fills, synchronisation, the device's own probe and counters). Tensor code asks
// backend_for(device) and never names a device API; the CPU's table (backend_cpu.cpp) is always there,
// the CUDA table (backend_cuda.cpp) only in builds with the CUDA backend.
//
//   const DeviceBackend& b = backend_for(tensor.device());
//   void* p = b.allocate(bytes);  ...  b.release(p, bytes);
//
// Copies between the host and a device go through the device's table: copy_from_host(dst on the
// device, src on the host), copy_to_host(dst on the host, src on the device); copy_within copies inside
// one device. Pointers are raw bytes; element strides and shapes (strided_copy) are in elements.
#pragma once
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/dtype.h"

namespace engine {

// Bytes held by a device's allocator. On the CPU: the host tensor-storage counters (memory_stats.h),
// with nothing cached.
struct DeviceMemoryStats {
  int64_t in_use_bytes = 0;   // handed out now
  int64_t peak_bytes = 0;     // the most in use at once since the last reset
  int64_t cached_bytes = 0;   // held by the allocator: in use plus free lists
  // The bytes asked for (CUDA: each request rounded up to 512 B, as PyTorch's max_memory_allocated counts
  // them; a caching allocator's blocks may be larger than asked) and their peak since the last reset. The
  // CPU's counters are exact requests: the same as in_use_bytes and peak_bytes.
  int64_t requested_bytes = 0;
  int64_t peak_requested_bytes = 0;
};

// A point in a device's queue of work (DeviceBackend::record_marker).
class DeviceMarker {
 public:
  virtual ~DeviceMarker() = default;
  virtual void wait() const = 0;  // returns when the device has done everything queued before the marker
};

class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;
  virtual const char* name() const = 0;  // "cpu", "cuda"

  // --- Probe ---------------------------------------------------------------------------------------
  // Number of usable devices of this kind; on zero, *reason says why.
  virtual int device_count(std::string* reason) const = 0;
  virtual std::string device_description(int index) const = 0;
  // ("name", "version") pairs of the libraries behind this backend, for benchmark reports.
  virtual std::vector<std::pair<std::string, std::string>> runtime_info() const = 0;
  // Makes device `index` the one this process computes on (CUDA: the current GPU of this thread and of
  // the threads that allocate pinned memory later); the CPU has nothing to do.
  virtual void make_current(int index) const = 0;

  // --- Memory --------------------------------------------------------------------------------------
  // allocate(0) returns nullptr; failure throws (a device's out-of-memory error names the sizes).
  virtual void* allocate(size_t bytes) const = 0;
  virtual void release(void* ptr, size_t bytes) const = 0;  // bytes: as passed to allocate
  // Page-locked host memory that copies to and from this device run fastest from.
  virtual void* pinned_allocate(size_t bytes) const = 0;
  virtual void pinned_free(void* ptr) const = 0;
  virtual DeviceMemoryStats memory_stats() const = 0;
  virtual void reset_memory_peak() const = 0;
  virtual void empty_cache() const = 0;  // gives cached free blocks back
  // Whether `e` is this backend's out-of-memory error.
  virtual bool is_out_of_memory(const std::exception& e) const = 0;

  // --- Copies and fills ----------------------------------------------------------------------------
  // Host <-> device copies return when done; copies within the device and fills are ordered with the
  // device's kernels (synchronize() waits for them).
  virtual void copy_from_host(void* dst, const void* src, size_t bytes) const = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) const = 0;
  virtual void copy_within(void* dst, const void* src, size_t bytes) const = 0;
  // dst[i] = value for i < count.
  virtual void fill(float* dst, int64_t count, float value) const = 0;
  // dst[index] = src[index] over `shape` (ndim dimensions), any strides, elements of element_size bytes.
  virtual void strided_copy(int ndim, const int64_t* shape, void* dst, const int64_t* dst_strides, const void* src,
                            const int64_t* src_strides, size_t element_size) const = 0;
  // dst[i] = src[i] for i < count, dense, from src_dtype to dst_dtype (kernels/convert.h: f32 -> bf16 rounds to
  // nearest even, bf16 -> f32 is exact). Ordered with the device's kernels, as fills are.
  virtual void convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t count) const = 0;
  virtual void synchronize() const = 0;  // waits for everything queued on the device

  // --- Without waiting -----------------------------------------------------------------------------
  // Host <-> device copies queued with the device's kernels, returning at once: the host memory should be
  // pinned (Storage's pinned memory; pageable memory is staged by the driver, which may wait) and must
  // stay alive and untouched until the device has passed the copy, which a marker recorded after it tells
  // (CPU: plain copies). A marker is a point in the device's queue: wait() returns when everything queued
  // before it is done, and not later (a full synchronize would also wait for what was queued after).
  virtual void copy_from_host_async(void* dst, const void* src, size_t bytes) const = 0;
  virtual void copy_to_host_async(void* dst, const void* src, size_t bytes) const = 0;
  virtual std::shared_ptr<DeviceMarker> record_marker() const = 0;

  // --- Numerics switches (runtime.h sets them on every backend) ------------------------------------
  virtual void set_deterministic(bool deterministic) const = 0;
  virtual bool deterministic() const = 0;
  virtual void set_allow_tf32(bool allow) const = 0;
  virtual bool allow_tf32() const = 0;  // false where the device has no TF32
};

// Host synchronisations through the device tables: every backend's copy_to_host, copy_from_host and
// synchronize add one (on a GPU each waits for the queued kernels; on the CPU they are counted all the
// same, so a CPU test can check what a GPU step would wait for). Tests read the difference around a
// training step, which must enqueue work only (engine/training_step.h).
int64_t host_sync_count();
void count_host_sync();  // called by the backends' entry points above

// The table of `type`, or nullptr when this build has none (CUDA in a CPU-only build).
const DeviceBackend* find_backend(DeviceType type);
// The table of `device`'s type; a plain error when this build has none
// ("this build has no CUDA backend; use the CPU device").
const DeviceBackend& backend_for(Device device);

}  // namespace engine
