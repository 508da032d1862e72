// Tests of the threaded loader and its decoded-image cache (data/loader.h, data/image_cache.h) on a
// small synthetic MURA: every image exactly once per epoch in the seeded order, labels/weights/indices
// with their images, results independent of the thread count, cached epochs bit-identical to decoded
// ones (memory, disk, and spilling from memory to disk), bad files skipped and counted up to a limit,
// worker errors reaching the caller, and no hang when the consumer stops early.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "data/io_util.h"
#include "data/loader.h"
#include "data/mura_index.h"
#include "data/synth_mura.h"
#include "engine/check.h"
#include "support/error_of.h"

namespace fs = std::filesystem;
using ::testing::HasSubstr;

namespace {

using test_support::error_of;

struct Epoch {
  std::vector<int64_t> indices;
  std::vector<int64_t> batch_sizes;
  std::vector<float> images, labels, weights;
};

Epoch run_epoch(data::Loader& loader, int64_t epoch) {
  Epoch out;
  loader.start_epoch(epoch);
  for (data::Batch batch; loader.next(batch);) {
    EXPECT_EQ(batch.epoch, epoch);
    EXPECT_EQ(batch.images.shape(), (engine::Shape{batch.size(), loader.options().height, loader.options().width, 3}));
    EXPECT_EQ(batch.labels.shape(), (engine::Shape{batch.size()}));
    EXPECT_EQ(batch.weights.shape(), (engine::Shape{batch.size()}));
    EXPECT_TRUE(batch.images.device().is_cpu());
    out.indices.insert(out.indices.end(), batch.indices.begin(), batch.indices.end());
    out.batch_sizes.push_back(batch.size());
    const std::vector<float> im = batch.images.to_vector(), la = batch.labels.to_vector(), we = batch.weights.to_vector();
    out.images.insert(out.images.end(), im.begin(), im.end());
    out.labels.insert(out.labels.end(), la.begin(), la.end());
    out.weights.insert(out.weights.end(), we.begin(), we.end());
  }
  return out;
}

// Bitwise equality of float vectors (EXPECT_EQ on 10^5 floats prints too much when it fails).
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class LoaderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string pattern = (fs::temp_directory_path() / "data_loader_test_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = new std::string(pattern);
    data::SynthOptions synth;
    synth.seed = 3;
    synth.train_patients = 12;
    synth.valid_patients = 0;
    synth.min_side = 40;
    synth.max_side = 90;
    synth.rgb_fraction = 0.2;
    synth.sixteen_bit_fraction = 0.2;
    const data::SynthResult made = data::make_synthetic_mura(*dir_, synth);
    const data::MuraIndex index = data::load_mura_index(made.root);
    root_ = new std::string(index.root);
    entries_ = new std::vector<data::SplitEntry>();
    for (size_t i = 0; i < index.images.size(); ++i) {
      data::SplitEntry e;
      e.path = index.images[i].path;
      e.label = index.study_of(i).label;
      e.study = index.study_of(i).key;
      e.part = index.study_of(i).part;
      e.patient = index.study_of(i).patient;
      e.weight = 0.5f + 0.01f * static_cast<float>(i);  // distinct, to check they travel with their image
      entries_->push_back(e);
    }
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete root_;
    delete entries_;
  }

  static data::LoaderOptions small_options() {
    data::LoaderOptions o;
    o.batch_size = 8;
    o.height = 32;
    o.width = 28;
    o.seed = 17;
    o.workers = 2;
    o.cache = data::CacheMode::off;
    return o;
  }
  static data::LoaderOptions augmented(data::LoaderOptions o) {
    o.augment.flip = true;
    o.augment.max_rotation_degrees = 30;
    o.norm = data::NormMode::torch;
    return o;
  }

  static std::string* dir_;
  static std::string* root_;
  static std::vector<data::SplitEntry>* entries_;
};
std::string* LoaderTest::dir_ = nullptr;
std::string* LoaderTest::root_ = nullptr;
std::vector<data::SplitEntry>* LoaderTest::entries_ = nullptr;

