// mura_synth: writes a synthetic MURA-v1.1 tree (data/synth_mura.h): radiograph-like PNGs of all seven
// body parts, the four CSVs and defect_boxes.csv with the fracture boxes. Deterministic per seed.
//   mura_synth OUT [--seed N] [--train-patients N] ...   (or --out OUT)
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "data/mura_index.h"
#include "data/synth_mura.h"
#include "experiment/flags.h"

int main(int argc, char** argv) {
  data::SynthOptions options;
  std::string out;
  experiment::FlagParser flags(
      "mura_synth",
      "Writes OUT/MURA-v1.1/ shaped like MURA-v1.1: train/ and valid/ folders of grayscale PNGs (some RGB or\n"
      "16-bit), the four CSVs and defect_boxes.csv. Deterministic per seed.");
  flags.allow_positional("OUT", "the folder to write MURA-v1.1/ into (or give --out)");
  flags.add("-o,--out", &out, "the folder to write MURA-v1.1/ into (the same as the positional OUT)", "DIR");
  flags.add("--seed", &options.seed, "random seed");
  flags.add("--train-patients", &options.train_patients, "patients in train/", 1, 100000);
  flags.add("--valid-patients", &options.valid_patients, "patients in valid/", 0, 100000);
  flags.add("--min-side", &options.min_side, "shortest longest-side of an image, in pixels", 32, 4096, "PX");
  flags.add("--max-side", &options.max_side, "longest longest-side of an image, in pixels", 32, 4096, "PX");
  flags.add("--abnormal-fraction", &options.abnormal_fraction, "share of abnormal studies", 0.0, 1.0);
  flags.add("--fracture-scale", &options.fracture_scale, "fracture visibility (1 = subtle)", 1e-3, 10.0);
  flags.add("--swelling", &options.swelling, "soft-tissue swelling around fractures (0 = none)", 0.0, 10.0);
  flags.add_switch("--quirks", &options.quirks, "add macOS ._* sidecars, a .DS_Store and CRLF line ends");
  flags.add("--truncated", &options.truncated_images, "train images cut short (unreadable files)", 0, 1000000);
  flags.add("-j,--threads", &options.threads, "writer threads", 1, 256);
  if (!experiment::parse_flags_or_exit(flags, argc, argv)) return 0;
  if (const std::string error = experiment::take_positional_or_flag(flags, "--out", "output folder", "mura_synth OUT", out);
      !error.empty()) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    return 2;
  }
  if (options.min_side > options.max_side) {
    std::fprintf(stderr, "error: --min-side %d is larger than --max-side %d\n", options.min_side, options.max_side);
    return 2;
  }
  try {
    const auto start = std::chrono::steady_clock::now();
    const data::SynthResult result = data::make_synthetic_mura(out, options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("wrote %s: %lld images in %lld studies of %lld patients (%lld abnormal studies, %lld defect boxes) "
                "in %.2f s\n",
                result.root.c_str(), (long long)result.images, (long long)result.studies, (long long)result.patients,
                (long long)result.abnormal_studies, (long long)result.defect_boxes, seconds);
    const data::MuraIndex index = data::load_mura_index(result.root);
    std::printf("%s", data::describe_index(index).c_str());
    const std::string report = index.report.summary();
    if (!report.empty()) std::printf("index notes:\n%s", report.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
