// The CUDA context (see context.h): the caching device allocator, one non-blocking stream per device
// with cuBLAS and cuDNN handles bound to it (all created lazily, on first use), the TF32 /
// determinism / workspace switches, and launch checking.
//
// Allocator. Requests are rounded to a size class: multiples of 512 B up to 1 MiB ("small"), of 2 MiB
// above ("large"). A released block goes to its device's free list (a multimap size -> pointer) and is
// handed out again for a later request of the same kind whose size class it fits with little waste
// (small: at most twice the class, large: at most a quarter more plus 2 MiB), smallest fitting block
// first. So a training step that repeats the previous step's allocations makes no cudaMalloc or
// cudaFree calls. Blocks are never split or merged: simple, and enough for repeated steps.
// All kernels run on one stream per device, so reuse is safe without events: a block released while
// queued kernels still read it is only handed out to work queued after them.
// When cudaMalloc fails, every free block of the device is returned to the driver and the call retried
// once; if it fails again, OutOfMemory names the allocation, its size, the allocator's in-use and
// cached bytes, the device's free/total memory, and suggests a smaller --batch-size.
// Graph pools (context.h: CUDA graphs): while a capture is open, its device's allocations come from a pool
// of the graph's (its free list, then blocks taken over from the device's free list, then cudaMalloc with
// the thread's capture mode relaxed around it) and every release goes to that pool; a block keeps its
// pool's id, so a pool block released later returns to the pool. Retiring the pool (the graph destroyed)
// moves its free blocks to the device's free list; a block whose pool is gone goes there when released.
// The allocator and the per-device contexts are never destroyed (their memory and handles live until
// the process ends): destroying them from static destructors would race the CUDA runtime's teardown.
#include "kernels/cuda/context.h"

#include <cublas_v2.h>
#include <cudnn.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "kernels/cuda/check.h"

namespace kernels::cuda {

namespace detail {

void throw_cuda_error(cudaError_t status, const char* expression, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so that later calls do not report it again
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": CUDA error " +
                           cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ") in " +
                           expression);
}

void throw_error(const char* message, const char* file, int line) {
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + message);
}

}  // namespace detail

// This file's helpers and the backend's shared ones (kernels/cuda/internal.h).
using namespace detail;  // NOLINT(google-build-using-namespace)