TEST_F(LoaderTest, EveryImageOncePerEpochInTheSeededOrder) {
  data::Loader loader(*root_, *entries_, small_options());
  const int64_t n = loader.size();
  ASSERT_GE(n, 20);
  std::vector<std::vector<int64_t>> orders;
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    const Epoch e = run_epoch(loader, epoch);
    EXPECT_EQ(e.indices, loader.epoch_order(epoch));
    EXPECT_EQ(std::set<int64_t>(e.indices.begin(), e.indices.end()).size(), static_cast<size_t>(n));
    // Batches of 8, the last one smaller.
    ASSERT_EQ(static_cast<int64_t>(e.batch_sizes.size()), loader.batches_per_epoch());
    for (size_t b = 0; b + 1 < e.batch_sizes.size(); ++b) EXPECT_EQ(e.batch_sizes[b], 8);
    EXPECT_EQ(e.batch_sizes.back(), n - 8 * (loader.batches_per_epoch() - 1));
    // Labels and weights belong to the image at the same position.
    for (size_t i = 0; i < e.indices.size(); ++i) {
      EXPECT_EQ(e.labels[i], static_cast<float>((*entries_)[e.indices[i]].label));
      EXPECT_EQ(e.weights[i], (*entries_)[e.indices[i]].weight);
    }
    orders.push_back(e.indices);
  }
  EXPECT_NE(orders[0], orders[1]);
  EXPECT_NE(orders[1], orders[2]);
  // Another loader with the same seed visits in the same orders.
  data::Loader twin(*root_, *entries_, small_options());
  EXPECT_EQ(twin.epoch_order(1), orders[1]);
}

TEST_F(LoaderTest, UnshuffledKeepsSplitOrderAndDropLast) {
  data::LoaderOptions o = small_options();
  o.shuffle = false;
  o.drop_last = true;
  data::Loader loader(*root_, *entries_, o);
  const Epoch e = run_epoch(loader, 5);
  const int64_t kept = (loader.size() / 8) * 8;
  ASSERT_EQ(static_cast<int64_t>(e.indices.size()), kept);
  for (int64_t i = 0; i < kept; ++i) EXPECT_EQ(e.indices[i], i);
}

TEST_F(LoaderTest, ImagesAreTheDecodedResizedNormalisedFiles) {
  data::LoaderOptions o = augmented(small_options());
  data::Loader loader(*root_, *entries_, o);
  const Epoch e = run_epoch(loader, 2);
  const size_t image_floats = 32 * 28 * 3;
  for (size_t k : {size_t(0), e.indices.size() - 1}) {
    const int64_t item = e.indices[k];
    const data::ImageU8 u8 = data::load_resized_u8(loader.file_path(item), 32, 28, o.resize);
    std::vector<float> expected(image_floats);
    data::render_image({u8.pixels.data(), u8.height, u8.width, u8.channels}, data::draw_augment(o.augment, o.seed, 2, item),
                       data::Normalizer::make(o.norm), expected.data());
    const std::vector<float> got(e.images.begin() + k * image_floats, e.images.begin() + (k + 1) * image_floats);
    EXPECT_TRUE(same_bits(got, expected)) << "image " << item;
  }
}

TEST_F(LoaderTest, ResultsDoNotDependOnThreads) {
  data::LoaderOptions one = augmented(small_options());
  one.workers = 1;
  one.prefetch_batches = 1;
  data::LoaderOptions many = augmented(small_options());
  many.workers = 3;
  many.prefetch_batches = 5;
  data::Loader a(*root_, *entries_, one), b(*root_, *entries_, many);
  const Epoch ea = run_epoch(a, 1), eb = run_epoch(b, 1);
  EXPECT_EQ(ea.indices, eb.indices);
  EXPECT_TRUE(same_bits(ea.images, eb.images));
}

struct CacheCase {
  const char* name;
  data::CacheMode mode;
  uint64_t budget;  // bytes
};
void PrintTo(const CacheCase& c, std::ostream* os) { *os << c.name; }

class LoaderCache : public LoaderTest, public ::testing::WithParamInterface<CacheCase> {};

