// A kernel profiler for any CUDA process, as a CUPTI injection library: the CUDA driver loads the library
// named by CUDA_INJECTION64_PATH when the process initialises CUDA and calls its InitializeInjection().
// From then on CUPTI hands over an activity record for every kernel (graph replays included, node by node),
// memory copy and fill; the records are summed per kernel name (kernel_profile.h) and the table of the
// longest is written at the end of each profiler range and again at exit. Only activities that start inside a profiler range count, when the process
// marks any (cudaProfilerStart/Stop: our `bench` marks its timed iterations; PyTorch's
// torch.cuda.profiler.start/stop); otherwise all do.
//
//   export CUDA_INJECTION64_PATH=build/libkernel_profile.so ENGINE_KERNEL_PROFILE_OUT=profile.md
//   build/bench --cases densenet201@224 --batch-sizes 32 --mode train
//
// ENGINE_KERNEL_PROFILE_OUT: the markdown file (written atomically; default: standard error);
// ENGINE_KERNEL_PROFILE_TOP: the rows (default 25); ENGINE_KERNEL_PROFILE_TITLE: the table's heading.
// Needs no nsys or ncu: CUPTI ships with the CUDA toolkit (and with PyTorch's wheels). The timings are the
// GPU's own timestamps; tracing adds a little host time per launch, so time steps with `bench` alone.
#include <cupti.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "kernels/profile/kernel_profile.h"

namespace {

using kernels::profile::KernelProfile;

constexpr size_t kBufferBytes = size_t(8) << 20;

std::mutex mutex;
KernelProfile* profile = nullptr;  // never freed: it must outlive every flush, to the process's end
uint64_t range_begin = 0;
bool in_range = false;

const char* env_or(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value && *value ? value : fallback;
}

void report(CUptiResult result, const char* what) {
  if (result == CUPTI_SUCCESS) return;
  const char* text = "unknown error";
  cuptiGetResultString(result, &text);
  std::fprintf(stderr, "kernel profile: %s failed: %s\n", what, text);
}

const char* copy_kind_name(uint8_t kind) {
  switch (kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "[memcpy host to device]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "[memcpy device to host]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "[memcpy device to device]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOH: return "[memcpy host to host]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_PTOP: return "[memcpy peer to peer]";
    default: return "[memcpy other]";
  }
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;  // as many as fit
}

void CUPTIAPI buffer_completed(CUcontext context, uint32_t stream_id, uint8_t* buffer, size_t, size_t valid_bytes) {
  {
    const std::lock_guard<std::mutex> lock(mutex);
    CUpti_Activity* record = nullptr;
    for (;;) {
      const CUptiResult next = cuptiActivityGetNextRecord(buffer, valid_bytes, &record);
      if (next != CUPTI_SUCCESS) {
        if (next != CUPTI_ERROR_MAX_LIMIT_REACHED) report(next, "cuptiActivityGetNextRecord");
        break;
      }
      switch (record->kind) {
        case CUPTI_ACTIVITY_KIND_KERNEL:
        case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
          const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
          profile->add(k->name ? k->name : "(unnamed kernel)", k->start, k->end);
          break;
        }
        case CUPTI_ACTIVITY_KIND_MEMCPY: {
          const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(record);
          profile->add(copy_kind_name(m->copyKind), m->start, m->end);
          break;
        }
        case CUPTI_ACTIVITY_KIND_MEMSET: {
          const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(record);
          profile->add("[memset]", m->start, m->end);
          break;
        }
        default: break;
      }
    }
    size_t dropped = 0;
    if (cuptiActivityGetNumDroppedRecords(context, stream_id, &dropped) == CUPTI_SUCCESS && dropped > 0)
      profile->add_dropped(dropped);
  }
  std::free(buffer);
}

void write_table(bool at_exit);

