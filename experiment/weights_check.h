// Converted ImageNet weights against the run's flags: a weight file's metadata (weights_tools/convert.py
// records source, preprocess, bn_flavor, bn_eps, bn_momentum) says which framework trained it and on which
// inputs; a run whose --flavor or --preprocess disagrees gets a WARNING that names the flags to pass, e.g.
//
//   WARNING: w.safetensors holds torchvision weights (PyTorch batch norm: eps 1e-05, momentum 0.1 = the share
//   of each new batch; trained on torch inputs: x/255, then ImageNet mean/std), but this run uses --flavor
//   keras --preprocess study: pass --flavor torch --preprocess torch
//
// One exception is the study itself: it fed x/255 (--preprocess study) to Keras's ImageNet weights, which
// were trained on other inputs; that combination gets a note saying so, not a warning. A file without the
// metadata (an older converter, or another tool) gets a note that nothing could be checked, never an error.
// The arch key is checked where the weights are loaded (nets::load_weights), not here.
#pragma once
#include <map>
#include <string>
#include <vector>

namespace experiment {

// The run's settings that must suit the weights (the trainer's --flavor and --preprocess).
struct WeightsCheckOptions {
  std::string flavor;      // keras | torch
  std::string preprocess;  // study | torch | tf
};

struct WeightsFinding {
  enum class Kind { note, warning };
  Kind kind = Kind::note;
  std::string text;  // one sentence (no trailing newline)
  // "WARNING: <text>" or "note: <text>".
  std::string line() const;
};

// The findings for a file's metadata (pure: `path` only names the file in the text). Empty when the
// metadata agree with the options.
std::vector<WeightsFinding> check_weights_metadata(const std::string& path,
                                                   const std::map<std::string, std::string>& metadata,
                                                   const WeightsCheckOptions& options);

// The same for a file on disk: reads only its safetensors header. Throws engine::Error for a file that is
// not safetensors (as loading it would).
std::vector<WeightsFinding> check_weights_file(const std::string& path, const WeightsCheckOptions& options);

// The trainer's call: check_weights_file's findings, each one message() line (stderr and train.log).
void report_weights_check(const std::string& path, const std::string& flavor, const std::string& preprocess);

}  // namespace experiment
