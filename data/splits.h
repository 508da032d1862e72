// Train/validation/test splits of a MURA index, seeded and written to files so that a run can be
// reproduced and audited, and MURA's per-study-type class weights.
//
// Protocols (`parts` filters images by body part first in all three):
//   seed     - the study's protocol: train+valid image lists merged, N images sampled (seeded), then
//              80/10/10 at image level. One patient can land on several sides (the study's leak).
//   patient  - the same proportions, but patients are sampled and assigned whole: no patient on two
//              sides. Sizes are within one patient's images of the targets.
//   official - MURA's valid set is the test set; the train set is split by patient into
//              train/validation (validation gets val_fraction / (train_fraction + val_fraction) of the
//              images, 1/9 by default). N, when given, caps train+validation (whole patients).
//
// Class weights (Rajpurkar et al. 2017, MURA): for study type (body part) T with A_T abnormal and N_T
// normal images in the training split, an abnormal image weighs N_T / (A_T + N_T) and a normal image
// A_T / (A_T + N_T). A part with only one class in the training split gets 0.5 / 0.5 (a zero weight
// would silence that class) and is named in ClassWeights::notes.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/mura_index.h"

namespace data {

enum class SplitProtocol : uint8_t { seed, patient, official };
const char* split_protocol_name(SplitProtocol protocol);
SplitProtocol parse_split_protocol(const std::string& name);  // throws naming the choices

struct SplitOptions {
  SplitProtocol protocol = SplitProtocol::seed;
  uint64_t seed = 0;
  int64_t sample_images = 0;  // N; 0 = every (filtered) image
  double train_fraction = 0.8;
  double val_fraction = 0.1;  // test gets the rest (seed, patient)
  std::vector<BodyPart> parts;  // empty = all seven
};

// One image of a split. `path` is relative to the MURA root; `study` is the study key.
struct SplitEntry {
  std::string path;
  int label = 0;  // 1 = abnormal (the study's label)
  std::string patient;
  std::string study;
  BodyPart part = BodyPart::elbow;
  float weight = 1.0f;  // the loss weight (class weights); not written to the split files
};

struct Split {
  SplitOptions options;
  std::vector<SplitEntry> train, validation, test;
};

Split make_split(const MuraIndex& index, const SplitOptions& options);

// Writes <folder>/train.csv, validation.csv, test.csv (header "path,label,patient,study,body_part",
// body_part as XR_ELBOW, ...) and split.txt (the options and counts), each atomically. Creates folder.
void write_split(const Split& split, const std::string& folder);
// Reads the three lists back (options stay default). Throws naming the file and line of a bad row.
Split read_split(const std::string& folder);
// One list file (for the fuzzer and tools). Every path must follow the relative image path rule
// (data/paths.h): a row naming "../../etc/passwd" or "/etc/passwd" is an error naming file and line.
std::vector<SplitEntry> parse_split_list(const std::string& text, const std::string& source);
// The text of one list file (header and rows), as write_split writes it.
std::string split_list_text(const std::vector<SplitEntry>& list);

struct ClassWeights {
  // Per body part: {weight of a normal image, weight of an abnormal image}.
  std::array<std::array<float, 2>, kBodyPartCount> weight{};
  std::array<std::array<int64_t, 2>, kBodyPartCount> images{};  // {N_T, A_T} counted
  std::vector<std::string> notes;  // parts that fell back to 0.5 / 0.5
  float of(BodyPart part, int label) const { return weight[static_cast<int>(part)][label ? 1 : 0]; }
};

ClassWeights compute_class_weights(const std::vector<SplitEntry>& training);
// Sets SplitEntry::weight on every list of the split.
void apply_class_weights(Split& split, const ClassWeights& weights);

}  // namespace data
