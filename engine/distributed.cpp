// The process group (see distributed.h): MPI when built with it and launched by an MPI launcher, else a
// group of one whose collectives do nothing.
#include "engine/distributed.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "engine/backend.h"
#include "engine/check.h"
#include "engine/runtime.h"
#include "engine/tensor.h"

#ifdef ENGINE_WITH_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif
#ifdef ENGINE_WITH_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include "kernels/cuda/context.h"
#endif

namespace engine {

namespace {
const char* env(const char* name) {
  const char* value = std::getenv(name);
  return value && *value ? value : nullptr;
}

#ifdef ENGINE_WITH_MPI
void mpi_check(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  ENGINE_FAIL() << what << " failed: " << std::string(text, static_cast<size_t>(length));
}

void finalize_mpi() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

// In place over `comm`; MPI counts are int, so large buffers go in pieces.
void mpi_allreduce(void* data, int64_t n, MPI_Datatype type, int type_size, MPI_Op op, MPI_Comm comm) {
  for (int64_t at = 0; at < n; at += INT32_MAX / 2) {
    const int count = static_cast<int>(std::min<int64_t>(n - at, INT32_MAX / 2));
    mpi_check(MPI_Allreduce(MPI_IN_PLACE, static_cast<char*>(data) + at * type_size, count, type, op, comm),
              "MPI_Allreduce");
  }
}
#endif

#ifdef ENGINE_WITH_NCCL
void nccl_check(ncclResult_t code, const char* what) {
  ENGINE_CHECK(code == ncclSuccess) << what << " failed: " << ncclGetErrorString(code);
}
void cuda_check(cudaError_t code, const char* what) {
  ENGINE_CHECK(code == cudaSuccess) << what << " failed: " << cudaGetErrorString(code);
}
#endif
}  // namespace

// The started sums: on the CPU their requests, on a communicator of their own (so that the blocking
// collectives of the same step, --sync-bn's, never wait behind them); on a device the communication
// stream, which every device collective shares (see distributed.h), and its two events.
struct Distributed::Started {
#ifdef ENGINE_WITH_MPI
  MPI_Comm gradients = MPI_COMM_NULL;
  std::vector<MPI_Request> requests;
#endif
#ifdef ENGINE_WITH_NCCL
  cudaStream_t stream = nullptr;
  cudaEvent_t queued = nullptr, reduced = nullptr;
  bool device_pending = false;
#endif
};

bool launched_by_mpi() {
  return env("OMPI_COMM_WORLD_SIZE") || env("PMI_SIZE") || env("PMIX_RANK") || env("MPI_LOCALNRANKS");
}

bool Distributed::built_with_mpi() {
#ifdef ENGINE_WITH_MPI
  return true;
#else
  return false;
#endif
}

bool Distributed::built_with_nccl() {
#ifdef ENGINE_WITH_NCCL
  return true;
#else
  return false;
#endif
}

Distributed& Distributed::world() {
  static Distributed group;
  return group;
}

Distributed::Distributed() : started_state_(std::make_unique<Started>()) {
#ifdef ENGINE_WITH_MPI
  if (!launched_by_mpi()) return;
  int provided = 0;
  // FUNNELED: only the main thread calls MPI (the loader's threads never do).
  mpi_check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  mpi_ = true;
  std::atexit(finalize_mpi);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  // The rank among the processes that share this node's memory: the GPU this process takes.
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &local_rank_);
  MPI_Comm_free(&node);
#else
  if (launched_by_mpi() && env("OMPI_COMM_WORLD_SIZE") && std::atoi(env("OMPI_COMM_WORLD_SIZE")) > 1)
    std::fprintf(stderr, "warning: started by an MPI launcher, but this build has no MPI: every process trains "
                         "alone (install libopenmpi-dev and rebuild)\n");
#endif
}

Distributed::~Distributed() {
#ifdef ENGINE_WITH_NCCL
  if (nccl_) ncclCommDestroy(static_cast<ncclComm_t>(nccl_));
  // The stream and events are left to the process's end (the CUDA runtime may be torn down already).
#endif
#ifdef ENGINE_WITH_MPI
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && started_state_->gradients != MPI_COMM_NULL) MPI_Comm_free(&started_state_->gradients);
#endif
}

