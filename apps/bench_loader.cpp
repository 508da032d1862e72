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
#include "experiment/flags.h"

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
  experiment::FlagParser flags(
      "bench_loader",
      "Prints images/s of the first (decoding) epoch and of cached epochs without and with augmentation\n"
      "(flip + rotation up to 30 degrees). Without --root, a synthetic MURA of about N images is generated\n"
      "in a temporary folder.");
  flags.add("--root", &a.root, "the MURA-v1.1 folder (default: a generated synthetic one)", "DIR");
  flags.add("--images", &a.images, "images sampled from the training split", 1, 1000000);
  flags.add("--size", &a.size, "image side the loader resizes to, in pixels", 8, 4096, "PX");
  flags.add("-b,--batch", &a.batch, "images per batch", 1, 65536);
  flags.add("-j,--workers", &a.workers, "loader threads", 1, 256);
  flags.add("-e,--epochs", &a.epochs, "cached epochs measured after the first", 1, 100000);
  flags.add("--cache", &a.cache, "auto | memory | disk | off", "C");
  flags.add("--resize", &a.resize, "nearest | bilinear | area", "R");
  flags.add("--norm", &a.norm, "study | torch | tf", "M");
  flags.add("--seed", &a.seed, "seed of the synthetic MURA, the sample and the augmentation");
  if (!experiment::parse_flags_or_exit(flags, argc, argv)) return 0;
  data::LoaderOptions options;
  try {  // a misspelt mode is a usage error, found before a synthetic MURA is generated
    options.cache = data::parse_cache_mode(a.cache);
    options.resize = data::parse_resize_mode(a.resize);
    options.norm = data::parse_norm_mode(a.norm);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
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

    options.batch_size = a.batch;
    options.height = options.width = a.size;
    options.workers = a.workers;
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
