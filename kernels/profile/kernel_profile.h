// A kernel profile: GPU activities (kernels, copies, fills) with their start and end times, summed per
// name and printed as a markdown table of the top names by total time. The CUPTI injection library
// (kernel_profile_cupti.cpp) feeds it from a running process; this part knows no CUDA, so it is tested on
// the CPU.
//
//   KernelProfile profile;
//   profile.add_window(t0, t1);                      // optional: count only activities starting in [t0, t1]
//   profile.add("void relu_kernel<float>(...)", start_ns, end_ns);
//   std::string table = profile.markdown("DenseNet-201 training, batch 32", 25);
//
// Per name: calls, total, mean, min and max duration, share of the total. The total is the sum of the
// activities' durations (busy time; activities that overlap on several streams count twice). The span is
// the first start to the last end among the counted activities: busy / span near 1 means the GPU never
// waited; much less, that it waited for the host (launches, synchronisations).
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace kernels::profile {

class KernelProfile {
 public:
  struct Entry {
    std::string name;
    int64_t calls = 0;
    uint64_t total_ns = 0, min_ns = 0, max_ns = 0;
  };

  // [begin_ns, end_ns]: a region to count (profiler start and stop). Without any window, everything counts.
  void add_window(uint64_t begin_ns, uint64_t end_ns);
  // One activity; kept for the end, when the windows are all known.
  void add(std::string name, uint64_t start_ns, uint64_t end_ns);
  // Activities the tracer lost (its buffers full): said in the table's header.
  void add_dropped(uint64_t count) { dropped_ += count; }

  // The names with activities inside the windows, the longest total first (ties by name).
  std::vector<Entry> entries() const;
  uint64_t total_ns() const;  // summed over entries()
  uint64_t span_ns() const;   // first counted start to last counted end; 0 when none counted
  // The table of the `top` longest names (the rest summed on one line), with a header line naming
  // `title`, the activities counted, the busy time and the span, and what was counted: the N profiler
  // ranges, or the whole process when there was none (then setup and warm-up are in it too).
  std::string markdown(const std::string& title, int top) const;

 private:
  bool counted(uint64_t start_ns) const;
  struct Activity {
    uint32_t name;  // index into names_
    uint64_t start_ns, end_ns;
  };
  std::vector<std::pair<uint64_t, uint64_t>> windows_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, uint32_t> name_index_;
  std::vector<Activity> activities_;
  uint64_t dropped_ = 0;
};

// "void kernels::cuda::relu_kernel<float>(long, float const*)" from a mangled device symbol; other names
// as they are. Longer than `max_length` characters: cut, with "..." at the end.
std::string readable_kernel_name(const std::string& name, size_t max_length = 110);

}  // namespace kernels::profile
