// Converted weights' metadata against --flavor and --preprocess (see weights_check.h).
#include "experiment/weights_check.h"

#include "engine/safetensors.h"
#include "experiment/progress.h"

namespace experiment {

namespace {

std::string value_of(const std::map<std::string, std::string>& metadata, const std::string& key) {
  const auto it = metadata.find(key);
  return it == metadata.end() ? "" : it->second;
}

// "Keras" for keras-h5, else the source's own name ("" = unknown).
std::string source_name(const std::string& source) {
  if (source == "keras-h5") return "Keras";
  if (source == "torchvision" || source == "timm") return source;
  return "";
}

// The batch-norm convention a source's weights were trained with (its framework's); "" = unknown.
std::string flavor_of_source(const std::string& source) {
  if (source == "keras-h5") return "keras";
  if (source == "torchvision" || source == "timm") return "torch";
  return "";
}

bool known_flavor(const std::string& flavor) { return flavor == "keras" || flavor == "torch"; }
bool known_preprocess(const std::string& p) { return p == "study" || p == "torch" || p == "tf"; }

std::string preprocess_formula(const std::string& p) {
  if (p == "study") return "x/255";
  if (p == "torch") return "x/255, then ImageNet mean/std";
  return "x/127.5 - 1";
}

// "PyTorch batch norm: eps 1e-05, momentum 0.1 = the share of each new batch" (each framework's spelling).
std::string batch_norm_description(const std::string& flavor, const std::map<std::string, std::string>& metadata) {
  const std::string eps = value_of(metadata, "bn_eps"), momentum = value_of(metadata, "bn_momentum");
  std::string text = flavor == "keras" ? "Keras batch norm" : "PyTorch batch norm";
  std::string details;
  if (!eps.empty()) details += "eps " + eps;
  if (!momentum.empty())
    details += (details.empty() ? "" : ", ") + std::string("momentum ") + momentum +
               (flavor == "keras" ? " = the share the running statistics keep" : " = the share of each new batch");
  return details.empty() ? text : text + ": " + details;
}

}  // namespace

std::string WeightsFinding::line() const { return (kind == Kind::warning ? "WARNING: " : "note: ") + text; }

std::vector<WeightsFinding> check_weights_metadata(const std::string& path,
                                                   const std::map<std::string, std::string>& metadata,
                                                   const WeightsCheckOptions& options) {
  using Kind = WeightsFinding::Kind;
  std::vector<WeightsFinding> findings;
  const std::string source = value_of(metadata, "source");
  const std::string recorded_flavor = value_of(metadata, "bn_flavor");
  const std::string flavor = recorded_flavor.empty() ? flavor_of_source(source) : recorded_flavor;
  const std::string preprocess = value_of(metadata, "preprocess");

  // What cannot be checked: absent or unrecognised metadata (a note, never an error).
  std::vector<std::string> unchecked, why;
  if (flavor.empty() || !known_flavor(flavor)) {
    unchecked.push_back("--flavor " + options.flavor);
    why.push_back(flavor.empty() ? "no bn_flavor or source" : "bn_flavor '" + flavor + "' (neither keras nor torch)");
  }
  if (preprocess.empty() || !known_preprocess(preprocess)) {
    unchecked.push_back("--preprocess " + options.preprocess);
    why.push_back(preprocess.empty() ? "no preprocess" : "preprocess '" + preprocess + "' (not study, torch or tf)");
  }
  if (!unchecked.empty()) {
    std::string text = path + " records ";
    for (size_t i = 0; i < why.size(); ++i) text += (i ? " and " : "") + why[i];
    text += " in its metadata, so ";
    for (size_t i = 0; i < unchecked.size(); ++i) text += (i ? " and " : "") + unchecked[i];
    text += unchecked.size() > 1 ? " are" : " is";
    text += " not checked against how the weights were trained (files converted by python -m weights_tools.convert "
            "record it; convert the original file again to have it checked)";
    findings.push_back({Kind::note, text});
  }

  const bool flavor_differs = known_flavor(flavor) && flavor != options.flavor;
  bool preprocess_differs = known_preprocess(preprocess) && preprocess != options.preprocess;
  // The study's own choice: x/255 into Keras's ImageNet weights. Said, not warned about.
  if (preprocess_differs && source == "keras-h5" && options.preprocess == "study") {
    preprocess_differs = false;
    findings.push_back({Kind::note, path + " holds Keras ImageNet weights trained on " + preprocess + " inputs (" +
                                        preprocess_formula(preprocess) +
                                        "); this run feeds them x/255 (--preprocess study), as the study did. To "
                                        "give them the inputs they were trained on: pass --preprocess " +
                                        preprocess});
  }
  if (!flavor_differs && !preprocess_differs) return findings;

  const std::string who = source_name(source);
  std::string text = path + " holds " + (who.empty() ? "weights" : who + " weights") + " (";
  if (known_flavor(flavor)) text += batch_norm_description(flavor, metadata);
  if (known_preprocess(preprocess))
    text += std::string(known_flavor(flavor) ? "; " : "") + "trained on " + preprocess + " inputs: " +
            preprocess_formula(preprocess);
  text += "), but this run uses";
  std::string pass;
  if (flavor_differs) {
    text += " --flavor " + options.flavor;
    pass += " --flavor " + flavor;
  }
  if (preprocess_differs) {
    text += " --preprocess " + options.preprocess;
    pass += " --preprocess " + preprocess;
  }
  text += ": pass" + pass;
  findings.push_back({Kind::warning, text});
  return findings;
}

std::vector<WeightsFinding> check_weights_file(const std::string& path, const WeightsCheckOptions& options) {
  const engine::safetensors::Reader reader(path);
  return check_weights_metadata(path, reader.metadata(), options);
}

void report_weights_check(const std::string& path, const std::string& flavor, const std::string& preprocess) {
  for (const WeightsFinding& f : check_weights_file(path, {flavor, preprocess})) message("%s\n", f.line().c_str());
}

}  // namespace experiment
