// The verification scan (see verify.h): threads take files from a shared counter.
#include "data/verify.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "data/csv.h"
#include "data/io_util.h"
#include "engine/check.h"

namespace data {

VerifyResult verify_images(const std::vector<std::string>& paths, int threads, const DecodeLimits& limits,
                           const std::function<void(int64_t)>& progress) {
  const auto start = std::chrono::steady_clock::now();
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<int>(std::min<size_t>(threads, std::max<size_t>(1, paths.size())));
  std::atomic<size_t> next{0};
  std::atomic<int64_t> done{0}, gray{0}, color{0};
  std::atomic<int> max_side{0};
  std::mutex mutex;
  std::vector<std::pair<size_t, BadFile>> bad;
  std::exception_ptr fatal;

  auto work = [&]() {
    try {
      for (size_t i = next.fetch_add(1); i < paths.size(); i = next.fetch_add(1)) {
        try {
          const Image image = decode_image_file(paths[i], limits);
          (image.channels == 1 ? gray : color).fetch_add(1);
          int seen = max_side.load();
          const int side = std::max(image.height, image.width);
          while (side > seen && !max_side.compare_exchange_weak(seen, side)) {
          }
        } catch (const engine::Error& e) {
          std::lock_guard<std::mutex> lock(mutex);
          bad.push_back({i, {paths[i], e.what()}});
        }
        done.fetch_add(1);
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (!fatal) fatal = std::current_exception();
      next.store(paths.size());
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(work);
  if (progress) {
    while (done.load() < static_cast<int64_t>(paths.size())) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (fatal) break;
      }
      progress(done.load());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  for (std::thread& t : pool) t.join();
  if (fatal) std::rethrow_exception(fatal);
  if (progress) progress(done.load());

  std::sort(bad.begin(), bad.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  VerifyResult result;
  result.checked = done.load();
  for (auto& entry : bad) result.bad.push_back(std::move(entry.second));
  result.gray = gray.load();
  result.color = color.load();
  result.max_side = max_side.load();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

void write_bad_file_list(const std::string& path, const std::vector<BadFile>& bad) {
  std::string text = csv_line({"path", "error"});
  for (const BadFile& b : bad) text += csv_line({b.path, b.error});
  write_file_atomic(path, text);
}

}  // namespace data
