// libFuzzer target: the split-list reader (data::parse_split_list) on arbitrary text. Every entry it
// accepts must follow the relative image path rule (data/paths.h: nothing outside the data root), and
// writing the list back (data::split_list_text) and reading it again gives the same entries. Only
// engine::Error may come out.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "data/paths.h"
#include "data/splits.h"
#include "engine/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  const std::string text(reinterpret_cast<const char*>(bytes), size);
  std::vector<data::SplitEntry> list;
  try {
    list = data::parse_split_list(text, "fuzz.csv");
  } catch (const engine::Error&) {
    return 0;
  }
  for (const data::SplitEntry& e : list) {
    if (!data::relative_image_path_problem(e.path).empty()) std::abort();
    if (e.path.find("..") != std::string::npos && e.path.find("/../") != std::string::npos) std::abort();
    if (e.path[0] == '/' || (e.label != 0 && e.label != 1)) std::abort();
  }
  const std::vector<data::SplitEntry> again = data::parse_split_list(data::split_list_text(list), "written.csv");
  if (again.size() != list.size()) std::abort();
  for (size_t i = 0; i < list.size(); ++i) {
    const data::SplitEntry &a = list[i], &b = again[i];
    if (a.path != b.path || a.label != b.label || a.patient != b.patient || a.study != b.study || a.part != b.part)
      std::abort();
  }
  return 0;
}
