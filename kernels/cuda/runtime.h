// The CUDA runtime as the engine sees it: probing for a device, device memory and copies.
// Built only with the CUDA backend (ENGINE_WITH_CUDA). The probe never fails: a machine without a driver
// or without a device reports zero devices and a one-line reason, and the engine falls back to the CPU.
#pragma once
#include <cstddef>
#include <string>

namespace kernels::cuda {

// Number of usable CUDA devices; on zero, *reason says why (no driver, no device, ...).
int device_count(std::string* reason);
// "NVIDIA H100 80GB HBM3 (sm_90, 79 GiB)" for device `index`.
std::string device_description(int index);
// Versions of the libraries linked in, for benchmark reports: the CUDA runtime ("13.0") and cuDNN as
// cudnnGetVersion() reports it (e.g. "91000").
std::string runtime_version();
std::string cudnn_version();

void* device_malloc(size_t bytes);  // throws std::runtime_error naming the size on failure
void device_free(void* ptr);
// Copies are ordered on the kernels' stream (context.h: current_stream()). Host<->device copies return
// when the copy is done (and so after every kernel queued before them); device-to-device copies are
// asynchronous, like the kernels.
void copy_host_to_device(void* dst, const void* src, size_t bytes);
void copy_device_to_host(void* dst, const void* src, size_t bytes);
void copy_device_to_device(void* dst, const void* src, size_t bytes);
// Asynchronous host<->device copies on the kernels' stream: the host buffer should be pinned
// (pinned_host_malloc; pageable memory works but is staged synchronously by the driver) and must stay
// untouched until the stream has passed the copy (stream_synchronize() in context.h).
void copy_host_to_device_async(void* dst, const void* src, size_t bytes);
void copy_device_to_host_async(void* dst, const void* src, size_t bytes);
void synchronize();

// Marks the region a profiler attached to the process should look at (cudaProfilerStart/Stop): the
// CUPTI kernel profile of kernels/profile/kernel_profile_cupti.cpp counts only kernels inside such ranges,
// `nsys profile --capture-range=cudaProfilerApi` records only them. Without a profiler attached, no-ops.
void profiler_range(bool begin);

// A point of the kernels' stream (a CUDA event without timing): the host can wait for exactly the work
// queued before it, not for what is queued after (stream_synchronize would). Not during graph capture.
struct StreamMarker;
StreamMarker* record_stream_marker();
void wait_stream_marker(StreamMarker* marker);  // returns when the stream has passed the marker
void destroy_stream_marker(StreamMarker* marker) noexcept;

// The process's GPU: made current on the calling thread (cudaSetDevice) and remembered, so that other
// threads that call the runtime here (a loader worker allocating pinned memory) switch to it first. A
// process on GPU k (one process per GPU) thus never opens a context on GPU 0.
void set_process_device(int index);

// Page-locked host memory: host<->device copies from it run at full speed and can be asynchronous.
// Allocated from the process's GPU (set_process_device) whatever the calling thread.
void* pinned_host_malloc(size_t bytes);  // throws std::runtime_error on failure
void pinned_host_free(void* ptr);

}  // namespace kernels::cuda
