// mura_verify: indexes a MURA root, decodes every image once and writes the list of unreadable files
// (the `--verify-data` scan). Prints the index's inconsistencies, the counts and the bad files.
//   mura_verify ROOT [--out FILE] [--threads N] [--max-side PX] [--strict]   (or --root ROOT)
// Exit status: 0 all images decode, 1 some do not (or an error), 2 bad usage.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "data/mura_index.h"
#include "data/verify.h"
#include "experiment/flags.h"

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::string root, out = "bad_files.csv";
  int threads = 2;
  data::DecodeLimits limits;
  data::IndexOptions index_options;
  experiment::FlagParser flags(
      "mura_verify",
      "Decodes every image of the MURA root ROOT (the folder with the CSVs, or its parent) once and writes the\n"
      "unreadable ones as CSV (path,error) to --out. Exit status 0 when every image decodes, 1 otherwise.");
  flags.allow_positional("ROOT", "the MURA root (or give --root)");
  flags.add("--root", &root, "the MURA root (the same as the positional ROOT)", "DIR");
  flags.add("-o,--out", &out, "the list of unreadable files (CSV: path,error)", "FILE");
  flags.add("-j,--threads", &threads, "decoding threads", 1, 256);
  flags.add("--max-side", &limits.max_side, "the longest image side accepted, in pixels", 1, 65535, "PX");
  flags.add_switch("--strict", &index_options.strict, "fail on any index inconsistency");
  if (!experiment::parse_flags_or_exit(flags, argc, argv)) return 0;
  if (const std::string error = experiment::take_positional_or_flag(flags, "--root", "MURA root", "mura_verify ROOT", root);
      !error.empty()) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
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
