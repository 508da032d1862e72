// Split protocols, split files and class weights (see splits.h).
#include "data/splits.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "data/csv.h"
#include "data/io_util.h"
#include "data/paths.h"
#include "engine/check.h"
#include "engine/random.h"

namespace data {
namespace {

// The random stream of split sampling (engine::Generator(seed, stream)); other users of the same seed
// (weight init, loader order, augmentation) use other streams.
constexpr uint64_t kSplitStream = 0x5011'7000;

template <typename T>
void shuffle_in_place(std::vector<T>& items, engine::Generator& gen) {
  for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[gen.below(i)]);
}

SplitEntry make_entry(const MuraIndex& index, int64_t image) {
  const MuraStudy& study = index.study_of(image);
  SplitEntry entry;
  entry.path = index.images[image].path;
  entry.label = study.label;
  entry.patient = study.patient;
  entry.study = study.key;
  entry.part = study.part;
  return entry;
}

void sort_by_path(std::vector<SplitEntry>& list) {
  std::sort(list.begin(), list.end(), [](const SplitEntry& a, const SplitEntry& b) { return a.path < b.path; });
}

int64_t rounded(double x) { return static_cast<int64_t>(std::llround(x)); }

// Images grouped by patient, patients in a seeded random order, capped at `cap` images (0 = no cap; the
// last patient is trimmed to hit the cap exactly, which keeps it on one side).
std::vector<std::vector<int64_t>> sample_patients(const MuraIndex& index, const std::vector<int64_t>& images,
                                                  int64_t cap, engine::Generator& gen) {
  std::map<std::string, std::vector<int64_t>> by_patient;  // sorted: deterministic before the shuffle
  for (int64_t image : images) by_patient[index.study_of(image).patient].push_back(image);
  std::vector<std::vector<int64_t>> groups;
  groups.reserve(by_patient.size());
  for (auto& [patient, list] : by_patient) groups.push_back(std::move(list));
  shuffle_in_place(groups, gen);
  if (cap <= 0) return groups;
  std::vector<std::vector<int64_t>> kept;
  int64_t total = 0;
  for (auto& group : groups) {
    if (total >= cap) break;
    const int64_t room = cap - total;
    if (static_cast<int64_t>(group.size()) > room) group.resize(room);
    total += static_cast<int64_t>(group.size());
    kept.push_back(std::move(group));
  }
  return kept;
}

// Walks the patient groups in order, filling side 0 to targets[0] images, then side 1 to targets[1], the
// rest to side 2. A group goes to the current side when that brings the side closer to its target.
std::array<std::vector<int64_t>, 3> assign_groups(const std::vector<std::vector<int64_t>>& groups,
                                                  std::array<int64_t, 2> targets) {
  std::array<std::vector<int64_t>, 3> sides;
  int side = 0;
  for (const auto& group : groups) {
    const int64_t size = static_cast<int64_t>(group.size());
    while (side < 2) {
      const int64_t have = static_cast<int64_t>(sides[side].size());
      const int64_t before = targets[side] - have, after = have + size - targets[side];
      if (before > 0 && after <= before) break;  // fits, or overshoots by less than it would fall short
      ++side;
    }
    sides[side].insert(sides[side].end(), group.begin(), group.end());
  }
  return sides;
}

void validate(const SplitOptions& o) {
  ENGINE_CHECK(o.train_fraction > 0 && o.val_fraction >= 0 && o.train_fraction + o.val_fraction <= 1.0 + 1e-9)
      << "split fractions train " << o.train_fraction << ", validation " << o.val_fraction
      << " must be positive and sum to at most 1";
  ENGINE_CHECK(o.sample_images >= 0) << "sample_images must be >= 0 (0 = all), got " << o.sample_images;
}

}  // namespace

const char* split_protocol_name(SplitProtocol protocol) {
  switch (protocol) {
    case SplitProtocol::seed: return "seed";
    case SplitProtocol::patient: return "patient";
    case SplitProtocol::official: return "official";
  }
  return "?";
}

SplitProtocol parse_split_protocol(const std::string& name) {
  if (name == "seed") return SplitProtocol::seed;
  if (name == "patient") return SplitProtocol::patient;
  if (name == "official") return SplitProtocol::official;
  ENGINE_FAIL() << "unknown split protocol '" << name << "' (use seed, patient or official)";
}