TEST_P(LoaderCache, CachedEpochsEqualDecodedEpochsBitForBit) {
  const CacheCase& c = GetParam();
  data::LoaderOptions plain = augmented(small_options());
  data::LoaderOptions cached = plain;
  cached.cache = c.mode;
  cached.cache_memory_bytes = c.budget;
  cached.cache_dir = *dir_ + "/cache";
  data::Loader decoding(*root_, *entries_, plain), caching(*root_, *entries_, cached);
  const int64_t n = caching.size();

  const Epoch first = run_epoch(caching, 0);  // fills the cache
  EXPECT_TRUE(same_bits(first.images, run_epoch(decoding, 0).images));
  EXPECT_EQ(caching.stats().decoded, n);
  for (int64_t epoch = 1; epoch <= 2; ++epoch) {
    const Epoch from_cache = run_epoch(caching, epoch), decoded = run_epoch(decoding, epoch);
    EXPECT_EQ(from_cache.indices, decoded.indices);
    EXPECT_TRUE(same_bits(from_cache.images, decoded.images)) << "epoch " << epoch;
  }
  const data::LoaderStats s = caching.stats();
  EXPECT_EQ(s.decoded, n);  // never decoded again after the first epoch
  EXPECT_EQ(s.cache_hits, 2 * n);
  EXPECT_EQ(s.memory_cached + s.disk_cached, n);
  if (c.mode == data::CacheMode::memory) {
    EXPECT_EQ(s.disk_cached, 0);
  }
  if (c.mode == data::CacheMode::disk) {
    EXPECT_EQ(s.memory_cached, 0);
  }
  if (c.mode == data::CacheMode::automatic) {  // the budget holds a few images, the rest spill to disk
    EXPECT_GT(s.memory_cached, 0);
    EXPECT_GT(s.disk_cached, 0);
    EXPECT_LE(s.memory_bytes, c.budget);
  }
  EXPECT_EQ(decoding.stats().decoded, 3 * n);
}

INSTANTIATE_TEST_SUITE_P(Modes, LoaderCache,
                         ::testing::Values(CacheCase{"memory", data::CacheMode::memory, 0},
                                           CacheCase{"disk", data::CacheMode::disk, 0},
                                           CacheCase{"auto_spills", data::CacheMode::automatic, 5 * 32 * 28 * 3}));

TEST_F(LoaderTest, BadFilesAreSkippedCountedAndListed) {
  std::vector<data::SplitEntry> entries = *entries_;
  const std::string bad_dir = *dir_ + "/bad";
  data::make_directories(bad_dir);
  data::write_file_atomic(bad_dir + "/notes.png", std::string("not an image"), false);
  data::SplitEntry missing = entries[0], text = entries[1];
  missing.path = "../bad/missing.png";
  text.path = "../bad/notes.png";
  entries.insert(entries.begin() + 3, missing);
  entries.push_back(text);
  const int64_t n = static_cast<int64_t>(entries.size());

  data::LoaderOptions o = small_options();
  o.max_bad_fraction = 0.1;
  o.cache = data::CacheMode::memory;
  data::Loader loader(*root_, entries, o);
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    const Epoch e = run_epoch(loader, epoch);
    EXPECT_EQ(static_cast<int64_t>(e.indices.size()), n - 2);
    const std::set<int64_t> seen(e.indices.begin(), e.indices.end());
    EXPECT_EQ(seen.count(3), 0u);
    EXPECT_EQ(seen.count(n - 1), 0u);
  }
  const data::LoaderStats s = loader.stats();
  EXPECT_EQ(s.bad_files, 2);
  EXPECT_EQ(s.decoded, n - 2);  // bad files are not retried, good ones come from the cache
  const std::vector<data::BadFile> bad = loader.bad_files();
  ASSERT_EQ(bad.size(), 2u);
  std::set<std::string> names;
  for (const data::BadFile& b : bad) {
    names.insert(b.path);
    EXPECT_THAT(b.error, HasSubstr(b.path));
  }
  EXPECT_TRUE(names.count(*root_ + "/../bad/missing.png"));
  EXPECT_TRUE(names.count(*root_ + "/../bad/notes.png"));
}

TEST_F(LoaderTest, TooManyBadFilesFailTheRunWithTheList) {
  std::vector<data::SplitEntry> entries = *entries_;
  data::SplitEntry missing = entries[0];
  missing.path = "train/XR_HAND/patient99999/study1_positive/gone.png";
  entries.push_back(missing);
  data::LoaderOptions o = small_options();
  o.max_bad_fraction = 0.0;
  data::Loader loader(*root_, entries, o);
  const std::string message = error_of([&] { run_epoch(loader, 0); });
  EXPECT_THAT(message, HasSubstr("1 of " + std::to_string(entries.size()) + " images are unreadable"));
  EXPECT_THAT(message, HasSubstr("patient99999/study1_positive/gone.png: cannot open"));
  EXPECT_THAT(message, HasSubstr("mura_verify"));
  // The next epoch refuses at once (the bad file is remembered, not retried).
  EXPECT_THAT(error_of([&] { loader.start_epoch(1); }), HasSubstr("images are unreadable"));
}

