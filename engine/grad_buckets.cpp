// Bucketed gradient all-reduce overlapped with backward (see grad_buckets.h).
#include "engine/grad_buckets.h"

#include <algorithm>
#include <chrono>

#include "engine/check.h"

namespace engine {

GradientBuckets::GradientBuckets(ParameterArena& arena, Distributed& group, int64_t bucket_bytes)
    : arena_(arena), group_(group) {
  const NamedTensors& parameters = arena.parameters();
  const size_t count = parameters.size();
  std::vector<int64_t> offset(count + 1, 0);
  for (size_t p = 0; p < count; ++p) {
    offset[p + 1] = offset[p] + parameters[p].second.numel();
    index_[parameters[p].second.impl()] = p;
  }
  bucket_of_.assign(count, 0);
  expected_.assign(count, -1);
  seen_.assign(count, 0);
  // From the last parameter back: a bucket closes once it holds bucket_bytes (so a parameter larger than
  // that has a bucket of its own). The parameters p_j..p_k of a bucket are one slice of the buffer.
  const int64_t limit = bucket_bytes > 0 ? std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(sizeof(float)))
                                         : offset[count];
  for (size_t p = count; p-- > 0;) {
    if (buckets_.empty() || buckets_.back().end - buckets_.back().begin >= limit) {
      buckets_.emplace_back();
      buckets_.back().begin = buckets_.back().end = offset[p + 1];
    }
    Bucket& bucket = buckets_.back();
    bucket.begin = offset[p];
    bucket.params.push_back(p);
    bucket_of_[p] = buckets_.size() - 1;
  }
}

std::pair<int64_t, int64_t> GradientBuckets::bucket_range(int64_t i) const {
  ENGINE_CHECK(i >= 0 && i < bucket_count()) << "bucket " << i << " of " << bucket_count();
  return {buckets_[static_cast<size_t>(i)].begin, buckets_[static_cast<size_t>(i)].end};
}

void GradientBuckets::begin_backward() {
  ENGINE_CHECK(!in_backward_) << "GradientBuckets::begin_backward twice without finish_backward";
  in_backward_ = true;
  next_to_start_ = 0;
  started_during_backward_ = 0;
  std::fill(seen_.begin(), seen_.end(), 0);
  for (Bucket& bucket : buckets_) bucket.waiting = bucket.params.size();
  if (buckets_.size() < 2) return;  // one bucket: nothing to overlap, it starts after backward
  // Parameters that took no contribution last time are final already.
  for (size_t p = 0; p < expected_.size(); ++p)
    if (expected_[p] == 0) mark_final(p);
  start_ready_buckets();
  hook_ = std::make_unique<LeafGradHookScope>([this](const Tensor& leaf) { on_accumulated(leaf); });
}

void GradientBuckets::on_accumulated(const Tensor& leaf) {
  const auto it = index_.find(leaf.impl());
  if (it == index_.end()) return;  // a leaf outside the arena (an input with requires_grad)
  const size_t p = it->second;
  const int64_t seen = ++seen_[p];
  ENGINE_CHECK(bucket_of_[p] >= next_to_start_)
      << "data-parallel gradient buckets: parameter '" << arena_.parameters()[p].first << "' received a "
      << "gradient contribution (" << seen << " in this step, " << expected_[p] << " in earlier steps) after its "
      << "bucket's all-reduce had started: the graph of a training step changed between steps. Pass "
      << "--bucket-mb 0 (one all-reduce after backward) for a net whose graph changes";
  if (seen == expected_[p]) {
    mark_final(p);
    start_ready_buckets();
  }
  group_.progress_allreduces();  // MPI progresses the started sums only inside its calls
}

void GradientBuckets::mark_final(size_t param) {
  Bucket& bucket = buckets_[bucket_of_[param]];
  ENGINE_CHECK(bucket.waiting > 0) << "bucket bookkeeping";
  --bucket.waiting;
}

void GradientBuckets::start_ready_buckets() {
  while (next_to_start_ < buckets_.size() && buckets_[next_to_start_].waiting == 0) {
    start(next_to_start_++);
    ++started_during_backward_;
  }
}

void GradientBuckets::start(size_t bucket) {
  const Bucket& b = buckets_[bucket];
  group_.start_allreduce_sum(arena_.grads().slice(0, b.begin, b.end));
}

void GradientBuckets::finish_backward() {
  if (!in_backward_) {  // called without begin_backward: nothing was watched, every bucket starts now
    next_to_start_ = 0;
    started_during_backward_ = 0;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const bool watched = hook_ != nullptr;
  hook_.reset();
  in_backward_ = false;
  while (next_to_start_ < buckets_.size()) start(next_to_start_++);
  group_.wait_allreduces();
  finish_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++backwards_;
  // What this step's graph gave each parameter is what the next steps' will (the largest count seen).
  if (watched)
    for (size_t p = 0; p < expected_.size(); ++p) expected_[p] = std::max(expected_[p], seen_[p]);
}

}  // namespace engine