namespace detail {
namespace {

constexpr int kMaxDevices = 64;

int current_device() {
  int device = 0;
  CHECK_CUDA(cudaGetDevice(&device));
  if (device < 0 || device >= kMaxDevices)
    detail::throw_error("CUDA device index out of range for the kernels' context", __FILE__, __LINE__);
  return device;
}

std::string cublas_status_text(cublasStatus_t status) {
  return std::string(cublasGetStatusName(status)) + " (" + cublasGetStatusString(status) + ")";
}

#define CHECK_CUBLAS_HERE(expr)                                                                  \
  do {                                                                                           \
    const cublasStatus_t status_ = (expr);                                                       \
    if (status_ != CUBLAS_STATUS_SUCCESS)                                                        \
      detail::throw_error(("cuBLAS error " + cublas_status_text(status_) + " in " #expr).c_str(), \
                          __FILE__, __LINE__);                                                   \
  } while (0)

// ---------------------------------------------------------------------------------------------------
// Caching allocator

constexpr size_t kSmallLimit = size_t(1) << 20;  // blocks up to 1 MiB are "small"
constexpr size_t kSmallGranule = 512;
constexpr size_t kLargeGranule = size_t(2) << 20;

// The size class of a request; 0 when rounding would overflow (the request cannot be met anyway).
size_t size_class(size_t bytes) {
  const size_t granule = bytes <= kSmallLimit ? kSmallGranule : kLargeGranule;
  if (bytes > SIZE_MAX - granule) return 0;
  return (bytes + granule - 1) / granule * granule;
}

// Largest cached block handed out for a request of size class `rounded` (bounded waste).
size_t largest_acceptable(size_t rounded) {
  if (rounded <= kSmallLimit) return std::min(kSmallLimit, 2 * rounded);
  return rounded + rounded / 4 + kLargeGranule;
}

std::string mib(size_t bytes) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.1f MiB", double(bytes) / double(1 << 20));
  return text;
}

struct Block {
  size_t size = 0;
  size_t requested = 0;  // the request, rounded up to kSmallGranule
  int device = 0;
  int pool = 0;  // the graph pool it belongs to; 0: the device's cache
};

// A graph's private blocks (see the top): those free now, by size.
struct GraphPool {
  int device = 0;
  std::multimap<size_t, void*> free;
};

// Takes the smallest block of `free_list` that fits the size class `rounded` with bounded waste; false
// when none does.
bool take_fitting(std::multimap<size_t, void*>& free_list, size_t rounded, void** ptr, size_t* size) {
  const auto it = free_list.lower_bound(rounded);
  if (it == free_list.end() || it->first > largest_acceptable(rounded) ||
      (rounded <= kSmallLimit) != (it->first <= kSmallLimit))
    return false;
  *ptr = it->second;
  *size = it->first;
  free_list.erase(it);
  return true;
}

class CachingAllocator {
 public:
  void* allocate(size_t bytes, const char* what) {
    if (bytes == 0) return nullptr;
    const int device = current_device();
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t rounded = size_class(bytes);
    if (rounded == 0) throw_out_of_memory(bytes, what, device, cudaErrorMemoryAllocation);
    const size_t requested = (bytes + kSmallGranule - 1) / kSmallGranule * kSmallGranule;  // <= rounded

    // Smallest free block that fits the size class with bounded waste: while a capture is open on this
    // device, the graph pool's first, then the device's (the pool takes it over).
    const int pool = capturing_pool(device);
    void* ptr = nullptr;
    size_t size = 0;
    if ((pool != 0 && take_fitting(pools_.at(pool).free, rounded, &ptr, &size)) ||
        take_fitting(free_[device], rounded, &ptr, &size)) {
      hand_out(ptr, size, requested, device, pool);
      return ptr;
    }

    cudaError_t status;
    if (pool != 0) {  // capturing: cudaMalloc is not stream work; relax this thread's mode around it
      cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
      cudaThreadExchangeStreamCaptureMode(&mode);
      status = cudaMalloc(&ptr, rounded);
      cudaThreadExchangeStreamCaptureMode(&mode);
      // No retry: emptying the cache (cudaFree) is illegal while capturing.
    } else if ((status = cudaMalloc(&ptr, rounded)) != cudaSuccess) {
      cudaGetLastError();  // an allocation failure is not sticky; clear it
      release_free_blocks(device);
      status = cudaMalloc(&ptr, rounded);
    }
    if (status != cudaSuccess) {
      cudaGetLastError();
      throw_out_of_memory(bytes, what, device, status);
    }
    ++stats_.device_mallocs;
    stats_.cached += rounded;
    hand_out(ptr, rounded, requested, device, pool);
    return ptr;
  }

  void release(void* ptr) {
    if (ptr == nullptr) return;
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = in_use_.find(ptr);
    if (it == in_use_.end())
      throw std::invalid_argument(
          "kernels::cuda::release: pointer was not returned by kernels::cuda::allocate (or was "
          "released twice)");
    const Block block = it->second;
    in_use_.erase(it);
    stats_.in_use -= block.size;
    stats_.requested_in_use -= block.requested;
    // While capturing, a block of no live graph released on the device joins the capturing graph's pool:
    // the graph may use it. A block of another live graph's pool stays there: that graph's replays still
    // write to it, so it must not be handed to this one.
    const int capturing = capturing_pool(block.device);
    const bool owned_by_live_graph = block.pool != 0 && pools_.count(block.pool) != 0;
    const int pool = owned_by_live_graph ? block.pool : (capturing != 0 ? capturing : block.pool);
    const auto owner = pools_.find(pool);
    if (owner != pools_.end()) {
      owner->second.free.emplace(block.size, ptr);
    } else {
      free_[block.device].emplace(block.size, ptr);
    }
  }

