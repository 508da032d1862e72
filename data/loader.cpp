// The threaded loader (see loader.h for the contract).
//
// Synchronisation: one mutex guards the epoch state (claims, the ready map, the error, cancellation);
// workers wait on workers_cv_ for room in the bounded queue, the consumer on consumer_cv_ for its next
// batch. Batch buffers come from a pool; a buffer is free when the pool holds the only reference to its
// storage (batch tensors are views of it), so a consumer may keep batches as long as it likes.
#include "data/loader.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <sstream>

#include "engine/check.h"
#include "engine/random.h"

namespace data {
namespace {
// The random stream of the epoch order (engine::Generator(seed, stream + epoch)).
constexpr uint64_t kOrderStream = uint64_t(0x10AD) << 48;
}  // namespace

void LoaderOptions::validate() const {
  ENGINE_USER_CHECK(batch_size >= 1) << "loader batch size must be >= 1, got " << batch_size;
  ENGINE_USER_CHECK(height >= 1 && width >= 1 && height <= 4096 && width <= 4096)
      << "loader image size " << height << "x" << width << " must be within 1..4096";
  ENGINE_USER_CHECK(workers >= 1) << "loader needs at least one worker, got " << workers;
  ENGINE_USER_CHECK(shard_count >= 1 && shard_rank >= 0 && shard_rank < shard_count)
      << "loader shard " << shard_rank << " of " << shard_count << " is out of range";
  ENGINE_USER_CHECK(prefetch_batches >= 1) << "prefetch_batches must be >= 1, got " << prefetch_batches;
  ENGINE_USER_CHECK(max_bad_fraction >= 0 && max_bad_fraction <= 1)
      << "max_bad_fraction must be in [0, 1], got " << max_bad_fraction;
  augment.validate();
}

Loader::Loader(std::string root, std::vector<SplitEntry> entries, LoaderOptions options)
    : root_(std::move(root)),
      entries_(std::move(entries)),
      options_(std::move(options)),
      normalizer_(Normalizer::make(options_.norm)),
      cache_(static_cast<int64_t>(entries_.size()), options_.cache, options_.cache_memory_bytes, options_.cache_dir) {
  options_.validate();
  ENGINE_USER_CHECK(!entries_.empty()) << "the loader was given no images";
  bad_.assign(entries_.size(), 0);
  allowed_bad_ = static_cast<int64_t>(std::floor(options_.max_bad_fraction * static_cast<double>(entries_.size())));
}

Loader::~Loader() { stop(); }

std::string Loader::file_path(int64_t index) const {
  const std::string& path = entries_[index].path;
  return root_.empty() ? path : root_ + "/" + path;
}

int64_t Loader::batches_per_epoch() const {
  const int64_t n = size(), b = options_.batch_size;
  // Sharded: a last batch smaller than the shard count would leave a shard empty; every shard drops it.
  if (options_.shard_count > 1 && n % b != 0 && n % b < options_.shard_count) return n / b;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

std::vector<int64_t> Loader::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order(entries_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  if (options_.shuffle) {
    engine::Generator gen(options_.seed, kOrderStream + static_cast<uint64_t>(epoch));
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[gen.below(i)]);
  }
  return order;
}

LoaderStats Loader::stats() const {
  LoaderStats s;
  s.decoded = decoded_.load();
  s.cache_hits = cache_hits_.load();
  {
    std::lock_guard<std::mutex> lock(bad_mutex_);
    s.bad_files = static_cast<int64_t>(bad_list_.size());
  }
  s.memory_cached = cache_.memory_items();
  s.disk_cached = cache_.disk_items();
  s.memory_bytes = cache_.memory_bytes();
  s.disk_bytes = cache_.disk_bytes();
  return s;
}

std::vector<BadFile> Loader::bad_files() const {
  std::lock_guard<std::mutex> lock(bad_mutex_);
  return bad_list_;
}

std::string Loader::too_many_bad_message() const {
  std::ostringstream message;
  message << bad_list_.size() << " of " << entries_.size() << " images are unreadable, more than max_bad_fraction "
          << options_.max_bad_fraction << " allows (" << allowed_bad_ << "):\n";
  const size_t shown = std::min<size_t>(bad_list_.size(), 20);
  for (size_t i = 0; i < shown; ++i) message << "  " << bad_list_[i].error << "\n";
  if (bad_list_.size() > shown) message << "  ... and " << bad_list_.size() - shown << " more\n";
  message << "run mura_verify to list every bad file, remove them, or raise the allowed bad fraction";
  return message.str();
}

void Loader::record_bad(int64_t item, const std::string& error) {
  std::lock_guard<std::mutex> lock(bad_mutex_);
  if (bad_[item]) return;
  bad_[item] = 1;
  bad_list_.push_back({file_path(item), error});
  if (static_cast<int64_t>(bad_list_.size()) > allowed_bad_) throw engine::UserError(too_many_bad_message());
}

engine::Tensor Loader::acquire_buffer(std::shared_ptr<engine::Storage>& hold) {
  std::lock_guard<std::mutex> lock(pool_mutex_);
  for (const engine::Tensor& buffer : pool_) {
    if (buffer.storage().use_count() == 1) {  // nobody else: no batch view, no worker
      // use_count() is a relaxed read: order the refill after the last holder's reads of the buffer.
      std::atomic_thread_fence(std::memory_order_acquire);
      hold = buffer.storage();
      return buffer;
    }
  }
  const int64_t b = options_.batch_size;
  const int64_t floats = b * options_.height * options_.width * 3 + 2 * b;  // images, labels, weights
  engine::Tensor buffer = engine::Tensor::empty_pinned({floats});
  pool_.push_back(buffer);
  hold = buffer.storage();
  return buffer;
}

Batch Loader::build_batch(int64_t k) {
  const int64_t b = options_.batch_size, n = size();
  int64_t begin = k * b, end = std::min(begin + b, n);
  if (options_.shard_count > 1) {  // this shard's share of the global batch: [m r / N, m (r + 1) / N)
    const int64_t m = end - begin, r = options_.shard_rank, count = options_.shard_count;
    end = begin + m * (r + 1) / count;
    begin += m * r / count;
  }
  const int h = options_.height, w = options_.width;
  const int64_t image_floats = static_cast<int64_t>(h) * w * 3;

  std::shared_ptr<engine::Storage> hold;
  engine::Tensor flat = acquire_buffer(hold);
  float* images = flat.data();
  float* labels = images + b * image_floats;
  float* weights = labels + b;

  thread_local std::vector<uint8_t> scratch;
  Batch batch;
  batch.epoch = epoch_;
  batch.batch_index = k;
  int64_t slot = 0;
  for (int64_t pos = begin; pos < end; ++pos) {
    if (cancel_flag_.load(std::memory_order_relaxed)) return Batch();
    const int64_t item = order_[pos];
    {
      std::lock_guard<std::mutex> lock(bad_mutex_);
      if (bad_[item]) continue;
    }
    ImageU8View view;
    ImageU8 decoded;
    if (cache_.get(item, scratch, view)) {
      cache_hits_.fetch_add(1, std::memory_order_relaxed);
    } else {
      try {
        decoded = load_resized_u8(file_path(item), h, w, options_.resize, options_.limits);
      } catch (const engine::Error& e) {
        record_bad(item, e.what());  // throws once too many are bad
        continue;
      }
      decoded_.fetch_add(1, std::memory_order_relaxed);
      cache_.put(item, decoded);
      view = {decoded.pixels.data(), decoded.height, decoded.width, decoded.channels};
    }
    const AugmentParams params = draw_augment(options_.augment, options_.seed, static_cast<uint64_t>(epoch_),
                                              static_cast<uint64_t>(item));
    render_image(view, params, normalizer_, images + slot * image_floats);
    labels[slot] = static_cast<float>(entries_[item].label);
    weights[slot] = entries_[item].weight;
    batch.indices.push_back(item);
    ++slot;
  }
  if (slot > 0) {
    batch.images = flat.slice(0, 0, slot * image_floats).view({slot, h, w, 3});
    batch.labels = flat.slice(0, b * image_floats, b * image_floats + slot);
    batch.weights = flat.slice(0, b * image_floats + b, b * image_floats + b + slot);
  }
  return batch;
}

void Loader::worker_loop() {
  for (;;) {
    int64_t k = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      workers_cv_.wait(lock, [&] {
        return cancel_ || error_ || next_claim_ >= num_batches_ ||
               next_claim_ < next_deliver_ + options_.prefetch_batches;
      });
      if (cancel_ || error_ || next_claim_ >= num_batches_) return;
      k = next_claim_++;
    }
    try {
      Batch batch = build_batch(k);
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(k, std::move(batch));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      workers_cv_.notify_all();
      consumer_cv_.notify_all();
      return;
    }
    consumer_cv_.notify_all();
  }
}

