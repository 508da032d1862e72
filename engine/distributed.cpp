// The process group (see distributed.h): MPI when built with it and launched by an MPI launcher, else a
// group of one whose collectives do nothing.
#include "engine/distributed.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "engine/check.h"
#include "engine/runtime.h"
#include "engine/tensor.h"

#ifdef ENGINE_WITH_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif
#ifdef ENGINE_WITH_NCCL
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
#endif

#ifdef ENGINE_WITH_NCCL
void nccl_check(ncclResult_t code, const char* what) {
  ENGINE_CHECK(code == ncclSuccess) << what << " failed: " << ncclGetErrorString(code);
}
#endif
}  // namespace

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

Distributed::Distributed() {
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
#endif
}

std::string Distributed::name() const {
  return "rank " + std::to_string(rank_) + " of " + std::to_string(size_);
}

void Distributed::allreduce_sum(float* data, int64_t n) {
  if (!mpi_ || size_ == 1 || n == 0) return;
#ifdef ENGINE_WITH_MPI
  // MPI counts are int: large buffers go in pieces.
  for (int64_t at = 0; at < n; at += INT32_MAX / 2) {
    const int count = static_cast<int>(std::min<int64_t>(n - at, INT32_MAX / 2));
    mpi_check(MPI_Allreduce(MPI_IN_PLACE, data + at, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
  }
#else
  (void)data;
#endif
}

void Distributed::allreduce_sum(double* data, int64_t n) {
  if (!mpi_ || size_ == 1 || n == 0) return;
#ifdef ENGINE_WITH_MPI
  for (int64_t at = 0; at < n; at += INT32_MAX / 2) {
    const int count = static_cast<int>(std::min<int64_t>(n - at, INT32_MAX / 2));
    mpi_check(MPI_Allreduce(MPI_IN_PLACE, data + at, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
  }
#else
  (void)data;
#endif
}

void Distributed::allreduce_sum(const Tensor& tensor) {
  if (size_ == 1) return;
  ENGINE_CHECK(tensor.is_contiguous()) << "allreduce_sum: the tensor must be contiguous, got " << tensor.str();
  if (tensor.device().is_cuda()) {
    allreduce_on_device(tensor);
    return;
  }
  allreduce_sum(tensor.data(), tensor.numel());
}

void Distributed::allreduce_on_device(const Tensor& tensor) {
#ifdef ENGINE_WITH_NCCL
  if (mpi_) {
    if (!nccl_) {
      // One NCCL communicator over the MPI group: rank 0 makes the id, MPI hands it to the others.
      ncclUniqueId id;
      if (rank_ == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
#ifdef ENGINE_WITH_MPI
      mpi_check(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast");
#endif
      ncclComm_t comm = nullptr;
      nccl_check(ncclCommInitRank(&comm, size_, id, rank_), "ncclCommInitRank");
      nccl_ = comm;
    }
    // On the kernels' stream: ordered after backward, before the optimizer's update; no host wait.
    nccl_check(ncclAllReduce(tensor.data(), tensor.data(), static_cast<size_t>(tensor.numel()), ncclFloat, ncclSum,
                             static_cast<ncclComm_t>(nccl_), static_cast<cudaStream_t>(kernels::cuda::current_stream())),
               "ncclAllReduce");
    return;
  }
#endif
  // Without NCCL: through the host.
  const Tensor host = tensor.to(Device::cpu());
  allreduce_sum(host.data(), host.numel());
  tensor.copy_from(host);
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