  // Graph pools (context.h: CUDA graphs). open_pool starts routing the device's allocations to a new pool
  // (one capture at a time), close_pool stops it, retire_pool gives the pool's free blocks to the
  // device's cache and forgets the pool.
  int open_pool(int device) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (open_pool_ != 0)
      throw std::runtime_error("kernels::cuda::begin_graph_capture: a capture is open already (one at a time)");
    const int id = next_pool_++;
    pools_[id].device = device;
    open_pool_ = id;
    return id;
  }
  void close_pool(int id) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (open_pool_ == id) open_pool_ = 0;
  }
  void retire_pool(int id) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (open_pool_ == id) open_pool_ = 0;
    const auto it = pools_.find(id);
    if (it == pools_.end()) return;
    for (const auto& [size, ptr] : it->second.free) free_[it->second.device].emplace(size, ptr);
    pools_.erase(it);
  }
  bool capture_open() {
    std::lock_guard<std::mutex> lock(mutex_);
    return open_pool_ != 0;
  }

  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_in_use = stats_.in_use;
    stats_.peak_requested = stats_.requested_in_use;
  }

  void empty() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (int device = 0; device < kMaxDevices; ++device) release_free_blocks(device);
  }

 private:
  // The open pool when a capture is open on `device`, else 0. Caller holds the mutex.
  int capturing_pool(int device) const {
    if (open_pool_ == 0) return 0;
    return pools_.at(open_pool_).device == device ? open_pool_ : 0;
  }

  void hand_out(void* ptr, size_t size, size_t requested, int device, int pool) {
    in_use_[ptr] = Block{size, requested, device, pool};
    stats_.in_use += size;
    stats_.peak_in_use = std::max(stats_.peak_in_use, stats_.in_use);
    stats_.requested_in_use += requested;
    stats_.peak_requested = std::max(stats_.peak_requested, stats_.requested_in_use);
  }

  // Returns the device's free blocks to the driver (cudaFree waits for the device first, so no queued
  // kernel still uses them). Caller holds the mutex.
  void release_free_blocks(int device) {
    auto& free_list = free_[device];
    if (free_list.empty()) return;
    int previous = 0;
    CHECK_CUDA(cudaGetDevice(&previous));
    if (previous != device) CHECK_CUDA(cudaSetDevice(device));
    for (const auto& [size, ptr] : free_list) {
      CHECK_CUDA(cudaFree(ptr));
      stats_.cached -= size;
    }
    free_list.clear();
    if (previous != device) CHECK_CUDA(cudaSetDevice(previous));
  }

  [[noreturn]] void throw_out_of_memory(size_t bytes, const char* what, int device,
                                        cudaError_t status) {
    size_t device_free = 0, device_total = 0;
    const bool have_info = cudaMemGetInfo(&device_free, &device_total) == cudaSuccess;
    cudaGetLastError();
    std::string message = "CUDA out of memory: could not allocate " + std::to_string(bytes) +
                          " bytes (" + mib(bytes) + ") for " +
                          (what && *what ? std::string(what) : std::string("an unnamed buffer")) +
                          " on cuda:" + std::to_string(device) + " (" + cudaGetErrorString(status) +
                          "). The caching allocator has " + mib(stats_.in_use) + " in use and " +
                          mib(stats_.cached) + " cached";
    if (have_info)
      message += "; the device has " + mib(device_free) + " free of " + mib(device_total);
    message += ". Try a smaller --batch-size.";
    throw OutOfMemory(message);
  }

  std::mutex mutex_;
  std::unordered_map<void*, Block> in_use_;
  std::multimap<size_t, void*> free_[kMaxDevices];
  std::unordered_map<int, GraphPool> pools_;
  int open_pool_ = 0;  // the pool of the open capture; 0: none
  int next_pool_ = 1;
  MemoryStats stats_;
};

