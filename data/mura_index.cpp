// Building the MURA index from the CSVs and the folder tree (see mura_index.h for the rules).
#include "data/mura_index.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "data/csv.h"
#include "data/io_util.h"
#include "data/paths.h"
#include "engine/check.h"

namespace fs = std::filesystem;

namespace data {
namespace {

constexpr const char* kPartFolders[kBodyPartCount] = {"XR_ELBOW", "XR_FINGER",  "XR_FOREARM", "XR_HAND",
                                                      "XR_HUMERUS", "XR_SHOULDER", "XR_WRIST"};
constexpr const char* kPartNames[kBodyPartCount] = {"elbow", "finger", "forearm", "hand",
                                                    "humerus", "shoulder", "wrist"};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::string current;
  for (char c : path) {
    if (c == '/' || c == '\\') {
      parts.push_back(current);
      current.clear();
    } else {
      current.push_back(c);
    }
  }
  parts.push_back(current);
  return parts;
}

bool valid_component(const std::string& c) {
  if (c.empty() || c == "." || c == "..") return false;
  for (char ch : c)
    if (ch == '\0') return false;
  return true;
}

// A study's label from its folder name: studyK_positive -> 1, studyK_negative -> 0.
std::optional<int> label_from_study_folder(const std::string& study) {
  const std::string l = lower(study);
  if (ends_with(l, "_positive")) return 1;
  if (ends_with(l, "_negative")) return 0;
  return std::nullopt;
}

}  // namespace

const char* body_part_folder(BodyPart part) { return kPartFolders[static_cast<int>(part)]; }
const char* body_part_name(BodyPart part) { return kPartNames[static_cast<int>(part)]; }

std::optional<BodyPart> parse_body_part(const std::string& text) {
  std::string l = lower(text);
  if (starts_with(l, "xr_")) l = l.substr(3);
  for (int i = 0; i < kBodyPartCount; ++i)
    if (l == kPartNames[i]) return static_cast<BodyPart>(i);
  return std::nullopt;
}

std::vector<BodyPart> parse_body_parts(const std::string& list) {
  std::vector<BodyPart> parts;
  if (list.empty() || lower(list) == "all") return std::vector<BodyPart>(kAllBodyParts.begin(), kAllBodyParts.end());
  std::stringstream stream(list);
  std::string item;
  while (std::getline(stream, item, ',')) {
    const std::optional<BodyPart> part = parse_body_part(item);
    ENGINE_CHECK(part.has_value()) << "unknown body part '" << item
                                   << "' (use elbow, finger, forearm, hand, humerus, shoulder, wrist or all)";
    if (std::find(parts.begin(), parts.end(), *part) == parts.end()) parts.push_back(*part);
  }
  ENGINE_CHECK(!parts.empty()) << "empty body-part list '" << list << "'";
  return parts;
}

const char* subset_name(Subset subset) { return subset == Subset::train ? "train" : "valid"; }

std::string MuraPath::study_key() const {
  return std::string(subset_name(subset)) + "/" + body_part_folder(part) + "/" + patient + "/" + study;
}
std::string MuraPath::relative() const { return study_key() + "/" + file; }

std::optional<MuraPath> parse_mura_path(const std::string& path) {
  std::vector<std::string> parts = split_path(path);
  // One trailing slash marks a study path.
  if (!parts.empty() && parts.back().empty()) parts.pop_back();
  if (parts.size() < 4 || parts.size() > 6) return std::nullopt;
  size_t first = 0;
  if (parts[0] != "train" && parts[0] != "valid") first = 1;  // a root folder such as MURA-v1.1
  const size_t depth = parts.size() - first;
  if (depth != 4 && depth != 5) return std::nullopt;
  for (size_t i = first; i < parts.size(); ++i)
    if (!valid_component(parts[i])) return std::nullopt;
  MuraPath out;
  if (parts[first] == "train") out.subset = Subset::train;
  else if (parts[first] == "valid") out.subset = Subset::valid;
  else return std::nullopt;
  if (!starts_with(parts[first + 1], "XR_")) return std::nullopt;
  const std::optional<BodyPart> part = parse_body_part(parts[first + 1]);
  if (!part) return std::nullopt;
  out.part = *part;
  out.patient = parts[first + 2];
  if (!starts_with(out.patient, "patient") || out.patient.size() == 7) return std::nullopt;
  out.study = parts[first + 3];
  if (!starts_with(lower(out.study), "study")) return std::nullopt;
  out.folder_label = label_from_study_folder(out.study);
  if (depth == 5) out.file = parts[first + 4];
  return out;
}

// ---------------------------------------------------------------------------------------------------
// The report