Split make_split(const MuraIndex& index, const SplitOptions& options) {
  validate(options);
  Split split;
  split.options = options;
  const std::vector<BodyPart> parts =
      options.parts.empty() ? std::vector<BodyPart>(kAllBodyParts.begin(), kAllBodyParts.end()) : options.parts;
  std::array<bool, kBodyPartCount> wanted{};
  for (BodyPart p : parts) wanted[static_cast<int>(p)] = true;

  std::vector<int64_t> train_images, valid_images;
  for (int64_t i = 0; i < static_cast<int64_t>(index.images.size()); ++i) {
    const MuraStudy& study = index.study_of(i);
    if (!wanted[static_cast<int>(study.part)]) continue;
    (study.subset == Subset::train ? train_images : valid_images).push_back(i);
  }
  engine::Generator gen(options.seed, kSplitStream + static_cast<uint64_t>(options.protocol));
  std::array<std::vector<int64_t>, 3> sides;

  switch (options.protocol) {
    case SplitProtocol::seed: {
      std::vector<int64_t> all = train_images;
      all.insert(all.end(), valid_images.begin(), valid_images.end());
      shuffle_in_place(all, gen);
      const int64_t n = options.sample_images > 0 ? std::min<int64_t>(options.sample_images, all.size())
                                                  : static_cast<int64_t>(all.size());
      const int64_t n_train = std::min(n, rounded(options.train_fraction * n));
      const int64_t n_val = std::min(n - n_train, rounded(options.val_fraction * n));
      sides[0].assign(all.begin(), all.begin() + n_train);
      sides[1].assign(all.begin() + n_train, all.begin() + n_train + n_val);
      sides[2].assign(all.begin() + n_train + n_val, all.begin() + n);
      break;
    }
    case SplitProtocol::patient: {
      std::vector<int64_t> all = train_images;
      all.insert(all.end(), valid_images.begin(), valid_images.end());
      const auto groups = sample_patients(index, all, options.sample_images, gen);
      int64_t n = 0;
      for (const auto& g : groups) n += static_cast<int64_t>(g.size());
      sides = assign_groups(groups, {rounded(options.train_fraction * n), rounded(options.val_fraction * n)});
      break;
    }
    case SplitProtocol::official: {
      const auto groups = sample_patients(index, train_images, options.sample_images, gen);
      int64_t n = 0;
      for (const auto& g : groups) n += static_cast<int64_t>(g.size());
      const double val_share = options.val_fraction / (options.train_fraction + options.val_fraction);
      const int64_t n_val = rounded(val_share * n);
      // Validation first (its target is the small one), then train takes every remaining patient.
      auto assigned = assign_groups(groups, {n_val, n});
      sides[0] = std::move(assigned[1]);
      sides[1] = std::move(assigned[0]);
      sides[0].insert(sides[0].end(), assigned[2].begin(), assigned[2].end());
      sides[2] = valid_images;
      break;
    }
  }
  std::vector<SplitEntry>* lists[3] = {&split.train, &split.validation, &split.test};
  for (int s = 0; s < 3; ++s) {
    for (int64_t image : sides[s]) lists[s]->push_back(make_entry(index, image));
    sort_by_path(*lists[s]);
  }
  ENGINE_CHECK(!split.train.empty()) << "the " << split_protocol_name(options.protocol)
                                     << " split left no training images (body-part filter or N too small?)";
  return split;
}

// ---------------------------------------------------------------------------------------------------
// Files

namespace {

constexpr const char* kSplitHeader[5] = {"path", "label", "patient", "study", "body_part"};

}  // namespace

std::string split_list_text(const std::vector<SplitEntry>& list) {
  std::string text = csv_line({kSplitHeader[0], kSplitHeader[1], kSplitHeader[2], kSplitHeader[3], kSplitHeader[4]});
  for (const SplitEntry& e : list)
    text += csv_line({e.path, std::to_string(e.label), e.patient, e.study, body_part_folder(e.part)});
  return text;
}

namespace {

struct SideStats {
  int64_t images = 0, abnormal = 0;
  std::set<std::string> patients, studies;
};

SideStats side_stats(const std::vector<SplitEntry>& list) {
  SideStats s;
  for (const SplitEntry& e : list) {
    ++s.images;
    s.abnormal += e.label;
    s.patients.insert(e.patient);
    s.studies.insert(e.study);
  }
  return s;
}

}  // namespace

