// Counters of the host (CPU) memory held by tensor storage: the bytes live now, the most live at once
// since the last reset, and the number of allocations. The CPU's device table (engine/backend_cpu.cpp)
// reports every ordinary host allocation and free of tensor storage here; page-locked (pinned) loader
// buffers and device memory are not counted (a GPU's caching allocator has its own counters, reached
// through engine::device_memory_stats in engine/runtime.h, which on the CPU reports these). Kernel
// workspaces outside tensors (the CPU convolution's thread-local im2col buffer) are not counted either.
//
// The peak of live bytes over a forward + backward pass is the honest measure of what a training step
// keeps for backward: every saved activation, gradient and temporary is a tensor's storage.
//
//   engine::reset_host_memory_peak();
//   const int64_t before = engine::host_memory_stats().live_bytes;
//   ... forward, backward ...
//   const int64_t step_peak = engine::host_memory_stats().peak_bytes - before;
#pragma once
#include <cstddef>
#include <cstdint>

namespace engine {

struct HostMemoryStats {
  int64_t live_bytes = 0;   // bytes of host tensor storage allocated and not yet freed
  int64_t peak_bytes = 0;   // the maximum of live_bytes since the last reset_host_memory_peak()
  int64_t allocations = 0;  // host storage allocations since the process started
};

HostMemoryStats host_memory_stats();
// Sets the peak to the bytes live now.
void reset_host_memory_peak();

// Called by the CPU table (engine/backend_cpu.cpp) for every ordinary host allocation and free, from any thread.
void note_host_allocation(size_t bytes);
void note_host_free(size_t bytes);

// Whether the C library keeps freed host memory for the next allocations instead of giving it back to the
// system (glibc with the settings of engine/backend_cpu.cpp taken): then a training step's second run
// page-faults nothing its first run had touched. False on other C libraries.
bool host_heap_keeps_freed_memory();

}  // namespace engine
