// The evaluation pass (see evaluation.h): the net in eval mode over a split, in order, unaugmented.
#include "experiment/evaluation.h"

#include "engine/engine.h"
#include "experiment/progress.h"

namespace experiment {

EvaluationResult predict_with_loader(nets::Net& net, data::Loader& loader, engine::Device device,
                                     const std::string& label, bool quiet) {
  EvaluationResult result;
  net.eval();
  engine::NoGradGuard no_grad;
  Progress progress(label, loader.batches_per_epoch(), quiet);
  const double start = now_seconds();
  loader.start_epoch(0);
  int64_t done = 0;
  for (data::Batch batch; loader.next(batch);) {
    const std::vector<float> logits = net.forward(batch.images.to(device)).to_vector();
    for (int64_t i = 0; i < batch.size(); ++i) {
      const data::SplitEntry& e = loader.entries()[static_cast<size_t>(batch.indices[static_cast<size_t>(i)])];
      ImagePrediction p;
      p.path = e.path;
      p.study = e.study;
      p.part = e.part;
      p.label = e.label;
      p.logit = logits[static_cast<size_t>(i)];
      p.probability = probability_of_logit(p.logit);
      result.images.push_back(std::move(p));
    }
    progress.update(++done, static_cast<int64_t>(result.images.size()), 0, 0);
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
                                 const std::string& label, bool quiet) {
  const auto loader = evaluation_loader(root, entries, loader_options, label);
  return predict_with_loader(net, *loader, device, label, quiet);
}

// ---------------------------------------------------------------------------------------------------

}  // namespace experiment
