// mura_verify: indexes a MURA root, decodes every image once and writes the list of unreadable files
// (the `--verify-data` scan). Prints the index's inconsistencies, the counts and the bad files.
// Exit status: 0 all images decode, 1 some do not (or an error), 2 bad usage.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "data/mura_index.h"
#include "data/verify.h"

namespace {

void usage() {
  std::printf(
      "usage: mura_verify --root DIR [--out FILE] [--threads N] [--max-side PX] [--strict]\n"
      "Decodes every image of the MURA root DIR (the folder with the CSVs, or its parent) and writes the\n"
      "unreadable ones as CSV (path,error) to FILE (default bad_files.csv). --strict fails on any index\n"
      "inconsistency. Defaults: 2 threads, images up to 8192 px a side.\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::string root, out = "bad_files.csv";
  int threads = 2;
  data::DecodeLimits limits;
  data::IndexOptions index_options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      usage();
      return 0;
    }
    if (flag == "--strict") {
      index_options.strict = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "error: %s needs a value (see --help)\n", flag.c_str());
      return 2;
    }
    const char* value = argv[++i];
    if (flag == "--root") root = value;
    else if (flag == "--out") out = value;
    else if (flag == "--threads") threads = std::atoi(value);
    else if (flag == "--max-side") limits.max_side = std::atoi(value);
    else {
      std::fprintf(stderr, "error: unknown flag %s (see --help)\n", flag.c_str());
      return 2;
    }
  }
  if (root.empty()) {
    std::fprintf(stderr, "error: --root DIR is required (see --help)\n");
    return 2;
  }
  try {
    const data::MuraIndex index = data::load_mura_index(root, index_options);
    std::printf("MURA root %s\n%s", index.root.c_str(), data::describe_index(index).c_str());
    const std::string report = index.report.summary();
    if (!report.empty()) std::printf("index notes (%lld inconsistencies):\n%s", (long long)index.report.inconsistencies(), report.c_str());
    if (index.report.sidecars_skipped) std::printf("%lld macOS ._* sidecar files ignored\n", (long long)index.report.sidecars_skipped);

    std::vector<std::string> paths;
    for (int64_t i = 0; i < static_cast<int64_t>(index.images.size()); ++i) paths.push_back(index.file_path(i));
    int64_t last_reported = 0;
    const data::VerifyResult result = data::verify_images(paths, threads, limits, [&](int64_t done) {
      if (done - last_reported >= 5000) {
        std::printf("  decoded %lld / %zu\n", (long long)done, paths.size());
        last_reported = done;
      }
    });
    std::printf("decoded %lld images in %.1f s (%.0f images/s): %lld grayscale, %lld color, longest side %d px, "
                "%zu unreadable\n",
                (long long)result.checked, result.seconds, result.checked / std::max(result.seconds, 1e-9),
                (long long)result.gray, (long long)result.color, result.max_side, result.bad.size());
    for (const data::BadFile& bad : result.bad) std::printf("  %s\n", bad.error.c_str());
    data::write_bad_file_list(out, result.bad);
    std::printf("bad-file list written to %s\n", out.c_str());
    return result.bad.empty() ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
