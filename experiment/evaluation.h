// The evaluation pass shared by the trainer (validation, test), evaluate, predict and compare: the net in
// eval mode, without gradients, over a list of split entries in their order, unaugmented, the images cached
// in memory; per-image predictions and the metrics of experiment/metrics.h.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/loader.h"
#include "engine/device.h"
#include "experiment/metrics.h"
#include "nets/net.h"

namespace experiment {

// The loader of one evaluation pass: split order, no augmentation, images cached in memory.
std::unique_ptr<data::Loader> evaluation_loader(const std::string& root, const std::vector<data::SplitEntry>& entries,
                                                const data::LoaderOptions& loader_options, const std::string& label);

// The net (eval mode, no grad) over one pass of `loader`.
EvaluationResult predict_with_loader(nets::Net& net, data::Loader& loader, engine::Device device,
                                     const std::string& label, bool quiet);

// Runs the net (eval mode, no grad) over entries; returns per-image predictions, the metrics and the wall
// time. `label` names the progress bar and the error when there is nothing to evaluate.
EvaluationResult predict_entries(nets::Net& net, const std::string& root, const std::vector<data::SplitEntry>& entries,
                                 const data::LoaderOptions& loader_options, engine::Device device,
                                 const std::string& label, bool quiet);

}  // namespace experiment
