// Host tensor-storage counters (see memory_stats.h): lock-free atomics, so that allocations from the
// data loader's threads and OpenMP regions are counted exactly.
#include "engine/memory_stats.h"

#include <atomic>

namespace engine {
namespace {

std::atomic<int64_t> live{0};
std::atomic<int64_t> peak{0};
std::atomic<int64_t> allocations{0};

// peak = max(peak, value), without a lock.
void raise_peak(int64_t value) {
  int64_t seen = peak.load(std::memory_order_relaxed);
  while (value > seen && !peak.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

}  // namespace

HostMemoryStats host_memory_stats() {
  HostMemoryStats s;
  s.live_bytes = live.load(std::memory_order_relaxed);
  s.peak_bytes = peak.load(std::memory_order_relaxed);
  s.allocations = allocations.load(std::memory_order_relaxed);
  return s;
}

void reset_host_memory_peak() { peak.store(live.load(std::memory_order_relaxed), std::memory_order_relaxed); }

void note_host_allocation(size_t bytes) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  raise_peak(live.fetch_add(static_cast<int64_t>(bytes), std::memory_order_relaxed) + static_cast<int64_t>(bytes));
}

void note_host_free(size_t bytes) { live.fetch_sub(static_cast<int64_t>(bytes), std::memory_order_relaxed); }

}  // namespace engine