void write_split(const Split& split, const std::string& folder) {
  make_directories(folder);
  write_file_atomic(folder + "/train.csv", split_list_text(split.train));
  write_file_atomic(folder + "/validation.csv", split_list_text(split.validation));
  write_file_atomic(folder + "/test.csv", split_list_text(split.test));

  const SplitOptions& o = split.options;
  std::ostringstream info;
  info << "protocol " << split_protocol_name(o.protocol) << "\nseed " << o.seed << "\nsample_images "
       << o.sample_images << "\ntrain_fraction " << o.train_fraction << "\nval_fraction " << o.val_fraction
       << "\nbody_parts ";
  if (o.parts.empty()) info << "all";
  for (size_t i = 0; i < o.parts.size(); ++i) info << (i ? "," : "") << body_part_name(o.parts[i]);
  info << "\n";
  const std::vector<SplitEntry>* lists[3] = {&split.train, &split.validation, &split.test};
  const char* names[3] = {"train", "validation", "test"};
  SideStats stats[3];
  for (int s = 0; s < 3; ++s) {
    stats[s] = side_stats(*lists[s]);
    info << names[s] << " images " << stats[s].images << " abnormal " << stats[s].abnormal << " studies "
         << stats[s].studies.size() << " patients " << stats[s].patients.size() << "\n";
  }
  // The leak the study's image-level protocol allows: patients (and studies) on more than one side.
  int64_t shared_patients = 0, shared_studies = 0;
  std::map<std::string, int> patient_sides, study_sides;
  for (int s = 0; s < 3; ++s) {
    for (const std::string& p : stats[s].patients) shared_patients += (++patient_sides[p] == 2);
    for (const std::string& st : stats[s].studies) shared_studies += (++study_sides[st] == 2);
  }
  info << "patients_on_several_sides " << shared_patients << "\nstudies_on_several_sides " << shared_studies << "\n";
  write_file_atomic(folder + "/split.txt", info.str());
}

std::vector<SplitEntry> parse_split_list(const std::string& text, const std::string& source) {
  std::vector<SplitEntry> list;
  const std::vector<CsvRow> rows = parse_csv(text, source);
  for (size_t r = 0; r < rows.size(); ++r) {
    const CsvRow& row = rows[r];
    if (r == 0 && row.fields[0] == kSplitHeader[0]) continue;
    ENGINE_CHECK(row.fields.size() == 5) << source << ": line " << row.line << ": expected 5 fields "
                                         << "(path,label,patient,study,body_part), found " << row.fields.size();
    SplitEntry e;
    e.path = row.fields[0];
    ENGINE_CHECK(row.fields[1] == "0" || row.fields[1] == "1")
        << source << ": line " << row.line << ": label must be 0 or 1, found '" << row.fields[1] << "'";
    e.label = row.fields[1] == "1";
    e.patient = row.fields[2];
    e.study = row.fields[3];
    const std::optional<BodyPart> part = parse_body_part(row.fields[4]);
    ENGINE_CHECK(part.has_value()) << source << ": line " << row.line << ": unknown body part '" << row.fields[4] << "'";
    e.part = *part;
    // The path is joined to the data root and opened: it must stay under that root.
    check_relative_image_path(e.path, source + ": line " + std::to_string(row.line));
    list.push_back(std::move(e));
  }
  return list;
}

Split read_split(const std::string& folder) {
  Split split;
  std::vector<SplitEntry>* lists[3] = {&split.train, &split.validation, &split.test};
  const char* names[3] = {"train.csv", "validation.csv", "test.csv"};
  for (int s = 0; s < 3; ++s) {
    const std::string path = folder + "/" + names[s];
    *lists[s] = parse_split_list(read_file_text(path, uint64_t(1) << 30), path);
  }
  return split;
}

// ---------------------------------------------------------------------------------------------------
// Class weights

ClassWeights compute_class_weights(const std::vector<SplitEntry>& training) {
  ClassWeights w;
  for (const SplitEntry& e : training) ++w.images[static_cast<int>(e.part)][e.label ? 1 : 0];
  for (int p = 0; p < kBodyPartCount; ++p) {
    const int64_t normal = w.images[p][0], abnormal = w.images[p][1];
    if (normal == 0 || abnormal == 0) {
      w.weight[p] = {0.5f, 0.5f};
      if (normal + abnormal > 0)
        w.notes.push_back(std::string(body_part_name(static_cast<BodyPart>(p))) + ": only " +
                          (normal ? "normal" : "abnormal") + " images in training; weights 0.5/0.5");
      continue;
    }
    const double total = static_cast<double>(normal + abnormal);
    w.weight[p][0] = static_cast<float>(abnormal / total);  // a normal image weighs A_T / (A_T + N_T)
    w.weight[p][1] = static_cast<float>(normal / total);    // an abnormal image weighs N_T / (A_T + N_T)
  }
  return w;
}

void apply_class_weights(Split& split, const ClassWeights& weights) {
  for (std::vector<SplitEntry>* list : {&split.train, &split.validation, &split.test})
    for (SplitEntry& e : *list) e.weight = weights.of(e.part, e.label);
}

}  // namespace data
