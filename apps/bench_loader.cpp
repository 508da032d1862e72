// bench_loader: images/s of the data loader (data/loader.h) for the first epoch (read, decode, resize,
// cache) and for cached epochs, with and without augmentation, at the training shape (224x224, batch 32,
// 2 workers by default). Without --root it generates a synthetic MURA in a temporary folder.
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "data/loader.h"
#include "data/mura_index.h"
#include "data/synth_mura.h"

namespace {

struct Args {
  std::string root;
  int64_t images = 640;
  int size = 224;
  int64_t batch = 32;
  int workers = 2;
  int epochs = 3;  // cached epochs measured after the first
  std::string cache = "auto", resize = "area", norm = "study";
  uint64_t seed = 0;
};

void usage() {
  std::printf(
      "usage: bench_loader [--root DIR] [--images N] [--size PX] [--batch N] [--workers N] [--epochs N]\n"
      "                    [--cache auto|memory|disk] [--resize nearest|bilinear|area] [--norm study|torch|tf]\n"
      "                    [--seed N]\n"
      "Prints images/s of the first (decoding) epoch and of cached epochs without and with augmentation\n"
      "(flip + rotation up to 30 degrees). Without --root, a synthetic MURA of about N images is generated\n"
      "in a temporary folder. Defaults: 640 images, 224 px, batch 32, 2 workers, 3 cached epochs.\n");
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One epoch; returns images/s. Touches one value of every batch (the consumer does no other work).
double run_epoch(data::Loader& loader, int64_t epoch, int64_t* images_out) {
  const auto start = std::chrono::steady_clock::now();
  loader.start_epoch(epoch);
  int64_t images = 0;
  volatile float sink = 0;
  for (data::Batch batch; loader.next(batch);) {
    images += batch.size();
    sink = sink + batch.images.data()[0];
  }
  if (images_out) *images_out = images;
  return images / seconds_since(start);
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      usage();
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "error: %s needs a value (see --help)\n", flag.c_str());
      return 2;
    }
    const char* value = argv[++i];
    if (flag == "--root") a.root = value;
    else if (flag == "--images") a.images = std::atoll(value);
    else if (flag == "--size") a.size = std::atoi(value);
    else if (flag == "--batch") a.batch = std::atoll(value);
    else if (flag == "--workers") a.workers = std::atoi(value);
    else if (flag == "--epochs") a.epochs = std::atoi(value);
    else if (flag == "--cache") a.cache = value;
    else if (flag == "--resize") a.resize = value;
    else if (flag == "--norm") a.norm = value;
    else if (flag == "--seed") a.seed = std::strtoull(value, nullptr, 10);
    else {
      std::fprintf(stderr, "error: unknown flag %s (see --help)\n", flag.c_str());
      return 2;
    }
  }
  if (a.images < 1 || a.size < 8 || a.batch < 1 || a.workers < 1 || a.epochs < 1) {
    std::fprintf(stderr, "error: need images, batch, workers, epochs >= 1 and size >= 8\n");
    return 2;
  }
  std::string temp_dir;
  try {
    std::string root = a.root;
    if (root.empty()) {
      std::string pattern = (std::filesystem::temp_directory_path() / "bench_loader_XXXXXX").string();
      if (!::mkdtemp(pattern.data())) throw std::runtime_error("cannot create a temporary folder");
      temp_dir = pattern;
      data::SynthOptions synth;
      synth.seed = a.seed;
      // About 3 images per patient (1.3 studies of 2.3 views); a few more than asked, then N are sampled.
      synth.train_patients = static_cast<int>(std::max<int64_t>(7, a.images * 10 / 28));
      synth.valid_patients = 0;
      const auto start = std::chrono::steady_clock::now();
      const data::SynthResult made = data::make_synthetic_mura(temp_dir, synth);
      std::printf("generated a synthetic MURA: %lld images in %.2f s\n", (long long)made.images, seconds_since(start));
      root = made.root;
    }
    const data::MuraIndex index = data::load_mura_index(root);
    data::SplitOptions split_options;
    split_options.train_fraction = 1.0;
    split_options.val_fraction = 0.0;
    split_options.sample_images = a.images;
    split_options.seed = a.seed;
    const data::Split split = data::make_split(index, split_options);

    data::LoaderOptions options;
    options.batch_size = a.batch;
    options.height = options.width = a.size;
    options.workers = a.workers;
    options.cache = data::parse_cache_mode(a.cache);
    options.resize = data::parse_resize_mode(a.resize);
    options.norm = data::parse_norm_mode(a.norm);
    options.seed = a.seed;
    std::printf("bench_loader: %zu images from %s, %dx%d, batch %lld, %d workers, cache %s, resize %s, norm %s\n",
                split.train.size(), root.c_str(), a.size, a.size, (long long)a.batch, a.workers, a.cache.c_str(),
                a.resize.c_str(), a.norm.c_str());

    for (int augment = 0; augment < 2; ++augment) {
      if (augment) {
        options.augment.flip = true;
        options.augment.max_rotation_degrees = 30.0f;
      }
      data::Loader loader(index.root, split.train, options);
      int64_t images = 0;
      const double first = run_epoch(loader, 0, &images);
      double cached_sum = 0;
      for (int e = 1; e <= a.epochs; ++e) cached_sum += run_epoch(loader, e, nullptr);
      const data::LoaderStats stats = loader.stats();
      const char* label = augment ? "flip + rotation 30" : "no augmentation";
      std::printf("%-20s first epoch (decode + resize + cache): %7.0f images/s   cached epochs: %7.0f images/s\n",
                  label, first, cached_sum / a.epochs);
      std::printf("%-20s cache: %lld in memory (%.1f MiB), %lld on disk (%.1f MiB); %lld decodes, %lld unreadable\n",
                  "", (long long)stats.memory_cached, stats.memory_bytes / 1048576.0, (long long)stats.disk_cached,
                  stats.disk_bytes / 1048576.0, (long long)stats.decoded, (long long)stats.bad_files);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    if (!temp_dir.empty()) std::filesystem::remove_all(temp_dir);
    return 1;
  }
  if (!temp_dir.empty()) std::filesystem::remove_all(temp_dir);
  return 0;
}
