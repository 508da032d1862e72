// The registry of device tables (see backend.h). The one place that knows which backends this build has.
#include "engine/backend.h"

#include <atomic>

#include "engine/check.h"

namespace engine {

const DeviceBackend& cpu_backend();  // backend_cpu.cpp
#ifdef ENGINE_WITH_CUDA
const DeviceBackend& cuda_backend();  // backend_cuda.cpp, compiled only with the CUDA backend
#endif

namespace {
std::atomic<int64_t> host_syncs{0};
}  // namespace

int64_t host_sync_count() { return host_syncs.load(std::memory_order_relaxed); }
void count_host_sync() { host_syncs.fetch_add(1, std::memory_order_relaxed); }

const DeviceBackend* find_backend(DeviceType type) {
  switch (type) {
    case DeviceType::cpu:
      return &cpu_backend();
    case DeviceType::cuda:
#ifdef ENGINE_WITH_CUDA
      return &cuda_backend();
#else
      return nullptr;
#endif
  }
  return nullptr;
}

const DeviceBackend& backend_for(Device device) {
  const DeviceBackend* backend = find_backend(device.type);
  if (backend == nullptr) {
    ENGINE_USER_FAIL() << "this build has no CUDA backend; use the CPU device (asked for " << device.str() << ")";
  }
  return *backend;
}

}  // namespace engine
