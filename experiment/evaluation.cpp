// The evaluation pass (see evaluation.h): the net in eval mode over a split, in order, unaugmented; flip
// test-time augmentation; the ensemble of several nets' passes.
#include "experiment/evaluation.h"

#include <cmath>
#include <filesystem>
#include <set>

#include "data/io_util.h"
#include "data/splits.h"
#include "engine/engine.h"

namespace experiment {

Tta parse_tta(const std::string& value) {
  if (value == "none") return Tta::none;
  if (value == "flip") return Tta::flip;
  ENGINE_USER_FAIL() << "--tta '" << value << "' is not one of: none, flip";
}

const char* tta_name(Tta tta) { return tta == Tta::flip ? "flip" : "none"; }

engine::Tensor mirror_horizontally(const engine::Tensor& images) {
  const engine::Shape& shape = images.shape();
  ENGINE_CHECK(shape.size() == 4) << "mirror_horizontally expects [N, H, W, C] images";
  const std::vector<float> x = images.to_vector();
  std::vector<float> y(x.size());
  const int64_t rows = shape[0] * shape[1], width = shape[2], channels = shape[3];
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t w = 0; w < width; ++w) {
      const float* from = x.data() + (r * width + (width - 1 - w)) * channels;
      std::copy(from, from + channels, y.data() + (r * width + w) * channels);
    }
  return engine::Tensor::from_vector(shape, y);
}

double logit_of_probability(double p) { return std::log(p) - std::log1p(-p); }

EvaluationResult predict_with_loader(nets::Net& net, data::Loader& loader, engine::Device device,
                                     const std::string& label, bool quiet, const PassOptions& pass) {
  EvaluationResult result;
  net.eval();
  if (pass.fold_batch_norms) net.fold_batch_norms();
  engine::NoGradGuard no_grad;
  Progress progress(label, loader.batches_per_epoch(), quiet, pass.plan, pass.phase);
  const double start = now_seconds();
  loader.start_epoch(0);
  int64_t done = 0;
  // The logits [N] of a host batch; in bf16 the images enter the net as bf16 and the logits widen exactly.
  const auto logits_of = [&](const engine::Tensor& images) {
    engine::Tensor x = images.to(device);
    if (pass.precision == engine::Precision::bf16) x = x.to(engine::DType::bf16);
    return net.forward(x).to_vector();
  };
  for (data::Batch batch; loader.next(batch);) {
    const std::vector<float> logits = logits_of(batch.images);
    std::vector<float> mirrored_logits;
    if (pass.tta == Tta::flip) mirrored_logits = logits_of(mirror_horizontally(batch.images));
    for (int64_t i = 0; i < batch.size(); ++i) {
      const data::SplitEntry& e = loader.entries()[static_cast<size_t>(batch.indices[static_cast<size_t>(i)])];
      ImagePrediction p;
      p.path = e.path;
      p.study = e.study;
      p.part = e.part;
      p.label = e.label;
      p.logit = logits[static_cast<size_t>(i)];
      p.probability = probability_of_logit(p.logit);
      if (pass.tta == Tta::flip) {
        p.probability = 0.5 * (p.probability + probability_of_logit(mirrored_logits[static_cast<size_t>(i)]));
        p.logit = logit_of_probability(p.probability);
      }
      result.images.push_back(std::move(p));
    }
    progress.update(++done, static_cast<int64_t>(result.images.size()));
  }
  result.seconds = now_seconds() - start;
  compute_metrics(result);
  return result;
}

std::unique_ptr<data::Loader> evaluation_loader(const std::string& root, const std::vector<data::SplitEntry>& entries,
                                                const data::LoaderOptions& loader_options, const std::string& label) {
  ENGINE_USER_CHECK(!entries.empty()) << label << ": no images to evaluate";
  data::LoaderOptions lo = loader_options;
  lo.shuffle = false;
  lo.augment = {};
  lo.cache = data::CacheMode::memory;
  return std::make_unique<data::Loader>(root, entries, lo);
}

EvaluationResult predict_entries(nets::Net& net, const std::string& root, const std::vector<data::SplitEntry>& entries,
                                 const data::LoaderOptions& loader_options, engine::Device device,
                                 const std::string& label, bool quiet, const PassOptions& pass) {
  const auto loader = evaluation_loader(root, entries, loader_options, label);
  return predict_with_loader(net, *loader, device, label, quiet, pass);
}