TEST_F(LoaderTest, WorkerErrorsReachTheCaller) {
  data::LoaderOptions o = small_options();
  o.cache = data::CacheMode::disk;
  o.cache_dir = *root_ + "/train_image_paths.csv/cache";  // under a regular file: cannot be created
  data::Loader loader(*root_, *entries_, o);
  loader.start_epoch(0);
  data::Batch batch;
  EXPECT_THAT(error_of([&] { loader.next(batch); }), HasSubstr("cannot create the folder"));
  EXPECT_FALSE(loader.next(batch));  // the epoch is over
}

TEST_F(LoaderTest, StoppingEarlyDoesNotHang) {
  const auto start = std::chrono::steady_clock::now();
  data::LoaderOptions o = augmented(small_options());
  o.batch_size = 2;
  o.prefetch_batches = 2;
  for (int trial = 0; trial < 5; ++trial) {
    data::Loader loader(*root_, *entries_, o);
    loader.start_epoch(0);
    data::Batch batch;
    ASSERT_TRUE(loader.next(batch));
    // Restart mid-epoch, then take a full epoch.
    loader.start_epoch(1);
    ASSERT_TRUE(loader.next(batch));
    EXPECT_EQ(batch.epoch, 1);
    if (trial % 2) {
      loader.stop();
      EXPECT_FALSE(loader.next(batch));
    }
    // Destroyed here with workers possibly blocked on the full queue.
  }
  data::Loader never_started(*root_, *entries_, o);
  data::Batch batch;
  EXPECT_FALSE(never_started.next(batch));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 20.0);
}

TEST_F(LoaderTest, ConsumerMayKeepBatches) {
  data::LoaderOptions o = small_options();
  o.prefetch_batches = 1;
  data::Loader loader(*root_, *entries_, o);
  const Epoch reference = run_epoch(loader, 4);
  std::vector<data::Batch> kept;
  loader.start_epoch(4);
  for (data::Batch batch; loader.next(batch);) kept.push_back(batch);
  std::set<const float*> buffers;
  std::vector<float> images;
  for (const data::Batch& b : kept) {
    buffers.insert(b.images.data());
    const std::vector<float> v = b.images.to_vector();
    images.insert(images.end(), v.begin(), v.end());
  }
  EXPECT_EQ(buffers.size(), kept.size());  // no buffer reused while a batch holds it
  EXPECT_TRUE(same_bits(images, reference.images));
}

TEST_F(LoaderTest, OptionsAreChecked) {
  data::LoaderOptions o = small_options();
  o.batch_size = 0;
  EXPECT_THAT(error_of([&] { data::Loader(*root_, *entries_, o); }), HasSubstr("batch size must be >= 1"));
  o = small_options();
  o.max_bad_fraction = 2;
  EXPECT_THAT(error_of([&] { data::Loader(*root_, *entries_, o); }), HasSubstr("max_bad_fraction"));
  EXPECT_THAT(error_of([&] { data::Loader(*root_, {}, small_options()); }), HasSubstr("no images"));
  EXPECT_THAT(error_of([] { data::parse_cache_mode("ssd"); }), HasSubstr("off, memory, disk or auto"));
}

// Regression: `--rotation nan` and `--rotation -30` were accepted and silently meant "no rotation".
TEST_F(LoaderTest, RotationMustBeAFiniteAngleInRange) {
  for (float bad : {std::nanf(""), -30.0f, 180.5f, INFINITY, -INFINITY}) {
    data::LoaderOptions o = small_options();
    o.augment = {true, bad};
    EXPECT_THAT(error_of([&] { data::Loader(*root_, *entries_, o); }),
                HasSubstr("rotation must be a finite number of degrees in [0, 180]"))
        << bad;
    EXPECT_THAT(error_of([&] { o.augment.validate(); }), HasSubstr("rotation must be")) << bad;
  }
  for (float good : {0.0f, 30.0f, 180.0f}) {
    data::LoaderOptions o = small_options();
    o.augment = {true, good};
    EXPECT_NO_THROW(o.validate()) << good;
  }
  // Even with augmentation off, a bad angle is refused: it is a mistake, not a way to say "off".
  data::LoaderOptions off = small_options();
  off.augment = {false, -30.0f};
  EXPECT_THAT(error_of([&] { off.validate(); }), HasSubstr("got -30"));
}

}  // namespace