CachingAllocator& allocator() {
  static CachingAllocator* instance = new CachingAllocator();  // never destroyed (see the top)
  return *instance;
}

// ---------------------------------------------------------------------------------------------------
// Per-device stream and handles

struct DeviceContext {
  std::once_flag stream_once, cublas_once, cudnn_once, properties_once;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  void* cublas_workspace = nullptr;  // cublasSetWorkspace's (see cublas_handle)
  cudnnHandle_t cudnn = nullptr;
  int multiprocessors = 0;
};

DeviceContext& device_context(int device) {
  static DeviceContext* contexts = new DeviceContext[kMaxDevices];  // never destroyed
  return contexts[device];
}

std::atomic<bool> g_allow_tf32{true};
std::atomic<bool> g_deterministic{false};
std::atomic<size_t> g_conv_workspace_limit{size_t(1) << 30};

// The convolution algorithm search, starting from ENGINE_CONV_ALGO_SEARCH (timed when unset).
std::atomic<ConvAlgoSearch>& conv_algo_search_setting() {
  static std::atomic<ConvAlgoSearch> setting{[] {
    const char* value = std::getenv("ENGINE_CONV_ALGO_SEARCH");
    if (value == nullptr || *value == '\0' || std::strcmp(value, "timed") == 0) return ConvAlgoSearch::timed;
    if (std::strcmp(value, "heuristic") == 0) return ConvAlgoSearch::heuristic;
    throw std::invalid_argument(std::string("ENGINE_CONV_ALGO_SEARCH=") + value +
                                ": expected 'timed' or 'heuristic' (or leave it unset for timed)");
  }()};
  return setting;
}

}  // namespace
}  // namespace detail

// ---------------------------------------------------------------------------------------------------

void* allocate(size_t bytes, const char* what) { return allocator().allocate(bytes, what); }
void release(void* ptr) { allocator().release(ptr); }
MemoryStats memory_stats() { return allocator().stats(); }
void reset_peak_memory() { allocator().reset_peak(); }
void empty_cache() { allocator().empty(); }

void* current_stream() {
  DeviceContext& context = device_context(current_device());
  std::call_once(context.stream_once, [&context] {
    CHECK_CUDA(cudaStreamCreateWithFlags(&context.stream, cudaStreamNonBlocking));
  });
  return context.stream;
}

void* cublas_handle() {
  const int device = current_device();
  cudaStream_t stream = static_cast<cudaStream_t>(current_stream());
  DeviceContext& context = device_context(device);
  std::call_once(context.cublas_once, [&context, stream, device] {
    cublasHandle_t handle = nullptr;
    CHECK_CUBLAS_HERE(cublasCreate(&handle));
    CHECK_CUBLAS_HERE(cublasSetStream(handle, stream));
    // A fixed workspace of our own, so that cuBLAS allocates nothing inside a CUDA graph capture and every
    // GEMM, captured or not, sees the same one: 32 MiB on sm_90 and later, 4 MiB before (cuBLAS's
    // recommendation for cublasSetWorkspace). Never freed, like the handle.
    int major = 0;
    CHECK_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    const size_t workspace_bytes = (major >= 9 ? size_t(32) : size_t(4)) << 20;
    CHECK_CUDA(cudaMalloc(&context.cublas_workspace, workspace_bytes));
    CHECK_CUBLAS_HERE(cublasSetWorkspace(handle, context.cublas_workspace, workspace_bytes));
    context.cublas = handle;
  });
  return context.cublas;
}

