// libFuzzer target: the CSV reader (data::parse_csv), MURA path parsing (data::parse_mura_path) and
// the split-list reader (data::parse_split_list) on arbitrary text. Checks that writing the parsed
// rows back and reading them again gives the same rows, and that parsed MURA paths re-parse to
// themselves. Only engine::Error may come out.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "data/csv.h"
#include "data/mura_index.h"
#include "data/splits.h"
#include "engine/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  const std::string text(reinterpret_cast<const char*>(bytes), size);
  std::vector<data::CsvRow> rows;
  try {
    rows = data::parse_csv(text, "fuzz.csv");
  } catch (const engine::Error&) {
    return 0;
  }
  std::string written;
  for (const data::CsvRow& row : rows) {
    if (row.fields.empty() || row.line < 1) std::abort();
    written += data::csv_line(row.fields);
    for (const std::string& field : row.fields) {
      const std::optional<data::MuraPath> path = data::parse_mura_path(field);
      if (!path) continue;
      // The canonical form parses back to the same parts.
      const std::string canonical = path->file.empty() ? path->study_key() + "/" : path->relative();
      const std::optional<data::MuraPath> again = data::parse_mura_path(canonical);
      if (!again || again->relative() != path->relative() || again->folder_label != path->folder_label) std::abort();
    }
  }
  const std::vector<data::CsvRow> reread = data::parse_csv(written, "written.csv");
  if (reread.size() != rows.size()) std::abort();
  for (size_t i = 0; i < rows.size(); ++i)
    if (reread[i].fields != rows[i].fields) std::abort();
  try {
    data::parse_split_list(text, "fuzz.csv");
  } catch (const engine::Error&) {
  }
  return 0;
}
