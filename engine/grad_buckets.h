// Data parallelism: the gradient all-reduce cut into buckets and started while backward still runs.
//
// The arena's one gradient buffer (engine/optim.h) is cut into buckets of about `bucket_bytes` (25 MB by
// default), in the reverse of the parameters' registration order: backward produces the last layers'
// gradients first. Each bucket is a contiguous slice of the buffer. While backward runs, the autograd
// engine reports every accumulation into a parameter's gradient (LeafGradHookScope, engine/autograd.h);
// when every parameter of the next bucket has received all its contributions, the bucket's sum over the
// processes is started (Distributed::start_allreduce_sum: MPI_Iallreduce on the CPU, ncclAllReduce on a
// communication stream on a GPU) and backward goes on. After backward the remaining buckets are started
// and every sum is waited for (on a GPU, by the kernels' stream: no host wait), before the update.
//
//   GradientBuckets buckets(arena, Distributed::world());   // 25 MB buckets
//   buckets.begin_backward();  loss.backward();  buckets.finish_backward();  optimizer.step();
//
// When is a gradient final? A parameter can take several contributions in one backward (a weight used
// twice; DenseNet's memory-efficient path, engine/recompute.cpp, whose parameters appear only in graphs
// built inside backward, invisible to a walk over the graph beforehand). So the buckets count each
// parameter's contributions in a step and take that count as the parameter's expected count from then on
// (a training step's graph is the same every step: the same net, the same ops). The first backward starts
// every bucket after backward; from the second, each bucket starts as soon as its parameters have their
// expected counts. A contribution to a bucket already started (a graph that grew) is an error that names
// the parameter; one that shrank only starts its buckets later.
//
// Buckets are always started in their order (bucket 0, the last parameters, first), so every process
// starts the same all-reduces in the same order. Each element is summed once, by the same collective as an
// unbucketed all-reduce of the whole buffer, so the result is that one's; on the CPU with 2 processes the
// sums are bit for bit those of one call (an element-wise sum of two terms has one order).
//
// bucket_bytes <= 0: one bucket, started after backward (one all-reduce of the whole buffer).
#pragma once
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "engine/autograd.h"
#include "engine/distributed.h"
#include "engine/optim.h"

namespace engine {

class GradientBuckets {
 public:
  static constexpr int64_t kDefaultBucketBytes = 25LL << 20;

  GradientBuckets(ParameterArena& arena, Distributed& group, int64_t bucket_bytes = kDefaultBucketBytes);

  // Before backward: watch the gradients' accumulations (until finish_backward).
  void begin_backward();
  // After backward: start the buckets not started yet, wait for every sum (see the file comment). Without
  // begin_backward before it, every bucket starts here, in order, and nothing is learned.
  void finish_backward();

  int64_t bucket_count() const { return static_cast<int64_t>(buckets_.size()); }
  // Elements [begin, end) of arena.grads() of bucket i (bucket 0: the last parameters).
  std::pair<int64_t, int64_t> bucket_range(int64_t i) const;
  // Of the last backward: how many buckets were started while it ran (the rest after it).
  int64_t started_during_backward() const { return started_during_backward_; }
  // Host seconds finish_backward spent, summed over the backwards so far, and their count: on the CPU the
  // sums' time left after backward (what the overlap did not hide); on a GPU only the enqueueing.
  double finish_seconds() const { return finish_seconds_; }
  int64_t backwards() const { return backwards_; }

 private:
  struct Bucket {
    int64_t begin = 0, end = 0;   // elements of the gradient buffer
    std::vector<size_t> params;  // indices into the arena's parameters
    size_t waiting = 0;          // parameters still short of their expected count in this backward
  };
  void on_accumulated(const Tensor& leaf);
  void mark_final(size_t param);
  void start_ready_buckets();
  void start(size_t bucket);

  ParameterArena& arena_;
  Distributed& group_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;                       // per parameter
  std::unordered_map<const TensorImpl*, size_t> index_;  // a parameter's tensor -> its index
  std::vector<int64_t> expected_;                        // contributions per backward; -1: not learned yet
  std::vector<int64_t> seen_;                            // contributions in this backward
  size_t next_to_start_ = 0;
  int64_t started_during_backward_ = 0;
  bool in_backward_ = false;
  double finish_seconds_ = 0;
  int64_t backwards_ = 0;
  std::unique_ptr<LeafGradHookScope> hook_;
};

}  // namespace engine
