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

void* device_malloc(size_t bytes);  // throws std::runtime_error naming the size on failure
void device_free(void* ptr);
void copy_host_to_device(void* dst, const void* src, size_t bytes);
void copy_device_to_host(void* dst, const void* src, size_t bytes);
void copy_device_to_device(void* dst, const void* src, size_t bytes);
void synchronize();

// Page-locked host memory: host<->device copies from it run at full speed and can be asynchronous.
void* pinned_host_malloc(size_t bytes);  // throws std::runtime_error on failure
void pinned_host_free(void* ptr);

}  // namespace kernels::cuda
