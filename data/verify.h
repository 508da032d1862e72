// Decoding every image once to find the unreadable ones (the `--verify-data` scan and mura_verify).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/image.h"

namespace data {

struct BadFile {
  std::string path;
  std::string error;  // the decoder's message (it names the file)
};

struct VerifyResult {
  int64_t checked = 0;
  std::vector<BadFile> bad;  // in the order of `paths`
  int64_t gray = 0, color = 0;  // decoded images with 1 and 3 distinct channels
  int max_side = 0;             // the longest side seen
  double seconds = 0;
};

// Decodes every file with `threads` threads (0 = hardware concurrency). `progress`, when given, is
// called from the calling thread now and then with the number of files done.
VerifyResult verify_images(const std::vector<std::string>& paths, int threads, const DecodeLimits& limits = {},
                           const std::function<void(int64_t)>& progress = {});

// "path,error" rows with a header, written atomically.
void write_bad_file_list(const std::string& path, const std::vector<BadFile>& bad);

}  // namespace data
