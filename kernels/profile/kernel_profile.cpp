// The kernel profile's bookkeeping and table (see kernel_profile.h).
#include "kernels/profile/kernel_profile.h"

#include <cxxabi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>

namespace kernels::profile {

void KernelProfile::add_window(uint64_t begin_ns, uint64_t end_ns) {
  if (end_ns >= begin_ns) windows_.emplace_back(begin_ns, end_ns);
}

void KernelProfile::add(std::string name, uint64_t start_ns, uint64_t end_ns) {
  auto [it, inserted] = name_index_.try_emplace(name, static_cast<uint32_t>(names_.size()));
  if (inserted) names_.push_back(std::move(name));
  activities_.push_back({it->second, start_ns, std::max(start_ns, end_ns)});
}

bool KernelProfile::counted(uint64_t start_ns) const {
  if (windows_.empty()) return true;
  for (const auto& [begin, end] : windows_)
    if (start_ns >= begin && start_ns <= end) return true;
  return false;
}

std::vector<KernelProfile::Entry> KernelProfile::entries() const {
  std::vector<Entry> by_name(names_.size());
  for (const Activity& a : activities_) {
    if (!counted(a.start_ns)) continue;
    Entry& e = by_name[a.name];
    const uint64_t d = a.end_ns - a.start_ns;
    e.min_ns = e.calls == 0 ? d : std::min(e.min_ns, d);
    e.max_ns = std::max(e.max_ns, d);
    e.total_ns += d;
    ++e.calls;
  }
  std::vector<Entry> out;
  for (size_t i = 0; i < by_name.size(); ++i) {
    if (by_name[i].calls == 0) continue;
    by_name[i].name = names_[i];
    out.push_back(std::move(by_name[i]));
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) {
    return a.total_ns != b.total_ns ? a.total_ns > b.total_ns : a.name < b.name;
  });
  return out;
}

uint64_t KernelProfile::total_ns() const {
  uint64_t total = 0;
  for (const Entry& e : entries()) total += e.total_ns;
  return total;
}

uint64_t KernelProfile::span_ns() const {
  uint64_t first = std::numeric_limits<uint64_t>::max(), last = 0;
  for (const Activity& a : activities_) {
    if (!counted(a.start_ns)) continue;
    first = std::min(first, a.start_ns);
    last = std::max(last, a.end_ns);
  }
  return last >= first && last > 0 ? last - first : 0;
}

namespace {

std::string format(const char* fmt, double value) {
  char text[64];
  std::snprintf(text, sizeof text, fmt, value);
  return text;
}

// In code spans (template arguments are not HTML, * and _ not emphasis); a | escaped for the table.
std::string escaped_for_table(const std::string& s) {
  std::string out = "`";
  for (char c : s) {
    if (c == '|') out += '\\';
    out += c == '`' ? '\'' : c;
  }
  return out + "`";
}

}  // namespace

std::string KernelProfile::markdown(const std::string& title, int top) const {
  const std::vector<Entry> all = entries();
  uint64_t total = 0;
  int64_t calls = 0;
  for (const Entry& e : all) {
    total += e.total_ns;
    calls += e.calls;
  }
  const uint64_t span = span_ns();
  std::string s = "### " + title + "\n\n";
  if (all.empty()) return s + "No GPU activity was recorded in the profiled region.\n";
  s += std::to_string(calls) + " activities, " + std::to_string(all.size()) + " names: busy " +
       format("%.3f", total * 1e-6) + " ms over a span of " + format("%.3f", span * 1e-6) + " ms" +
       (span > 0 ? " (" + format("%.0f", 100.0 * static_cast<double>(total) / static_cast<double>(span)) + "% busy)"
                 : std::string()) +
       ".\n\n";
  s += windows_.empty() ? std::string("Counted: the whole process (no profiler range was marked: setup and warm-up are in it).\n\n")
                        : "Counted: the activities starting inside " + std::to_string(windows_.size()) +
                              " profiler range(s).\n\n";
  if (dropped_ > 0) s += "**" + std::to_string(dropped_) + " activities were dropped by the tracer: the table misses them.**\n\n";
  s += "| # | kernel | calls | total ms | share | mean us | min us | max us |\n";
  s += "|---|---|---|---|---|---|---|---|\n";
  const auto share = [total](uint64_t ns) {
    return format("%.1f%%", total ? 100.0 * static_cast<double>(ns) / static_cast<double>(total) : 0.0);
  };
  const size_t shown = std::min(all.size(), static_cast<size_t>(std::max(top, 0)));
  for (size_t i = 0; i < shown; ++i) {
    const Entry& e = all[i];
    s += "| " + std::to_string(i + 1) + " | " + escaped_for_table(readable_kernel_name(e.name)) + " | " +
         std::to_string(e.calls) + " | " + format("%.3f", e.total_ns * 1e-6) + " | " + share(e.total_ns) + " | " +
         format("%.1f", static_cast<double>(e.total_ns) / static_cast<double>(e.calls) * 1e-3) + " | " +
         format("%.1f", e.min_ns * 1e-3) + " | " + format("%.1f", e.max_ns * 1e-3) + " |\n";
  }
  if (shown < all.size()) {
    uint64_t rest = 0;
    int64_t rest_calls = 0;
    for (size_t i = shown; i < all.size(); ++i) {
      rest += all[i].total_ns;
      rest_calls += all[i].calls;
    }
    s += "| | (" + std::to_string(all.size() - shown) + " more names) | " + std::to_string(rest_calls) + " | " +
         format("%.3f", rest * 1e-6) + " | " + share(rest) + " | | | |\n";
  }
  return s;
}

std::string readable_kernel_name(const std::string& name, size_t max_length) {
  std::string readable = name;
  if (name.rfind("_Z", 0) == 0) {
    int status = 0;
    const std::unique_ptr<char, void (*)(void*)> demangled(
        abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status), std::free);
    if (status == 0 && demangled) readable = demangled.get();
  }
  if (readable.size() > max_length && max_length > 3) readable = readable.substr(0, max_length - 3) + "...";
  return readable;
}

}  // namespace kernels::profile
