// Process-wide switches and device counters (see runtime.h), all through the device tables of
// backend.h. The CPU's thread count and machine description live with the CPU table (backend_cpu.cpp).
#include "engine/runtime.h"

#include "engine/check.h"

namespace engine {

#ifdef ENGINE_WITH_CUDA
namespace detail {  // CUDA graphs, in backend_cuda.cpp (the engine's one door to kernels/cuda)
bool cuda_graphs_supported(std::string* reason);
void cuda_begin_graph_capture();
std::unique_ptr<DeviceGraph> cuda_end_graph_capture();
void cuda_abort_graph_capture() noexcept;
void cuda_profile_range(bool begin);
}  // namespace detail
#endif

namespace {

// Every backend this build has, the CPU first.
std::vector<const DeviceBackend*> backends() {
  std::vector<const DeviceBackend*> all;
  for (DeviceType type : {DeviceType::cpu, DeviceType::cuda})
    if (const DeviceBackend* backend = find_backend(type)) all.push_back(backend);
  return all;
}

}  // namespace

void set_deterministic(bool deterministic) {
  for (const DeviceBackend* backend : backends()) backend->set_deterministic(deterministic);
}

bool deterministic() {
  for (const DeviceBackend* backend : backends())
    if (!backend->deterministic()) return false;
  return true;
}

void set_allow_tf32(bool allow) {
  for (const DeviceBackend* backend : backends()) backend->set_allow_tf32(allow);
}

bool allow_tf32() {
  for (const DeviceBackend* backend : backends())
    if (backend->allow_tf32()) return true;
  return false;
}

DeviceMemoryStats device_memory_stats(Device device) { return backend_for(device).memory_stats(); }
void reset_device_memory_peak(Device device) { backend_for(device).reset_memory_peak(); }
void empty_device_cache(Device device) { backend_for(device).empty_cache(); }
void device_synchronize(Device device) { backend_for(device).synchronize(); }

bool is_device_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const DeviceOutOfMemory*>(&e) != nullptr) return true;  // a tensor's allocation
  for (const DeviceBackend* backend : backends())
    if (backend->is_out_of_memory(e)) return true;
  return false;
}

std::vector<std::pair<std::string, std::string>> device_runtime_info(Device device) {
  return backend_for(device).runtime_info();
}

void device_profile_range(Device device, bool begin) {
#ifdef ENGINE_WITH_CUDA
  if (device.is_cuda()) detail::cuda_profile_range(begin);
#else
  (void)device;
  (void)begin;
#endif
}

bool device_graphs_supported(Device device, std::string* reason) {
#ifdef ENGINE_WITH_CUDA
  if (device.is_cuda()) return detail::cuda_graphs_supported(reason);
#endif
  if (reason) *reason = device.is_cpu() ? "the CPU runs kernels as they are called" : "this build has no CUDA backend";
  return false;
}

void begin_device_graph_capture(Device device) {
  ENGINE_CHECK(device.is_cuda()) << "graph capture on " << device.str() << ": only CUDA devices record graphs";
#ifdef ENGINE_WITH_CUDA
  detail::cuda_begin_graph_capture();
#endif
}

std::unique_ptr<DeviceGraph> end_device_graph_capture(Device device) {
  ENGINE_CHECK(device.is_cuda()) << "graph capture on " << device.str() << ": only CUDA devices record graphs";
#ifdef ENGINE_WITH_CUDA
  return detail::cuda_end_graph_capture();
#else
  return nullptr;
#endif
}

void abort_device_graph_capture(Device device) noexcept {
#ifdef ENGINE_WITH_CUDA
  if (device.is_cuda()) detail::cuda_abort_graph_capture();
#else
  (void)device;
#endif
}

}  // namespace engine
