// The CUDA context the kernels run in: one stream per device, lazily created cuBLAS and cuDNN handles,
// a caching device allocator, math and determinism switches, and launch checking.
//
// No CUDA types appear here, so engine code compiled by the host compiler includes it freely.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace kernels::cuda {

// --- Caching allocator ------------------------------------------------------------------------------
// Blocks are rounded up (512 B small, 2 MiB large) and kept on free lists when released, so a training
// step, once warm, makes no cudaMalloc/cudaFree calls. When cudaMalloc fails the cache is emptied and
// the allocation retried; if it still fails, OutOfMemory says how much was asked for, what is in use,
// what the device has, and suggests a smaller batch.
struct MemoryStats {
  size_t in_use = 0;       // bytes handed out now (whole blocks: size classes, or larger cached blocks)
  size_t peak_in_use = 0;  // high-water mark since the last reset_peak_memory()
  // The bytes asked for, each request rounded up to 512 B: what PyTorch's caching allocator counts
  // (torch.cuda.max_memory_allocated), for comparing peaks with it. At most in_use.
  size_t requested_in_use = 0;
  size_t peak_requested = 0;
  size_t cached = 0;       // bytes held by the allocator (in use + free lists)
  size_t device_mallocs = 0;  // cudaMalloc calls so far (a warm step adds none)
};
// Thrown by allocate() when the device has no room even after the cache was emptied. The message names
// the allocation (`what`), its size, the allocator's in-use and cached bytes and the device's free and
// total memory, and suggests a smaller --batch-size.
class OutOfMemory : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// allocate(0) returns nullptr. Memory comes from the current device and is ordered on current_stream():
// a block released while kernels on that stream still use it is only handed out again to work queued
// after them on the same stream.
void* allocate(size_t bytes, const char* what = nullptr);  // `what` names the allocation in errors
// release(nullptr) does nothing; a pointer that allocate() did not return throws std::invalid_argument.
void release(void* ptr);
MemoryStats memory_stats();
void reset_peak_memory();
void empty_cache();  // returns free blocks to the driver

// --- Stream, handles ----------------------------------------------------------------------------------
void* current_stream();   // cudaStream_t of the current device
void* cublas_handle();    // cublasHandle_t, bound to current_stream()
void* cudnn_handle();     // cudnnHandle_t, bound to current_stream()
void stream_synchronize();

// --- Switches -------------------------------------------------------------------------------------------
void set_allow_tf32(bool allow);  // TF32 tensor cores for f32 convolutions and GEMMs (default on)
bool allow_tf32();
void set_deterministic(bool deterministic);  // deterministic cuDNN algorithms only (default off)
bool deterministic();
void set_conv_workspace_limit(size_t bytes);  // per convolution call (default 1 GiB)
size_t conv_workspace_limit();
// How a convolution picks its cuDNN algorithm, once per shape (kernels/cuda/conv_cudnn.cpp): `timed` (the
// default) runs each candidate that the heuristics offer and the filters allow (determinism, workspace
// limit, TF32 policy) on the first call's inputs and keeps the fastest; `heuristic` takes the heuristics'
// order as it is. The deterministic mode keeps the heuristics' order either way (a timed choice may differ
// from run to run, and with it the bits), and nothing is timed during CUDA graph capture. The environment
// variable ENGINE_CONV_ALGO_SEARCH=timed|heuristic sets the starting value.
enum class ConvAlgoSearch { heuristic, timed };
void set_conv_algo_search(ConvAlgoSearch search);
ConvAlgoSearch conv_algo_search();
const char* conv_algo_search_name(ConvAlgoSearch search);  // "heuristic" or "timed"

// --- Launch checking ------------------------------------------------------------------------------------
// After every kernel launch: cudaGetLastError, and with ENGINE_CUDA_SYNC=1 in the environment also a
// stream synchronisation, so an asynchronous fault is reported at the launch that caused it.
void check_launch(const char* kernel, const char* file, int line);
bool sync_after_every_launch();

// --- CUDA graphs: capture into a private allocator pool --------------------------------------------------
// A graph records the work queued on current_stream() between begin_graph_capture() and
// end_graph_capture() (nothing runs while it records) and launch_graph() replays it: the same kernels, the
// same arguments, the same addresses, one launch. While a capture is open, allocate() and release() on the
// capturing device use a pool owned by the graph: allocate() hands out the pool's own free blocks, then
// blocks of the device's cache (which the pool takes over), then fresh cudaMalloc memory; release() of any
// block returns it to the pool. A block of the pool released after the capture goes back to the pool too.
// So no address the graph's kernels use is handed to anything else while the graph lives. destroy_graph()
// gives the pool's free blocks to the device's cache; its blocks still in use go there when released.
// The capture runs in cudaStreamCaptureModeThreadLocal: a call that is illegal while capturing (a
// synchronisation, a host copy, cudaFree) on the capturing thread makes the capture fail; other threads
// (data loaders allocating pinned memory) are not affected. While capturing, an allocation that does not
// fit is not retried after emptying the cache (cudaFree is illegal then): OutOfMemory, and the capture
// fails. With ENGINE_CUDA_SYNC=1 the per-launch synchronisation is skipped while capturing.
//
//   begin_graph_capture();
//   try { ... queue the work ...; graph = end_graph_capture(); } catch (...) { abort_graph_capture(); throw; }
//   launch_graph(graph); ... launch_graph(graph); destroy_graph(graph);
struct Graph;                         // opaque: the executable graph and its pool
void begin_graph_capture();           // std::runtime_error when a capture is open already or CUDA refuses
// Ends the capture and instantiates the graph. On failure (an illegal call while capturing, instantiation)
// throws std::runtime_error with CUDA's reason; the capture is closed and its pool given back then.
Graph* end_graph_capture();
void abort_graph_capture() noexcept;  // closes an open capture after an exception; no-op when none is open
void launch_graph(Graph* graph);      // on current_stream() of the graph's device
void destroy_graph(Graph* graph);     // nullptr: nothing
bool graph_capture_open();            // begin_graph_capture() without its end yet, on any thread

}  // namespace kernels::cuda

#define KERNELS_CHECK_LAUNCH(name) ::kernels::cuda::check_launch(name, __FILE__, __LINE__)