std::string Distributed::name() const {
  return "rank " + std::to_string(rank_) + " of " + std::to_string(size_);
}

void Distributed::allreduce_sum(float* data, int64_t n) {
  if (!mpi_ || size_ == 1 || n == 0) return;
#ifdef ENGINE_WITH_MPI
  mpi_allreduce(data, n, MPI_FLOAT, sizeof(float), MPI_SUM, MPI_COMM_WORLD);
#else
  (void)data;
#endif
}

void Distributed::allreduce_sum(double* data, int64_t n) {
  if (!mpi_ || size_ == 1 || n == 0) return;
#ifdef ENGINE_WITH_MPI
  mpi_allreduce(data, n, MPI_DOUBLE, sizeof(double), MPI_SUM, MPI_COMM_WORLD);
#else
  (void)data;
#endif
}

bool Distributed::device_collectives_active() const {
#ifdef ENGINE_WITH_NCCL
  return (mpi_ && size_ > 1) || device_collectives_in_one_process_;
#else
  return false;
#endif
}

void Distributed::allreduce_sum(const Tensor& tensor) {
  if (size_ == 1 && !(tensor.device().is_cuda() && device_collectives_active())) return;  // a sum of one
  ENGINE_CHECK(tensor.is_contiguous()) << "allreduce_sum: the tensor must be contiguous, got " << tensor.str();
  if (tensor.device().is_cuda()) {
    allreduce_on_device(tensor, /*maximum=*/false);
    return;
  }
  allreduce_sum(tensor.data(), tensor.numel());
}

void Distributed::allreduce_sum(double* data, int64_t n, Device where) {
  if (n <= 0) return;
  if (where.is_cpu()) {
    allreduce_sum(data, n);
    return;
  }
#ifdef ENGINE_WITH_NCCL
  if (device_collectives_active()) {
    nccl_allreduce_in_place(data, n, /*in_double=*/true, /*maximum=*/false);
    kernels_wait_for_communication();
    return;
  }
#endif
  if (!mpi_ || size_ == 1) return;  // a sum of one
  const DeviceBackend& backend = backend_for(where);
  std::vector<double> host(static_cast<size_t>(n));
  backend.copy_to_host(host.data(), data, host.size() * sizeof(double));  // waits for the values' kernels
  allreduce_sum(host.data(), n);
  backend.copy_from_host(data, host.data(), host.size() * sizeof(double));
}

void Distributed::allreduce_max(const Tensor& tensor) {
  if (size_ == 1 && !(tensor.device().is_cuda() && device_collectives_active())) return;  // a maximum of one
  ENGINE_CHECK(tensor.is_contiguous() && tensor.dtype() == DType::f32)
      << "allreduce_max: the tensor must be contiguous f32, got " << tensor.str();
  if (tensor.device().is_cuda()) {
    allreduce_on_device(tensor, /*maximum=*/true);
    return;
  }
  if (!mpi_ || tensor.numel() == 0) return;
#ifdef ENGINE_WITH_MPI
  mpi_allreduce(tensor.data(), tensor.numel(), MPI_FLOAT, sizeof(float), MPI_MAX, MPI_COMM_WORLD);
#endif
}

