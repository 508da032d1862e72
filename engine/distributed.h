// The process group of a data-parallel run: N processes (one per GPU, or per CPU socket), each holding a
// full copy of the model and a 1/N share of every batch. The trainer reaches MPI (and NCCL) only through
// this header.
//
//   Distributed& world = Distributed::world();   // MPI when launched by mpirun / srun, else one process
//   world.allreduce_sum(grads, n);               // every process ends with the sum of every process's grads
//   if (world.is_root()) write_checkpoint(...);  // rank 0 alone writes the run folder
//
// A process counts as launched by an MPI launcher when its environment says so (OMPI_COMM_WORLD_SIZE,
// PMI_SIZE, PMIX_RANK; Slurm's srun sets PMI_SIZE / PMIX_RANK with --mpi=pmi2/pmix); then MPI is
// initialised on first use and finalised at exit. Otherwise, and in a build without MPI, the group is
// this process alone: rank 0 of 1, every collective a no-op (a sum of one is itself), as a trainer ran
// before data parallelism.
//
// A collective is called by every process in the same order, with the same count; a process that stops
// calling them (an exception, a crash) must end the others: abort() prints nothing itself, the caller
// prints its message (naming the rank) first, and MPI_Abort ends every process of the job.
//
// Sums are in the order MPI chooses, identical on every process (Open MPI's reductions give every rank
// the same bits), so processes that start equal stay bit-equal.
//
// GPU gradients: with NCCL (built when nccl.h and libnccl are found: ENGINE_WITH_NCCL), a device buffer is
// all-reduced on the device; without it, it is copied to the host, summed by MPI and copied back. Every
// device collective goes through one NCCL communicator on one communication stream, in the order the host
// issues them (the same on every process), after the work queued so far on the kernels' stream; a plain
// collective (allreduce_sum, allreduce_max) then makes the kernels' stream wait for it (events: no host
// wait). One stream, because an NCCL kernel blocks until its peers join, and operations of two
// communicators in flight at once may deadlock (NCCL's user guide, "Using multiple NCCL communicators
// concurrently"); so a --sync-bn sum queued during backward waits behind the gradient buckets started
// before it, as PyTorch's SyncBatchNorm does behind DDP's buckets on its one process group.
//
// Started sums (the gradient buckets of engine/grad_buckets.h, overlapped with backward):
//   world.start_allreduce_sum(slice);   // CPU: MPI_Iallreduce (in place) on a communicator of their own;
//                                       // CUDA + NCCL: ncclAllReduce on the communication stream
//   world.wait_allreduces();            // CPU: MPI_Waitall; CUDA: the kernels' stream waits for the
//                                       // communication stream (an event: no host wait)
// Every process starts the same slices in the same order.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/dtype.h"

namespace engine {

class Tensor;

class Distributed {
 public:
  // This process's group, made on the first call (MPI_Init when launched by an MPI launcher).
  static Distributed& world();
  // True when this binary was built with MPI (ENGINE_WITH_MPI) / NCCL (ENGINE_WITH_NCCL).
  static bool built_with_mpi();
  static bool built_with_nccl();

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }  // the rank among this node's processes (picks the GPU)
  bool is_root() const { return rank_ == 0; }
  bool distributed() const { return size_ > 1; }
  // "rank 1 of 4": names this process in messages.
  std::string name() const;

  // In place, on every process: data[i] = the sum over processes of data[i].
  void allreduce_sum(float* data, int64_t n);
  void allreduce_sum(double* data, int64_t n);
  // A contiguous f32 tensor on any device, summed in place (NCCL on a CUDA device when built with it).
  void allreduce_sum(const Tensor& tensor);
  // n doubles in `where`'s memory, summed in place: MPI on the host; on a CUDA device NCCL on the
  // communication stream, which the kernels' stream then waits for (no host wait), when device collectives
  // are active, else through the host (a download, MPI, an upload). --sync-bn's per-channel sums.
  void allreduce_sum(double* data, int64_t n, Device where);
  // The element-wise maximum over processes, in place (a device tensor on the device, as allreduce_sum).
  void allreduce_max(const Tensor& tensor);

  // Started, not waited: a contiguous f32 tensor (a slice of the gradient arena) summed in place over the
  // processes once wait_allreduces() returns (see the file comment). It must not be read or written until
  // then. A group of one starts nothing, except on a device with set_device_collectives_in_one_process.
  void start_allreduce_sum(const Tensor& tensor);
  // Lets MPI progress the started sums (MPI_Testall); cheap, called while backward runs.
  void progress_allreduces();
  void wait_allreduces();
  int64_t started_allreduces() const { return started_; }  // how many were started so far (tests)

  // Testing: device collectives go through NCCL also in a group of one (a one-rank communicator,
  // ncclCommInitAll over the current device), so one GPU exercises the device path. False by default.
  void set_device_collectives_in_one_process(bool on) { device_collectives_in_one_process_ = on; }
  // Testing: a group of one multiplies what its device sums add up by `scale` (NCCL's PreMulSum; 1 by
  // default). A one-rank sum otherwise leaves the values as they were, whether or not the collective ran
  // on the communication stream and the kernels waited for it; doubled values show that it did.
  void set_one_process_sum_scale(double scale) { one_process_sum_scale_ = scale; }
  bool device_collectives_active() const;  // NCCL would serve a device collective now
  // root's data[0..n) to every process.
  void broadcast(float* data, int64_t n, int root = 0);
  void broadcast(double* data, int64_t n, int root = 0);
  // Every process's `local` (counts may differ), concatenated in rank order, on every process.
  std::vector<double> allgather(const std::vector<double>& local);
  void barrier();
  // Ends every process of the job with `exit_status` (MPI_Abort); a single process exits.
  [[noreturn]] void abort(int exit_status);

 private:
  Distributed();
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;
  void allreduce_on_device(const Tensor& tensor, bool maximum);
  // NCCL's in-place all-reduce of n floats or doubles on the communication stream, after the kernels'
  // work so far (the caller decides whether the kernels wait for it). Built with NCCL only.
  void nccl_allreduce_in_place(void* data, int64_t n, bool in_double, bool maximum);
  // The ncclComm_t of every device collective, made on first use.
  void* nccl_communicator();
  // The communication stream (a cudaStream_t), made on first use, after the kernels' stream's work so far.
  void* communication_stream_after_kernels();
  // The kernels' stream waits for everything queued on the communication stream.
  void kernels_wait_for_communication();
  struct Started;              // the started sums' MPI requests and the device's stream and events

  int rank_ = 0, size_ = 1, local_rank_ = 0;
  bool mpi_ = false;
  bool device_collectives_in_one_process_ = false;
  double one_process_sum_scale_ = 1.0;
  void* nccl_ = nullptr;            // the NCCL communicator (ncclComm_t), made on first use
  std::unique_ptr<Started> started_state_;
  int64_t started_ = 0;
};

// True when the environment says an MPI launcher (mpirun, srun) started this process.
bool launched_by_mpi();

}  // namespace engine