void Loader::start_epoch(int64_t epoch) {
  stop();
  {
    // Files found bad earlier are skipped without a retry, so the limit is checked again here.
    std::lock_guard<std::mutex> lock(bad_mutex_);
    if (static_cast<int64_t>(bad_list_.size()) > allowed_bad_) throw engine::UserError(too_many_bad_message());
  }
  std::lock_guard<std::mutex> lock(mutex_);
  epoch_ = epoch;
  order_ = epoch_order(epoch);
  num_batches_ = batches_per_epoch();
  next_claim_ = next_deliver_ = 0;
  ready_.clear();
  error_ = nullptr;
  cancel_ = false;
  cancel_flag_.store(false);
  active_ = true;
  const int workers = static_cast<int>(std::min<int64_t>(options_.workers, std::max<int64_t>(1, num_batches_)));
  for (int t = 0; t < workers; ++t) threads_.emplace_back([this] { worker_loop(); });
}

void Loader::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    cancel_ = true;
    cancel_flag_.store(true);
    active_ = false;
  }
  workers_cv_.notify_all();
  consumer_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  std::lock_guard<std::mutex> lock(mutex_);
  ready_.clear();
}

bool Loader::next(Batch& out) {
  for (;;) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!active_) return false;
    if (next_deliver_ >= num_batches_) {
      lock.unlock();
      stop();
      return false;
    }
    consumer_cv_.wait(lock, [&] { return error_ || ready_.count(next_deliver_) > 0; });
    if (error_) {
      std::exception_ptr error = error_;
      lock.unlock();
      stop();
      std::rethrow_exception(error);
    }
    auto it = ready_.find(next_deliver_);
    Batch batch = std::move(it->second);
    ready_.erase(it);
    ++next_deliver_;
    lock.unlock();
    workers_cv_.notify_all();
    if (batch.size() == 0) continue;  // every image of this batch was bad
    out = std::move(batch);
    return true;
  }
}

}  // namespace data
