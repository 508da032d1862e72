// mura_synth: writes a synthetic MURA-v1.1 tree (data/synth_mura.h): radiograph-like PNGs of all seven
// body parts, the four CSVs and defect_boxes.csv with the fracture boxes. Deterministic per seed.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "data/mura_index.h"
#include "data/synth_mura.h"
#include "engine/check.h"

namespace {

void usage() {
  std::printf(
      "usage: mura_synth --out DIR [--seed N] [--train-patients N] [--valid-patients N] [--min-side PX]\n"
      "                  [--max-side PX] [--abnormal-fraction X] [--fracture-scale X] [--swelling X]\n"
      "                  [--quirks] [--truncated N] [--threads N]\n"
      "Writes DIR/MURA-v1.1/ shaped like MURA-v1.1: train/ and valid/ folders of grayscale PNGs (some RGB\n"
      "or 16-bit), the four CSVs and defect_boxes.csv. --quirks adds macOS ._* sidecars, a .DS_Store and\n"
      "CRLF line ends; --truncated N cuts N train images short (unreadable files). Defaults: seed 0,\n"
      "56 train and 14 valid patients (about 220 images), sides 200..512 px, 40%% abnormal studies.\n");
}

}  // namespace

int main(int argc, char** argv) {
  data::SynthOptions options;
  std::string out;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      usage();
      return 0;
    }
    if (flag == "--quirks") {
      options.quirks = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "error: %s needs a value (see --help)\n", flag.c_str());
      return 2;
    }
    const char* value = argv[++i];
    if (flag == "--out") out = value;
    else if (flag == "--seed") options.seed = std::strtoull(value, nullptr, 10);
    else if (flag == "--train-patients") options.train_patients = std::atoi(value);
    else if (flag == "--valid-patients") options.valid_patients = std::atoi(value);
    else if (flag == "--min-side") options.min_side = std::atoi(value);
    else if (flag == "--max-side") options.max_side = std::atoi(value);
    else if (flag == "--abnormal-fraction") options.abnormal_fraction = std::strtod(value, nullptr);
    else if (flag == "--fracture-scale") options.fracture_scale = std::strtod(value, nullptr);
    else if (flag == "--swelling") options.swelling = std::strtod(value, nullptr);
    else if (flag == "--truncated") options.truncated_images = std::atoi(value);
    else if (flag == "--threads") options.threads = std::atoi(value);
    else {
      std::fprintf(stderr, "error: unknown flag %s (see --help)\n", flag.c_str());
      return 2;
    }
  }
  if (out.empty()) {
    std::fprintf(stderr, "error: --out DIR is required (see --help)\n");
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