void* cudnn_handle() {
  const int device = current_device();
  cudaStream_t stream = static_cast<cudaStream_t>(current_stream());
  DeviceContext& context = device_context(device);
  std::call_once(context.cudnn_once, [&context, stream] {
    cudnnHandle_t handle = nullptr;
    const cudnnStatus_t status = cudnnCreate(&handle);
    if (status != CUDNN_STATUS_SUCCESS) {
      const std::string message =
          std::string("cuDNN error ") + cudnnGetErrorString(status) +
          " in cudnnCreate(&handle): is cuDNN 9 (libcudnn.so.9 and its sub-libraries "
          "libcudnn_cnn.so.9, libcudnn_engines_*.so.9) on the library path (LD_LIBRARY_PATH)?";
      detail::throw_error(message.c_str(), __FILE__, __LINE__);
    }
    const cudnnStatus_t set = cudnnSetStream(handle, stream);
    if (set != CUDNN_STATUS_SUCCESS) {
      const std::string message =
          std::string("cuDNN error ") + cudnnGetErrorString(set) + " in cudnnSetStream(handle, stream)";
      detail::throw_error(message.c_str(), __FILE__, __LINE__);
    }
    context.cudnn = handle;
  });
  return context.cudnn;
}

void stream_synchronize() { CHECK_CUDA(cudaStreamSynchronize(detail::stream())); }

void set_allow_tf32(bool allow) { g_allow_tf32 = allow; }
bool allow_tf32() { return g_allow_tf32; }
void set_deterministic(bool deterministic) { g_deterministic = deterministic; }
bool deterministic() { return g_deterministic; }
void set_conv_workspace_limit(size_t bytes) { g_conv_workspace_limit = bytes; }
size_t conv_workspace_limit() { return g_conv_workspace_limit; }
void set_conv_algo_search(ConvAlgoSearch search) { conv_algo_search_setting() = search; }
ConvAlgoSearch conv_algo_search() { return conv_algo_search_setting(); }
const char* conv_algo_search_name(ConvAlgoSearch search) {
  return search == ConvAlgoSearch::timed ? "timed" : "heuristic";
}

bool sync_after_every_launch() {
  static const bool enabled = [] {
    const char* value = std::getenv("ENGINE_CUDA_SYNC");
    return value != nullptr && *value != '\0' && std::strcmp(value, "0") != 0;
  }();
  // A synchronisation is illegal while a graph records (context.h: CUDA graphs).
  return enabled && !graph_capture_open();
}

void check_launch(const char* kernel, const char* file, int line) {
  const cudaError_t launch = cudaGetLastError();
  if (launch != cudaSuccess) {
    const std::string message = std::string("kernel ") + kernel + " failed to launch: CUDA error " +
                                cudaGetErrorName(launch) + " (" + cudaGetErrorString(launch) + ")";
    detail::throw_error(message.c_str(), file, line);
  }
  if (!sync_after_every_launch()) return;
  const cudaError_t run = cudaStreamSynchronize(detail::stream());
  if (run != cudaSuccess) {
    cudaGetLastError();
    const std::string message = std::string("kernel ") + kernel + " failed: CUDA error " +
                                cudaGetErrorName(run) + " (" + cudaGetErrorString(run) +
                                ") (ENGINE_CUDA_SYNC=1 synchronises after every launch, so this "
                                "kernel is the one that faulted)";
    detail::throw_error(message.c_str(), file, line);
  }
}

// ---------------------------------------------------------------------------------------------------
// CUDA graphs (context.h)

struct Graph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  int pool = 0;
  int device = 0;
};

namespace detail {
namespace {

struct OpenCapture {
  int pool = 0;  // 0: none open
  int device = 0;
  cudaStream_t stream = nullptr;
};
OpenCapture g_capture;  // guarded by g_capture_mutex
std::mutex g_capture_mutex;

std::string cuda_reason(cudaError_t status) {
  return std::string(cudaGetErrorName(status)) + " (" + cudaGetErrorString(status) + ")";
}

// Ends the open capture, if any, discarding what it recorded; returns what it was (pool 0: none).
OpenCapture close_capture(cudaGraph_t* recorded, cudaError_t* status) {
  std::lock_guard<std::mutex> lock(g_capture_mutex);
  const OpenCapture capture = g_capture;
  g_capture = OpenCapture();
  if (capture.pool == 0) return capture;
  *status = cudaStreamEndCapture(capture.stream, recorded);
  allocator().close_pool(capture.pool);
  return capture;
}

}  // namespace
}  // namespace detail

