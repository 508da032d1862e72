// CUDA runtime probe, memory and copies (see runtime.h). Linked against the static CUDA runtime, so a
// binary starts on a machine without a driver: cudaGetDeviceCount then returns
// cudaErrorInsufficientDriver (35) or cudaErrorNoDevice and leaves its argument untouched.
#include "kernels/cuda/runtime.h"

#include "kernels/cuda/context.h"

#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <atomic>
#include <stdexcept>
#include <string>

namespace kernels::cuda {
namespace detail {
namespace {

void check(cudaError_t status, const char* expression, const char* file, int line) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // cleared: a caller that recovers must not see it blamed on its next launch
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": CUDA error " +
                           cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ") in " +
                           expression);
}
#define KERNELS_CUDA_CHECK(expr) check((expr), #expr, __FILE__, __LINE__)

std::atomic<int> g_process_device{0};

// Makes the process's GPU current on this thread (once per thread and change).
void use_process_device() {
  thread_local int current = -1;
  const int device = g_process_device.load(std::memory_order_relaxed);
  if (current == device) return;
  KERNELS_CUDA_CHECK(cudaSetDevice(device));
  current = device;
}

}  // namespace
}  // namespace detail

// This file's helpers and the backend's shared ones (kernels/cuda/internal.h).
using namespace detail;  // NOLINT(google-build-using-namespace)

int device_count(std::string* reason) {
  int count = 0;  // left untouched by the runtime when it fails
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    if (reason) {
      *reason = status == cudaErrorInsufficientDriver ? "no NVIDIA driver"
                : status == cudaErrorNoDevice         ? "no CUDA device"
                                                      : std::string("CUDA unavailable: ") +
                                                            cudaGetErrorName(status);
    }
    cudaGetLastError();  // clear the sticky error for later calls
    return 0;
  }
  if (count == 0 && reason) *reason = "no CUDA device";
  return count;
}

std::string device_description(int index) {
  cudaDeviceProp prop{};
  KERNELS_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) +
         ", " + std::to_string(prop.totalGlobalMem >> 30) + " GiB)";
}

std::string runtime_version() {
  int version = 0;
  cudaRuntimeGetVersion(&version);
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

std::string cudnn_version() { return std::to_string(cudnnGetVersion()); }

void* device_malloc(size_t bytes) {
  void* ptr = nullptr;
  const cudaError_t status = cudaMalloc(&ptr, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error("CUDA out of memory: could not allocate " + std::to_string(bytes) +
                             " bytes (" + cudaGetErrorString(status) +
                             "); try a smaller --batch-size");
  }
  return ptr;
}

void device_free(void* ptr) {
  if (ptr) cudaFree(ptr);
}

// The copies are ordered on the kernels' stream (context.h: current_stream(), a non-blocking stream
// that the legacy default stream of a plain cudaMemcpy does not wait for): a copy sees the results of
// every kernel queued before it, and kernels queued after it see the copied data.
namespace detail {
namespace {
cudaStream_t kernels_stream() { return static_cast<cudaStream_t>(current_stream()); }
}  // namespace
}  // namespace detail

void copy_host_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  KERNELS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, kernels_stream()));
  // The caller may reuse src as soon as this returns (it may be pinned, so the copy could still be
  // reading it): wait for the copy.
  KERNELS_CUDA_CHECK(cudaStreamSynchronize(kernels_stream()));
}
void copy_device_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  KERNELS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, kernels_stream()));
  KERNELS_CUDA_CHECK(cudaStreamSynchronize(kernels_stream()));
}
void copy_device_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  // Stream-ordered and asynchronous, as a device-to-device cudaMemcpy is.
  KERNELS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, kernels_stream()));
}
void copy_host_to_device_async(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  KERNELS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, kernels_stream()));
}
void copy_device_to_host_async(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  KERNELS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, kernels_stream()));
}
void synchronize() { KERNELS_CUDA_CHECK(cudaDeviceSynchronize()); }

void profiler_range(bool begin) {
  const cudaError_t status = begin ? cudaProfilerStart() : cudaProfilerStop();
  if (status == cudaErrorProfilerDisabled) {  // a profiler that refuses ranges: nothing to mark
    (void)cudaGetLastError();
    return;
  }
  KERNELS_CUDA_CHECK(status);
}

struct StreamMarker {
  cudaEvent_t event = nullptr;
};
StreamMarker* record_stream_marker() {
  auto* marker = new StreamMarker;
  const cudaError_t created = cudaEventCreateWithFlags(&marker->event, cudaEventDisableTiming);
  if (created != cudaSuccess) {
    delete marker;
    KERNELS_CUDA_CHECK(created);
  }
  const cudaError_t recorded = cudaEventRecord(marker->event, kernels_stream());
  if (recorded != cudaSuccess) {
    destroy_stream_marker(marker);
    KERNELS_CUDA_CHECK(recorded);
  }
  return marker;
}
void wait_stream_marker(StreamMarker* marker) { KERNELS_CUDA_CHECK(cudaEventSynchronize(marker->event)); }
void destroy_stream_marker(StreamMarker* marker) noexcept {
  if (marker == nullptr) return;
  if (marker->event != nullptr) cudaEventDestroy(marker->event);
  delete marker;
}

void set_process_device(int index) {
  KERNELS_CUDA_CHECK(cudaSetDevice(index));
  g_process_device.store(index, std::memory_order_relaxed);
}

void* pinned_host_malloc(size_t bytes) {
  use_process_device();
  void* ptr = nullptr;
  KERNELS_CUDA_CHECK(cudaMallocHost(&ptr, bytes));
  return ptr;
}

void pinned_host_free(void* ptr) {
  if (!ptr) return;
  try {
    use_process_device();  // a thread's first runtime call would open a context on its current GPU
  } catch (const std::exception&) {  // freeing must not throw (destructors); the free then goes ahead
  }
  cudaFreeHost(ptr);
}

}  // namespace kernels::cuda