const char* index_issue_description(IndexIssue issue) {
  switch (issue) {
    case IndexIssue::missing_csv: return "CSV file(s) missing; their information was taken from the folders";
    case IndexIssue::malformed_csv_row: return "CSV row(s) that are not MURA paths/labels (ignored)";
    case IndexIssue::duplicate_csv_row: return "duplicate CSV row(s) (kept once)";
    case IndexIssue::csv_image_missing_file: return "image CSV row(s) whose file does not exist (left out)";
    case IndexIssue::unlisted_image_file:
      return "image file(s) in the folders that the image CSV does not list (left out)";
    case IndexIssue::study_without_label:
      return "image(s) whose study has no label (no labeled-CSV row, no _positive/_negative folder; left out)";
    case IndexIssue::label_from_folder_only:
      return "study(ies) missing from the labeled-studies CSV (label taken from the folder name)";
    case IndexIssue::label_conflict:
      return "study(ies) whose CSV label contradicts the folder name (left out)";
    case IndexIssue::labeled_study_without_images: return "labeled study(ies) with no images";
  }
  return "?";
}

bool index_issue_is_inconsistency(IndexIssue issue) { return issue != IndexIssue::missing_csv; }

void IndexReport::add(IndexIssue issue, const std::string& example) {
  Entry& entry = entries[static_cast<int>(issue)];
  ++entry.count;
  if (entry.examples.size() < kMaxExamples) entry.examples.push_back(example);
}

int64_t IndexReport::inconsistencies() const {
  int64_t total = 0;
  for (int i = 0; i < kIndexIssueCount; ++i)
    if (index_issue_is_inconsistency(static_cast<IndexIssue>(i))) total += entries[i].count;
  return total;
}

std::string IndexReport::summary() const {
  std::ostringstream out;
  for (int i = 0; i < kIndexIssueCount; ++i) {
    const Entry& entry = entries[i];
    if (entry.count == 0) continue;
    out << entry.count << " " << index_issue_description(static_cast<IndexIssue>(i)) << " (e.g. ";
    for (size_t k = 0; k < entry.examples.size(); ++k) out << (k ? "; " : "") << entry.examples[k];
    out << ")\n";
  }
  return out.str();
}

int64_t MuraIndex::count_images(Subset subset) const {
  int64_t n = 0;
  for (const MuraImage& image : images) n += studies[image.study].subset == subset;
  return n;
}

int64_t MuraIndex::count_studies(Subset subset) const {
  int64_t n = 0;
  for (const MuraStudy& study : studies) n += study.subset == subset;
  return n;
}

// ---------------------------------------------------------------------------------------------------
// Loading