void begin_graph_capture() {
  const int device = current_device();
  cudaStream_t stream = static_cast<cudaStream_t>(current_stream());
  // The libraries' handles (and cuBLAS's fixed workspace) made now, not by a first use inside the capture,
  // where their creation's plain allocations and synchronisations would invalidate it.
  (void)cublas_handle();
  (void)cudnn_handle();
  std::lock_guard<std::mutex> lock(g_capture_mutex);
  const int pool = allocator().open_pool(device);  // throws when one is open
  const cudaError_t status = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  if (status != cudaSuccess) {
    cudaGetLastError();
    allocator().retire_pool(pool);
    throw std::runtime_error("cudaStreamBeginCapture failed: " + cuda_reason(status));
  }
  g_capture = OpenCapture{pool, device, stream};
}

Graph* end_graph_capture() {
  cudaGraph_t recorded = nullptr;
  cudaError_t status = cudaSuccess;
  const OpenCapture capture = close_capture(&recorded, &status);
  if (capture.pool == 0) throw std::runtime_error("kernels::cuda::end_graph_capture: no capture is open");
  const auto fail = [&](const std::string& what) {
    cudaGetLastError();  // the capture's errors are not sticky; clear them for later calls
    if (recorded != nullptr) cudaGraphDestroy(recorded);
    allocator().retire_pool(capture.pool);
    throw std::runtime_error(what + ": " + cuda_reason(status));
  };
  if (status != cudaSuccess || recorded == nullptr) fail("CUDA graph capture failed (cudaStreamEndCapture)");
  cudaGraphExec_t exec = nullptr;
  status = cudaGraphInstantiate(&exec, recorded, 0);
  if (status != cudaSuccess) fail("CUDA graph instantiation failed (cudaGraphInstantiate)");
  return new Graph{recorded, exec, capture.pool, capture.device};
}

void abort_graph_capture() noexcept {
  cudaGraph_t recorded = nullptr;
  cudaError_t status = cudaSuccess;
  const OpenCapture capture = close_capture(&recorded, &status);
  if (capture.pool == 0) return;
  if (recorded != nullptr) cudaGraphDestroy(recorded);
  cudaGetLastError();
  allocator().retire_pool(capture.pool);
}

void launch_graph(Graph* graph) {
  if (graph == nullptr) detail::throw_error("launch_graph: no graph", __FILE__, __LINE__);
  if (current_device() != graph->device)
    detail::throw_error("launch_graph: the graph was captured on another device", __FILE__, __LINE__);
  CHECK_CUDA(cudaGraphLaunch(graph->exec, static_cast<cudaStream_t>(current_stream())));
  if (sync_after_every_launch()) stream_synchronize();
}

void destroy_graph(Graph* graph) {
  if (graph == nullptr) return;
  // An executable graph still running is freed when it completes; work queued after it on the stream
  // may reuse the pool's blocks.
  cudaGraphExecDestroy(graph->exec);
  cudaGraphDestroy(graph->graph);
  allocator().retire_pool(graph->pool);
  delete graph;
}

bool graph_capture_open() { return allocator().capture_open(); }

namespace detail {

int multiprocessor_count() {
  const int device = current_device();
  DeviceContext& context = device_context(device);
  std::call_once(context.properties_once, [&context, device] {
    CHECK_CUDA(cudaDeviceGetAttribute(&context.multiprocessors, cudaDevAttrMultiProcessorCount,
                                      device));
  });
  return context.multiprocessors;
}

unsigned grid_size(int64_t work, int threads) {
  if (work <= 0) return 1;
  const int64_t needed = (work + threads - 1) / threads;
  const int64_t waves = int64_t(multiprocessor_count()) * 8;  // 8 blocks of 256 threads per SM
  return unsigned(std::max<int64_t>(1, std::min(needed, waves)));
}

}  // namespace detail

}  // namespace kernels::cuda