EvaluationResult ensemble_of(const std::vector<EvaluationResult>& members, const std::vector<std::string>& names) {
  ENGINE_CHECK(!members.empty() && names.size() == members.size()) << "an ensemble needs one name per member";
  EvaluationResult ensemble;
  ensemble.images = members.front().images;
  for (size_t m = 0; m < members.size(); ++m) {
    const std::vector<ImagePrediction>& images = members[m].images;
    ENGINE_USER_CHECK(images.size() == ensemble.images.size())
        << "the ensemble's members predicted different images: " << names[m] << " has " << images.size() << ", "
        << names.front() << " " << ensemble.images.size() << " (an image one member could not read?)";
    for (size_t i = 0; i < images.size(); ++i)
      ENGINE_USER_CHECK(images[i].path == ensemble.images[i].path && images[i].label == ensemble.images[i].label)
          << "the ensemble's members predicted different images: image " << i + 1 << " is " << images[i].path
          << " (label " << images[i].label << ") for " << names[m] << " but " << ensemble.images[i].path << " (label "
          << ensemble.images[i].label << ") for " << names.front();
    if (m > 0)
      for (size_t i = 0; i < images.size(); ++i) ensemble.images[i].probability += images[i].probability;
    ensemble.seconds += members[m].seconds;
    ensemble.members.push_back({names[m], members[m].overall, members[m].parts});
  }
  for (ImagePrediction& p : ensemble.images) {
    p.probability /= static_cast<double>(members.size());
    p.logit = logit_of_probability(p.probability);
  }
  compute_metrics(ensemble);
  return ensemble;
}

EvaluationResult predict_checkpoints(const std::vector<CheckpointInfo>& checkpoints, const std::string& root,
                                     const std::vector<data::SplitEntry>& entries, const CheckpointPass& pass,
                                     std::vector<EvaluationResult>* member_results) {
  ENGINE_CHECK(!checkpoints.empty()) << "predict_checkpoints needs a checkpoint";
  std::vector<EvaluationResult> members;
  std::vector<std::string> names;
  // The ETA of all the members' passes: a member not run yet is estimated at the rate of those run.
  RunPlan plan;
  const int64_t batches = (static_cast<int64_t>(entries.size()) + pass.batch_size - 1) / pass.batch_size;
  const auto phase = [](size_t m) { return "member " + std::to_string(m + 1); };
  for (size_t m = 0; m < checkpoints.size(); ++m) plan.add(phase(m), batches);
  for (size_t m = 0; m < checkpoints.size(); ++m) {
    const CheckpointInfo& ckpt = checkpoints[m];
    const auto net = net_from_checkpoint(ckpt);
    net->to(pass.device);
    const std::string label = checkpoints.size() == 1 ? pass.label
                                                      : pass.label + " member " + std::to_string(m + 1) + "/" +
                                                            std::to_string(checkpoints.size());
    PassOptions options;
    options.tta = pass.tta;
    options.precision = pass.precision;
    options.fold_batch_norms = pass.fold_batch_norms;
    if (checkpoints.size() > 1) {
      options.plan = &plan;
      options.phase = phase(m);
    }
    members.push_back(predict_entries(*net, root, entries,
                                      eval_loader_options(ckpt.metadata, pass.batch_size, pass.workers, ckpt.path),
                                      pass.device, label, pass.quiet, options));
    names.push_back(ckpt.path);
  }
  EvaluationResult result = members.size() == 1 ? members.front() : ensemble_of(members, names);
  if (member_results) *member_results = std::move(members);
  return result;
}

void check_members_share_split(const std::vector<std::string>& checkpoint_paths, const std::string& list,
                               const std::vector<data::SplitEntry>& entries) {
  namespace fs = std::filesystem;
  std::set<std::string> evaluated;
  for (const data::SplitEntry& e : entries) evaluated.insert(e.path);
  for (const std::string& path : checkpoint_paths) {
    const fs::path folder = fs::absolute(path).parent_path();
    if (folder.filename() != "checkpoints") continue;
    const std::string file = (folder.parent_path() / "split" / (list + ".csv")).string();
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) continue;
    std::set<std::string> own;
    for (const data::SplitEntry& e : data::parse_split_list(data::read_file_text(file), file)) own.insert(e.path);
    if (own == evaluated) continue;
    size_t missing = 0;
    std::string example;
    for (const std::string& p : evaluated)
      if (!own.count(p) && missing++ == 0) example = p;
    ENGINE_USER_FAIL() << "the ensemble's members must share the split: the run of " << path << " has another "
                       << list << " list (" << file << ": " << own.size() << " images; " << missing << " of the "
                       << evaluated.size() << " evaluated images are not in it"
                       << (example.empty() ? std::string() : ", e.g. " + example)
                       << "), so it may have trained on images it is evaluated on. Ensemble runs made with the same "
                          "--protocol, --seed and --images (the same split)";
  }
}

}  // namespace experiment