// cuProfilerStart (at its exit) opens a range, cuProfilerStop (at its entry) closes it: the caller has
// synchronised before either, so the range holds exactly the work queued inside it. The runtime's
// cudaProfilerStart/Stop are watched too, in case its call into the driver is not reported: of a pair of
// calls, the first callback to fire opens or closes the range and the other is ignored (a start inside
// an open range, a stop outside one). At a stop the device is idle, so the range's records are flushed
// and the table written then, not only at exit: a process killed or hung later (a time limit, a fault
// in teardown) still leaves the table of its closed ranges.
void CUPTIAPI on_profiler_call(void*, CUpti_CallbackDomain domain, CUpti_CallbackId id, const void* data) {
  const bool driver = domain == CUPTI_CB_DOMAIN_DRIVER_API, runtime = domain == CUPTI_CB_DOMAIN_RUNTIME_API;
  const bool start = (driver && id == CUPTI_DRIVER_TRACE_CBID_cuProfilerStart) ||
                     (runtime && id == CUPTI_RUNTIME_TRACE_CBID_cudaProfilerStart_v4000);
  const bool stop = (driver && id == CUPTI_DRIVER_TRACE_CBID_cuProfilerStop) ||
                    (runtime && id == CUPTI_RUNTIME_TRACE_CBID_cudaProfilerStop_v4000);
  const auto* call = static_cast<const CUpti_CallbackData*>(data);
  uint64_t now = 0;
  if (start && call->callbackSite == CUPTI_API_EXIT) {
    cuptiGetTimestamp(&now);
    const std::lock_guard<std::mutex> lock(mutex);
    if (!in_range) range_begin = now;
    in_range = true;
  } else if (stop && call->callbackSite == CUPTI_API_ENTER) {
    cuptiGetTimestamp(&now);
    {
      const std::lock_guard<std::mutex> lock(mutex);
      if (!in_range) return;  // the inner call of a pair: the outer one closed the range
      profile->add_window(range_begin, now);
      in_range = false;
    }
    report(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED), "cuptiActivityFlushAll");  // outside the lock: it calls buffer_completed
    write_table(/*at_exit=*/false);
  }
}

// The table of what was recorded so far, to ENGINE_KERNEL_PROFILE_OUT (replaced atomically), or at exit
// to stderr when no file is named.
void write_table(bool at_exit) {
  const char* path = std::getenv("ENGINE_KERNEL_PROFILE_OUT");
  const bool to_file = path && *path;
  if (!to_file && !at_exit) return;
  std::string table;
  {
    const std::lock_guard<std::mutex> lock(mutex);
    if (in_range) {  // a range never closed: up to now
      uint64_t now = 0;
      cuptiGetTimestamp(&now);
      profile->add_window(range_begin, now);
      in_range = false;
    }
    table = profile->markdown(env_or("ENGINE_KERNEL_PROFILE_TITLE", "Kernel profile"),
                              std::atoi(env_or("ENGINE_KERNEL_PROFILE_TOP", "25")));
  }
  if (!to_file) {
    std::fputs(table.c_str(), stderr);
    return;
  }
  const std::string temporary = std::string(path) + ".tmp";
  FILE* f = std::fopen(temporary.c_str(), "w");
  const bool written = f && std::fwrite(table.data(), 1, table.size(), f) == table.size();
  if (f && std::fclose(f) != 0) f = nullptr;
  if (!f || !written || std::rename(temporary.c_str(), path) != 0) {
    std::fprintf(stderr, "kernel profile: could not write %s; the table follows\n%s", path, table.c_str());
    std::remove(temporary.c_str());
  }
}

void write_profile_at_exit() {
  report(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED), "cuptiActivityFlushAll");
  write_table(/*at_exit=*/true);
}

}  // namespace

extern "C" int InitializeInjection(void) {
  static std::atomic<bool> initialised{false};
  if (initialised.exchange(true)) return 1;  // once per process, whoever calls again
  profile = new KernelProfile();
  report(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed), "cuptiActivityRegisterCallbacks");
  for (const CUpti_ActivityKind kind :
       {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY, CUPTI_ACTIVITY_KIND_MEMSET})
    report(cuptiActivityEnable(kind), "cuptiActivityEnable");
  CUpti_SubscriberHandle subscriber = nullptr;
  report(cuptiSubscribe(&subscriber, on_profiler_call, nullptr), "cuptiSubscribe");
  if (subscriber) {
    report(cuptiEnableCallback(1, subscriber, CUPTI_CB_DOMAIN_DRIVER_API, CUPTI_DRIVER_TRACE_CBID_cuProfilerStart),
           "cuptiEnableCallback(cuProfilerStart)");
    report(cuptiEnableCallback(1, subscriber, CUPTI_CB_DOMAIN_DRIVER_API, CUPTI_DRIVER_TRACE_CBID_cuProfilerStop),
           "cuptiEnableCallback(cuProfilerStop)");
    report(cuptiEnableCallback(1, subscriber, CUPTI_CB_DOMAIN_RUNTIME_API,
                               CUPTI_RUNTIME_TRACE_CBID_cudaProfilerStart_v4000),
           "cuptiEnableCallback(cudaProfilerStart)");
    report(cuptiEnableCallback(1, subscriber, CUPTI_CB_DOMAIN_RUNTIME_API, CUPTI_RUNTIME_TRACE_CBID_cudaProfilerStop_v4000),
           "cuptiEnableCallback(cudaProfilerStop)");
  }
  std::atexit(write_profile_at_exit);
  return 1;
}