namespace {

std::string resolve_root(const std::string& given) {
  const fs::path root(given);
  auto looks_like_mura = [](const fs::path& p) {
    std::error_code ec;
    return fs::is_directory(p / "train", ec) || fs::is_directory(p / "valid", ec) ||
           fs::exists(p / "train_image_paths.csv", ec) || fs::exists(p / "valid_image_paths.csv", ec);
  };
  std::error_code ec;
  ENGINE_CHECK(fs::is_directory(root, ec)) << "MURA root " << given << " is not a folder";
  if (looks_like_mura(root)) return root.string();
  if (looks_like_mura(root / "MURA-v1.1")) return (root / "MURA-v1.1").string();
  ENGINE_FAIL() << "MURA root " << given
                << " holds neither train/, valid/ nor train_image_paths.csv, valid_image_paths.csv (nor a "
                   "MURA-v1.1/ folder with them); point it at the folder that holds the CSVs";
}

// The image files found in <root>/<subset>/XR_*/patient*/study*/, as relative paths.
std::set<std::string> scan_subset(const std::string& root, Subset subset, IndexReport& report) {
  std::set<std::string> found;
  const fs::path base = fs::path(root) / subset_name(subset);
  std::error_code ec;
  if (!fs::is_directory(base, ec)) return found;
  auto sorted_dirs = [](const fs::path& dir) {
    std::vector<fs::directory_entry> entries;
    std::error_code e;
    for (fs::directory_iterator it(dir, e), end; !e && it != end; it.increment(e)) entries.push_back(*it);
    std::sort(entries.begin(), entries.end(),
              [](const fs::directory_entry& a, const fs::directory_entry& b) { return a.path() < b.path(); });
    return entries;
  };
  for (const fs::directory_entry& part_dir : sorted_dirs(base)) {
    std::error_code e;
    if (!part_dir.is_directory(e)) continue;
    const std::string part_name = part_dir.path().filename().string();
    if (starts_with(part_name, "._")) {
      ++report.sidecars_skipped;
      continue;
    }
    for (const fs::directory_entry& patient_dir : sorted_dirs(part_dir.path())) {
      if (!patient_dir.is_directory(e)) continue;
      for (const fs::directory_entry& study_dir : sorted_dirs(patient_dir.path())) {
        if (!study_dir.is_directory(e)) continue;
        for (const fs::directory_entry& file : sorted_dirs(study_dir.path())) {
          const std::string name = file.path().filename().string();
          if (starts_with(name, "._")) {
            ++report.sidecars_skipped;
            continue;
          }
          if (!file.is_regular_file(e) || !has_image_extension(name)) {
            ++report.other_files_skipped;
            continue;
          }
          const std::string relative = std::string(subset_name(subset)) + "/" + part_name + "/" +
                                       patient_dir.path().filename().string() + "/" +
                                       study_dir.path().filename().string() + "/" + name;
          if (parse_mura_path(relative) && relative_image_path_problem(relative).empty()) found.insert(relative);
          else ++report.other_files_skipped;
        }
      }
    }
  }
  return found;
}

struct SubsetData {
  std::vector<std::string> images;        // relative image paths, deduplicated
  std::map<std::string, int> csv_labels;  // study key -> label from the labeled CSV
  std::set<std::string> conflicting_csv;  // study keys listed twice with different labels
  bool have_label_csv = false;
};

SubsetData read_subset(const std::string& root, Subset subset, IndexReport& report) {
  SubsetData out;
  const std::string name = subset_name(subset);
  const std::set<std::string> on_disk = scan_subset(root, subset, report);

  // Images.
  const std::string image_csv = root + "/" + name + "_image_paths.csv";
  std::error_code ec;
  if (fs::exists(image_csv, ec)) {
    const std::vector<CsvRow> rows = parse_csv(read_file_text(image_csv, uint64_t(1) << 30), image_csv);
    std::unordered_set<std::string> listed;
    for (const CsvRow& row : rows) {
      const std::optional<MuraPath> parsed = parse_mura_path(row.fields[0]);
      // The canonical path (joined to the root and opened) must follow the one path rule (data/paths.h).
      if (!parsed || parsed->file.empty() || !relative_image_path_problem(parsed->relative()).empty()) {
        report.add(IndexIssue::malformed_csv_row,
                   name + "_image_paths.csv line " + std::to_string(row.line) + ": '" + row.fields[0] + "'");
        continue;
      }
      const std::string relative = parsed->relative();
      if (!listed.insert(relative).second) {
        report.add(IndexIssue::duplicate_csv_row, name + "_image_paths.csv line " + std::to_string(row.line) +
                                                      ": " + relative);
        continue;
      }
      if (!on_disk.count(relative)) {
        report.add(IndexIssue::csv_image_missing_file, relative);
        continue;
      }
      out.images.push_back(relative);
    }
    for (const std::string& file : on_disk)
      if (!listed.count(file)) report.add(IndexIssue::unlisted_image_file, file);
  } else {
    out.images.assign(on_disk.begin(), on_disk.end());
    if (fs::is_directory(fs::path(root) / name, ec))
      report.add(IndexIssue::missing_csv, name + "_image_paths.csv (" + std::to_string(on_disk.size()) +
                                              " images taken from the folders)");
  }

  // Labels.
  const std::string label_csv = root + "/" + name + "_labeled_studies.csv";
  if (fs::exists(label_csv, ec)) {
    out.have_label_csv = true;
    const std::vector<CsvRow> rows = parse_csv(read_file_text(label_csv, uint64_t(1) << 30), label_csv);
    for (const CsvRow& row : rows) {
      const std::string where = name + "_labeled_studies.csv line " + std::to_string(row.line);
      const std::optional<MuraPath> parsed = parse_mura_path(row.fields[0]);
      const std::string label_text = row.fields.size() >= 2 ? row.fields[1] : "";
      if (!parsed || !parsed->file.empty() || (label_text != "0" && label_text != "1")) {
        report.add(IndexIssue::malformed_csv_row, where + ": '" + row.fields[0] + "," + label_text + "'");
        continue;
      }
      const std::string key = parsed->study_key();
      const int label = label_text == "1" ? 1 : 0;
      const auto [it, inserted] = out.csv_labels.emplace(key, label);
      if (!inserted) {
        if (it->second != label) out.conflicting_csv.insert(key);
        else report.add(IndexIssue::duplicate_csv_row, where + ": " + key);
      }
    }
  } else if (!out.images.empty()) {
    report.add(IndexIssue::missing_csv, name + "_labeled_studies.csv (labels taken from the folder names)");
  }
  return out;
}

}  // namespace

