// The threaded data loader: batches of decoded, resized, augmented, normalised images from a split.
//
//   Loader loader(index.root, split.train, options);
//   for (int64_t epoch = 0; epoch < epochs; ++epoch) {
//     loader.start_epoch(epoch);
//     for (Batch batch; loader.next(batch);) { ... batch.images [b, H, W, 3] ... }
//   }
//
// Worker threads each assemble whole batches (batch k = positions [kB, (k+1)B) of the epoch's order)
// into batch buffers from Tensor::empty_pinned (page-locked when a CUDA device exists, so uploads are
// fast and asynchronous). At most `prefetch_batches` batches are in flight ahead of the consumer (the
// bounded queue); the consumer receives them in order. A worker's error is rethrown by next(); stopping
// early (start_epoch again, stop(), or destroying the loader) cancels and joins the workers.
//
// Order and augmentation are functions of (seed, epoch, item) only, never of thread timing: with
// shuffle, epoch e visits the entries in a seeded permutation (epoch_order(e)); without, in split order.
//
// Files that cannot be read or decoded are skipped (their batch is smaller), counted and remembered
// (never retried); once more than max_bad_fraction of the entries are bad, next() throws an error
// listing them (and start_epoch() does, for later epochs). With the cache on, the first epoch stores each resized uint8 image and later epochs
// never decode again; cached and decoded epochs are bit-identical (see image.h).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/image.h"
#include "data/image_cache.h"
#include "data/splits.h"
#include "data/verify.h"
#include "engine/tensor.h"

namespace data {

struct LoaderOptions {
  int64_t batch_size = 32;
  int height = 224, width = 224;
  ResizeMode resize = ResizeMode::area;
  NormMode norm = NormMode::study;
  AugmentOptions augment;
  bool shuffle = true;
  bool drop_last = false;  // leave out the last, smaller batch
  uint64_t seed = 0;
  // Data parallelism: this process's shard of every batch. batch_size stays the global batch; shard r of
  // N takes positions [m r / N, m (r + 1) / N) of each batch of m images, so the N shards together are the
  // single process's batches in its order. A last batch of fewer than N images is dropped by every shard.
  int shard_rank = 0, shard_count = 1;
  int workers = 2;
  int prefetch_batches = 4;  // the bounded queue: batches prepared ahead of the consumer
  CacheMode cache = CacheMode::automatic;
  uint64_t cache_memory_bytes = uint64_t(4) << 30;
  std::string cache_dir;  // the disk cache's folder ("" = the system's temporary folder)
  double max_bad_fraction = 0.0;  // share of the entries allowed to be unreadable
  DecodeLimits limits;

  // Throws engine::Error naming the first option out of range (augment included). The Loader calls it.
  void validate() const;
};

struct Batch {
  engine::Tensor images;   // [b, H, W, 3] f32, b <= batch_size
  engine::Tensor labels;   // [b] 0/1
  engine::Tensor weights;  // [b] per-sample loss weights (SplitEntry::weight)
  std::vector<int64_t> indices;  // [b] positions in Loader::entries(): path, study, body part
  int64_t epoch = 0, batch_index = 0;
  int64_t size() const { return static_cast<int64_t>(indices.size()); }
};

struct LoaderStats {
  int64_t decoded = 0;     // PNG/JPEG decodes since construction
  int64_t cache_hits = 0;  // images served from the cache
  int64_t bad_files = 0;   // distinct unreadable files
  int64_t memory_cached = 0, disk_cached = 0;
  uint64_t memory_bytes = 0, disk_bytes = 0;
};

class Loader {
 public:
  // Entry paths are relative to `root` ("" = use them as they are). The readers of split lists and of
  // the MURA index check paths against the relative image path rule (data/paths.h); the loader trusts
  // its caller.
  Loader(std::string root, std::vector<SplitEntry> entries, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  void start_epoch(int64_t epoch);  // stops an epoch in progress first
  // The next batch of the epoch in order; false once the epoch is over (or none was started).
  // Rethrows a worker's error (the epoch is then over).
  bool next(Batch& batch);
  void stop();  // ends the current epoch early; returns once the workers have exited

  std::vector<int64_t> epoch_order(int64_t epoch) const;
  int64_t batches_per_epoch() const;
  int64_t size() const { return static_cast<int64_t>(entries_.size()); }
  const std::vector<SplitEntry>& entries() const { return entries_; }
  const LoaderOptions& options() const { return options_; }
  std::string file_path(int64_t index) const;
  LoaderStats stats() const;
  std::vector<BadFile> bad_files() const;

 private:
  struct Buffers;
  void worker_loop();
  Batch build_batch(int64_t k);
  engine::Tensor acquire_buffer(std::shared_ptr<engine::Storage>& hold);
  // Records a bad file; throws when the bad fraction is exceeded.
  void record_bad(int64_t item, const std::string& error);
  std::string too_many_bad_message() const;  // bad_mutex_ held

  std::string root_;
  std::vector<SplitEntry> entries_;
  LoaderOptions options_;
  Normalizer normalizer_;
  DecodedCache cache_;

  // Per-entry status, written under bad_mutex_: 0 unknown/good, 1 bad.
  mutable std::mutex bad_mutex_;
  std::vector<uint8_t> bad_;
  std::vector<BadFile> bad_list_;
  int64_t allowed_bad_ = 0;

  std::atomic<int64_t> decoded_{0}, cache_hits_{0};

  // Pinned batch buffers, reused once nobody holds their batch.
  std::mutex pool_mutex_;
  std::vector<engine::Tensor> pool_;

  // The epoch in progress.
  std::mutex mutex_;
  std::condition_variable workers_cv_, consumer_cv_;
  bool active_ = false, cancel_ = false;
  std::atomic<bool> cancel_flag_{false};
  int64_t epoch_ = 0, num_batches_ = 0, next_claim_ = 0, next_deliver_ = 0;
  std::vector<int64_t> order_;
  std::map<int64_t, Batch> ready_;
  std::exception_ptr error_;
  std::vector<std::thread> threads_;
};

}  // namespace data