void* Distributed::nccl_communicator() {
#ifdef ENGINE_WITH_NCCL
  if (nccl_) return nccl_;
  ncclComm_t comm = nullptr;
  if (mpi_ && size_ > 1) {
    // One NCCL communicator over the MPI group: rank 0 makes the id, MPI hands it to the others.
    ncclUniqueId id;
    if (rank_ == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
#ifdef ENGINE_WITH_MPI
    mpi_check(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast");
#endif
    nccl_check(ncclCommInitRank(&comm, size_, id, rank_), "ncclCommInitRank");
  } else {
    // A group of one (set_device_collectives_in_one_process): a one-rank communicator on this device.
    int device = 0;
    cuda_check(cudaGetDevice(&device), "cudaGetDevice");
    nccl_check(ncclCommInitAll(&comm, 1, &device), "ncclCommInitAll");
  }
  nccl_ = comm;
#endif
  return nccl_;
}

#ifdef ENGINE_WITH_NCCL
void Distributed::nccl_allreduce_in_place(void* data, int64_t n, bool in_double, bool maximum) {
  const auto comm = static_cast<ncclComm_t>(nccl_communicator());
  const auto stream = static_cast<cudaStream_t>(communication_stream_after_kernels());
  const ncclDataType_t type = in_double ? ncclDouble : ncclFloat;
  ncclRedOp_t op = maximum ? ncclMax : ncclSum;
  // The test scale of a group of one (set_one_process_sum_scale), of the data's type.
  const bool scaled = !maximum && size_ == 1 && one_process_sum_scale_ != 1.0;
  double scale_double = one_process_sum_scale_;
  float scale_float = static_cast<float>(one_process_sum_scale_);
  if (scaled)
    nccl_check(ncclRedOpCreatePreMulSum(&op, in_double ? static_cast<void*>(&scale_double) : &scale_float, type,
                                        ncclScalarHostImmediate, comm),
               "ncclRedOpCreatePreMulSum");
  const ncclResult_t result = ncclAllReduce(data, data, static_cast<size_t>(n), type, op, comm, stream);
  if (scaled) ncclRedOpDestroy(op, comm);  // allowed once the call that uses it has returned
  nccl_check(result, "ncclAllReduce");
}
#endif

void* Distributed::communication_stream_after_kernels() {
#ifdef ENGINE_WITH_NCCL
  Started& state = *started_state_;
  if (!state.stream) {
    cuda_check(cudaStreamCreateWithFlags(&state.stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    cuda_check(cudaEventCreateWithFlags(&state.queued, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    cuda_check(cudaEventCreateWithFlags(&state.reduced, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  }
  const auto kernels_stream = static_cast<cudaStream_t>(kernels::cuda::current_stream());
  cuda_check(cudaEventRecord(state.queued, kernels_stream), "cudaEventRecord");
  cuda_check(cudaStreamWaitEvent(state.stream, state.queued, 0), "cudaStreamWaitEvent");
  return state.stream;
#else
  return nullptr;
#endif
}

void Distributed::kernels_wait_for_communication() {
#ifdef ENGINE_WITH_NCCL
  Started& state = *started_state_;
  cuda_check(cudaEventRecord(state.reduced, state.stream), "cudaEventRecord");
  cuda_check(cudaStreamWaitEvent(static_cast<cudaStream_t>(kernels::cuda::current_stream()), state.reduced, 0),
             "cudaStreamWaitEvent");
#endif
}

void Distributed::allreduce_on_device(const Tensor& tensor, bool maximum) {
#ifdef ENGINE_WITH_NCCL
  if (device_collectives_active()) {
    // Ordered after the work that made the values, before their readers; no host wait.
    nccl_allreduce_in_place(tensor.data(), tensor.numel(), /*in_double=*/false, maximum);
    kernels_wait_for_communication();
    return;
  }
#endif
  // Without NCCL: through the host.
  const Tensor host = tensor.to(Device::cpu());
  if (maximum)
    allreduce_max(host);
  else
    allreduce_sum(host.data(), host.numel());
  tensor.copy_from(host);
}

void Distributed::start_allreduce_sum(const Tensor& tensor) {
  ENGINE_CHECK(tensor.is_contiguous() && tensor.dtype() == DType::f32)
      << "start_allreduce_sum: the tensor must be contiguous f32, got " << tensor.str();
  if (tensor.numel() == 0) return;
  Started& state = *started_state_;
  (void)state;  // a build without MPI and NCCL starts nothing
  if (tensor.device().is_cuda()) {
    if (!device_collectives_active()) {
      if (size_ == 1) return;
      allreduce_on_device(tensor, /*maximum=*/false);  // through the host, at once
      ++started_;
      return;
    }
#ifdef ENGINE_WITH_NCCL
    // After what the kernels' stream has queued so far (the slice's last accumulation); the sum runs while
    // backward goes on on the kernels' stream.
    nccl_allreduce_in_place(tensor.data(), tensor.numel(), /*in_double=*/false, /*maximum=*/false);
    state.device_pending = true;
    ++started_;
#endif
    return;
  }
  if (!mpi_ || size_ == 1) return;
#ifdef ENGINE_WITH_MPI
  if (state.gradients == MPI_COMM_NULL) mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &state.gradients), "MPI_Comm_dup");
  const int64_t n = tensor.numel();
  for (int64_t at = 0; at < n; at += INT32_MAX / 2) {
    const int count = static_cast<int>(std::min<int64_t>(n - at, INT32_MAX / 2));
    MPI_Request request;
    mpi_check(MPI_Iallreduce(MPI_IN_PLACE, tensor.data() + at, count, MPI_FLOAT, MPI_SUM, state.gradients, &request),
              "MPI_Iallreduce");
    state.requests.push_back(request);
  }
  ++started_;
#endif
}

void Distributed::progress_allreduces() {
#ifdef ENGINE_WITH_MPI
  std::vector<MPI_Request>& requests = started_state_->requests;
  if (requests.empty()) return;
  int done = 0;
  mpi_check(MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
  if (done) requests.clear();
#endif
}

void Distributed::wait_allreduces() {
  Started& state = *started_state_;
  (void)state;
#ifdef ENGINE_WITH_MPI
  if (!state.requests.empty()) {
    mpi_check(MPI_Waitall(static_cast<int>(state.requests.size()), state.requests.data(), MPI_STATUSES_IGNORE),
              "MPI_Waitall");
    state.requests.clear();
  }
#endif
#ifdef ENGINE_WITH_NCCL
  if (state.device_pending) {
    // The kernels' stream (the optimizer's update next) waits for the sums: ordered on the device only.
    kernels_wait_for_communication();
    state.device_pending = false;
  }
#endif
}

void Distributed::broadcast(float* data, int64_t n, int root) {
  if (!mpi_ || size_ == 1 || n == 0) return;
#ifdef ENGINE_WITH_MPI
  mpi_check(MPI_Bcast(data, static_cast<int>(n), MPI_FLOAT, root, MPI_COMM_WORLD), "MPI_Bcast");
#else
  (void)data;
  (void)root;
#endif
}

void Distributed::broadcast(double* data, int64_t n, int root) {
  if (!mpi_ || size_ == 1 || n == 0) return;
#ifdef ENGINE_WITH_MPI
  mpi_check(MPI_Bcast(data, static_cast<int>(n), MPI_DOUBLE, root, MPI_COMM_WORLD), "MPI_Bcast");
#else
  (void)data;
  (void)root;
#endif
}

std::vector<double> Distributed::allgather(const std::vector<double>& local) {
  if (!mpi_ || size_ == 1) return local;
  std::vector<double> all;
#ifdef ENGINE_WITH_MPI
  const int count = static_cast<int>(local.size());
  std::vector<int> counts(static_cast<size_t>(size_)), offsets(static_cast<size_t>(size_));
  mpi_check(MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather");
  int total = 0;
  for (int r = 0; r < size_; ++r) {
    offsets[static_cast<size_t>(r)] = total;
    total += counts[static_cast<size_t>(r)];
  }
  all.resize(static_cast<size_t>(total));
  mpi_check(MPI_Allgatherv(local.data(), count, MPI_DOUBLE, all.data(), counts.data(), offsets.data(), MPI_DOUBLE,
                           MPI_COMM_WORLD),
            "MPI_Allgatherv");
#endif
  return all;
}

void Distributed::barrier() {
  if (!mpi_ || size_ == 1) return;
#ifdef ENGINE_WITH_MPI
  mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
#endif
}

void Distributed::abort(int exit_status) {
  std::fflush(stdout);
  std::fflush(stderr);
#ifdef ENGINE_WITH_MPI
  if (mpi_ && size_ > 1) MPI_Abort(MPI_COMM_WORLD, exit_status);
#endif
  std::_Exit(exit_status);
}

}  // namespace engine