MuraIndex load_mura_index(const std::string& given_root, const IndexOptions& options) {
  MuraIndex index;
  index.root = resolve_root(given_root);
  IndexReport& report = index.report;

  struct Pending {
    MuraPath path;
    std::vector<std::string> images;
  };
  std::map<std::string, Pending> by_study;  // sorted by key
  std::map<std::string, int> csv_labels;
  std::set<std::string> conflicting_csv;
  std::set<std::string> labeled_subsets;  // subsets that have a labeled CSV
  for (Subset subset : {Subset::train, Subset::valid}) {
    SubsetData data = read_subset(index.root, subset, report);
    if (data.have_label_csv) labeled_subsets.insert(subset_name(subset));
    csv_labels.insert(data.csv_labels.begin(), data.csv_labels.end());
    conflicting_csv.insert(data.conflicting_csv.begin(), data.conflicting_csv.end());
    for (const std::string& image : data.images) {
      const MuraPath parsed = *parse_mura_path(image);
      Pending& pending = by_study[parsed.study_key()];
      if (pending.images.empty()) pending.path = parsed;
      pending.images.push_back(image);
    }
  }

  for (auto& [key, pending] : by_study) {
    const MuraPath& path = pending.path;
    const auto csv = csv_labels.find(key);
    const bool subset_has_csv = labeled_subsets.count(subset_name(path.subset)) > 0;
    int label = 0;
    if (conflicting_csv.count(key)) {
      report.add(IndexIssue::label_conflict, key + " (listed with both labels)");
      continue;
    }
    if (csv != csv_labels.end() && path.folder_label && *path.folder_label != csv->second) {
      report.add(IndexIssue::label_conflict,
                 key + " (CSV says " + std::to_string(csv->second) + ")");
      continue;
    }
    if (csv != csv_labels.end()) {
      label = csv->second;
    } else if (path.folder_label) {
      label = *path.folder_label;
      if (subset_has_csv) report.add(IndexIssue::label_from_folder_only, key);
    } else {
      for (const std::string& image : pending.images) report.add(IndexIssue::study_without_label, image);
      continue;
    }
    MuraStudy study;
    study.key = key;
    study.subset = path.subset;
    study.part = path.part;
    study.patient = path.patient;
    study.label = label;
    const int64_t study_index = static_cast<int64_t>(index.studies.size());
    std::sort(pending.images.begin(), pending.images.end());
    for (const std::string& image : pending.images) {
      study.images.push_back(static_cast<int64_t>(index.images.size()));
      index.images.push_back({image, study_index});
    }
    index.studies.push_back(std::move(study));
  }
  for (const auto& [key, label] : csv_labels) {
    (void)label;
    if (!by_study.count(key)) report.add(IndexIssue::labeled_study_without_images, key);
  }

  if (options.strict && report.inconsistencies() > 0)
    ENGINE_FAIL() << "MURA root " << index.root << " has " << report.inconsistencies()
                  << " inconsistencies (strict mode):\n" << report.summary();
  ENGINE_CHECK(!index.images.empty()) << "MURA root " << index.root << " yields no labeled images"
                                      << (report.summary().empty() ? "" : ":\n" + report.summary());
  return index;
}

std::string describe_index(const MuraIndex& index) {
  struct Counts {
    int64_t studies[2] = {0, 0};  // normal, abnormal
    int64_t images[2] = {0, 0};
  };
  Counts counts[2][kBodyPartCount];
  for (const MuraStudy& study : index.studies) {
    Counts& c = counts[static_cast<int>(study.subset)][static_cast<int>(study.part)];
    c.studies[study.label] += 1;
    c.images[study.label] += static_cast<int64_t>(study.images.size());
  }
  std::ostringstream out;
  out << "part       train studies N/A  images N/A     valid studies N/A  images N/A\n";
  for (int p = 0; p < kBodyPartCount; ++p) {
    char line[160];
    const Counts& t = counts[0][p];
    const Counts& v = counts[1][p];
    std::snprintf(line, sizeof(line), "%-10s %6lld/%-6lld %7lld/%-7lld %10lld/%-6lld %7lld/%-7lld\n", kPartNames[p],
                  (long long)t.studies[0], (long long)t.studies[1], (long long)t.images[0], (long long)t.images[1],
                  (long long)v.studies[0], (long long)v.studies[1], (long long)v.images[0], (long long)v.images[1]);
    out << line;
  }
  out << "total: " << index.images.size() << " images in " << index.studies.size() << " studies ("
      << index.count_images(Subset::train) << " train, " << index.count_images(Subset::valid) << " valid)\n";
  return out.str();
}

}  // namespace data
