// Process-wide switches and counters of the devices, reached through the engine so that code above it
// (nets, data, experiment, apps) never includes kernels/ or a device API:
//   CPU threads:     set_num_threads / num_threads (OpenMP loops and the BLAS of the CPU kernels)
//   determinism:     set_deterministic(true) picks deterministic algorithms only (cuDNN on CUDA; the CPU
//                    kernels always are)
//   TF32:            set_allow_tf32(false) keeps f32 convolutions and GEMMs in full f32 on CUDA
//   device memory:   device_memory_stats(device) (CUDA: the caching allocator; CPU: the host tensor
//                    counters of memory_stats.h), reset_device_memory_peak, empty_device_cache
//   device_synchronize(device) waits for the device's queued work (a no-op on the CPU).
//   device_runtime_info(device): ("cuda_runtime", "13.0"), ("cudnn", "91000"), ("tf32", "on") ... for
//                    benchmark reports; empty on the CPU.
//   graph capture:   begin_device_graph_capture / end_device_graph_capture record a device's queued work
//                    once as a DeviceGraph that replay() runs again (CUDA graphs; engine/graph_step.h).
#pragma once
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/backend.h"
#include "engine/dtype.h"
#include "kernels/cpu_info.h"

namespace engine {

// --- CPU ------------------------------------------------------------------------------------------
// The machine the CPU kernels run on, from /proc/cpuinfo (clock x FLOP per cycle: an estimate of the
// single-precision peak, not a measurement): the kernels' own record (kernels/cpu_info.h), which the
// layers above use through this name.
using CpuInfo = kernels::cpu::CpuInfo;
CpuInfo cpu_info();
int num_threads();
void set_num_threads(int threads);  // at least 1

// --- Numerics switches (every backend of this build) ----------------------------------------------
void set_deterministic(bool deterministic);  // default off
bool deterministic();
void set_allow_tf32(bool allow);  // default on where the device has TF32
bool allow_tf32();                // false when no backend of this build has TF32

// --- Devices --------------------------------------------------------------------------------------
DeviceMemoryStats device_memory_stats(Device device);
void reset_device_memory_peak(Device device);  // the peak becomes the bytes in use now
// Gives the allocator's free blocks back to the system: CUDA's caching allocator's, or on the CPU the
// host heap's free pages (which it otherwise keeps for the next training step: engine/backend_cpu.cpp).
void empty_device_cache(Device device);
void device_synchronize(Device device);
// Whether `e` is a device allocator's out-of-memory error (of any backend of this build).
bool is_device_out_of_memory(const std::exception& e);
// Marks the start and the end of the region a profiler attached to the process should look at (CUDA:
// cudaProfilerStart/Stop, which nsys's --capture-range=cudaProfilerApi and the CUPTI kernel profile of
// kernels/profile/kernel_profile_cupti.cpp honour); the CPU ignores it. Call it where the device is idle
// (after a device_synchronize), so that the region holds exactly the work queued inside it.
void device_profile_range(Device device, bool begin);
std::vector<std::pair<std::string, std::string>> device_runtime_info(Device device);

// --- Graph capture (CUDA graphs; engine/graph_step.h) ---------------------------------------------
// Between begin_device_graph_capture(device) and end_device_graph_capture(device), the work queued on the
// device is recorded, not run; replay() of the DeviceGraph then runs it, as often as wanted, with the same
// kernels, arguments and addresses, in one launch. While recording, the device's allocations come from a
// pool owned by the graph, and memory released goes back to it, so no address the graph uses is handed to
// anything else while the graph lives (kernels/cuda/context.h). A recording fails, with a
// std::runtime_error from end_device_graph_capture or from the call that was illegal, when the work
// synchronises with the host (a copy to or from the host, a synchronisation); after an exception in the
// middle, abort_device_graph_capture closes the recording. Nothing recorded has run: the caller runs it
// again without a graph. Only CUDA devices record; device_graphs_supported says why not otherwise (the
// CPU, a build without CUDA, ENGINE_CUDA_SYNC=1 debugging, which wants every launch on its own).
class DeviceGraph {
 public:
  virtual ~DeviceGraph() = default;
  virtual void replay() const = 0;  // queued on the device like a kernel
};
bool device_graphs_supported(Device device, std::string* reason);
void begin_device_graph_capture(Device device);
std::unique_ptr<DeviceGraph> end_device_graph_capture(Device device);
void abort_device_graph_capture(Device device) noexcept;

}  // namespace engine
