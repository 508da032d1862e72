// The MURA-v1.1 index: every image with its study, patient, body part, subset and label.
//
// A MURA root is the folder that holds the four CSVs (no header rows) and train/, valid/:
//   train_image_paths.csv     MURA-v1.1/train/XR_SHOULDER/patient00001/study1_positive/image1.png
//   train_labeled_studies.csv MURA-v1.1/train/XR_SHOULDER/patient00001/study1_positive/,1
//   valid_image_paths.csv, valid_labeled_studies.csv likewise.
// Images come from the image-path CSVs (or, when a CSV is missing, from the folders); labels from the
// labeled-studies CSVs and the studyK_positive|negative folder names (positive = abnormal = 1). What real
// copies contain is tolerated: macOS `._*` sidecar files, CRLF line ends, a missing CSV whose
// information the folders give. Inconsistencies are counted, with examples, in IndexReport; an image
// whose label is unknown or contradictory is left out, never guessed.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace data {

enum class BodyPart : uint8_t { elbow, finger, forearm, hand, humerus, shoulder, wrist };
constexpr int kBodyPartCount = 7;
constexpr std::array<BodyPart, kBodyPartCount> kAllBodyParts = {
    BodyPart::elbow, BodyPart::finger,   BodyPart::forearm, BodyPart::hand,
    BodyPart::humerus, BodyPart::shoulder, BodyPart::wrist};

const char* body_part_folder(BodyPart part);  // "XR_ELBOW"
const char* body_part_name(BodyPart part);    // "elbow"
// Accepts "XR_ELBOW", "ELBOW", "elbow" (any case); nullopt otherwise.
std::optional<BodyPart> parse_body_part(const std::string& text);
// A comma-separated list ("elbow,wrist"); "" or "all" means every part. Throws naming a bad entry.
std::vector<BodyPart> parse_body_parts(const std::string& list);

enum class Subset : uint8_t { train, valid };
const char* subset_name(Subset subset);  // "train" | "valid"

// The parts of an image or study path. Accepted forms (the leading root folder is optional and may
// have any name): "MURA-v1.1/train/XR_HAND/patient00011/study1_negative/image1.png" or
// "train/XR_HAND/patient00011/study1_negative/" (a study: no file).
struct MuraPath {
  Subset subset = Subset::train;
  BodyPart part = BodyPart::elbow;
  std::string patient;      // "patient00011"
  std::string study;        // "study1_negative"
  std::optional<int> folder_label;  // 1 for *_positive, 0 for *_negative, none for e.g. "study1"
  std::string file;         // "image1.png" ("" for a study path)

  std::string study_key() const;  // "train/XR_HAND/patient00011/study1_negative"
  std::string relative() const;   // study_key() + "/" + file
};
// nullopt when `path` is not shaped like a MURA image/study path (wrong depth, unknown subset or part,
// a patient folder not named patient*, "..", empty components).
std::optional<MuraPath> parse_mura_path(const std::string& path);

struct MuraStudy {
  std::string key;  // "train/XR_HAND/patient00011/study1_negative" (relative to the root)
  Subset subset = Subset::train;
  BodyPart part = BodyPart::elbow;
  std::string patient;
  int label = 0;  // 1 = abnormal
  std::vector<int64_t> images;  // indices into MuraIndex::images, sorted
};

struct MuraImage {
  std::string path;  // relative to the root: "train/XR_HAND/patient00011/study1_negative/image1.png"
  int64_t study = 0;  // index into MuraIndex::studies
};

// What did not add up while indexing. Each kind has a count and the first few examples.
enum class IndexIssue : uint8_t {
  missing_csv,                // a CSV is absent; its information came from the folders
  malformed_csv_row,          // a row that is not a MURA path (or label) at all
  duplicate_csv_row,          // the same image or study listed twice (kept once)
  csv_image_missing_file,     // an image-path row whose file does not exist (left out)
  unlisted_image_file,        // an image file in the folders that the image CSV does not list (left out)
  study_without_label,        // images whose study has neither a CSV label nor a positive/negative folder (left out)
  label_from_folder_only,     // a study missing from the labeled CSV; its folder name gave the label
  label_conflict,             // CSV label and folder name disagree (the study is left out)
  labeled_study_without_images,  // a labeled-studies row with no images
};
constexpr int kIndexIssueCount = 9;
const char* index_issue_description(IndexIssue issue);
// Issues that are only information (not a disagreement in the data): missing_csv.
bool index_issue_is_inconsistency(IndexIssue issue);

struct IndexReport {
  struct Entry {
    int64_t count = 0;
    std::vector<std::string> examples;  // at most kMaxExamples
  };
  static constexpr size_t kMaxExamples = 5;
  std::array<Entry, kIndexIssueCount> entries{};
  int64_t sidecars_skipped = 0;    // `._*` files ignored
  int64_t other_files_skipped = 0; // non-image files in study folders (.DS_Store, ...)

  void add(IndexIssue issue, const std::string& example);
  int64_t count(IndexIssue issue) const { return entries[static_cast<int>(issue)].count; }
  int64_t inconsistencies() const;  // total over the inconsistency kinds
  // One line per non-zero kind: "<count> <description> (e.g. <examples>)"; "" when there is nothing.
  std::string summary() const;
};

struct MuraIndex {
  std::string root;  // the folder holding train/, valid/ and the CSVs
  std::vector<MuraStudy> studies;  // sorted by key
  std::vector<MuraImage> images;   // sorted by path
  IndexReport report;

  const MuraStudy& study_of(int64_t image) const { return studies[images[image].study]; }
  std::string file_path(int64_t image) const { return root + "/" + images[image].path; }
  int64_t count_images(Subset subset) const;
  int64_t count_studies(Subset subset) const;
};

struct IndexOptions {
  // Throw (with the report's summary) when any inconsistency was found, instead of leaving items out.
  bool strict = false;
};

// Reads a MURA root. `root` may also be the folder that contains MURA-v1.1/. Throws when the root has
// neither the CSVs nor train/ and valid/ folders, or when no image is found.
MuraIndex load_mura_index(const std::string& root, const IndexOptions& options = {});

// Counts per (subset, part, label) of studies and images, as a small table (for logs and the docs).
std::string describe_index(const MuraIndex& index);

}  // namespace data
