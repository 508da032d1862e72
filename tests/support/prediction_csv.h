// Reading back the apps' per-image prediction CSVs (predictions_images.csv, predict's --out) in tests.
#pragma once
#include <map>
#include <string>

#include "data/csv.h"
#include "data/io_util.h"

namespace test_support {

// path (the first column) -> the "probability" column.
inline std::map<std::string, double> probabilities_by_path(const std::string& csv_path) {
  const auto rows = data::parse_csv(data::read_file_text(csv_path), csv_path);
  std::map<std::string, double> p;
  size_t column = 0;
  for (size_t i = 0; i < rows[0].fields.size(); ++i)
    if (rows[0].fields[i] == "probability") column = i;
  for (size_t r = 1; r < rows.size(); ++r) p[rows[r].fields[0]] = std::stod(rows[r].fields[column]);
  return p;
}

}  // namespace test_support
