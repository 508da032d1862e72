// libFuzzer target: checkpoint metadata (experiment/run_files.h) as an arbitrary map of strings, through
// the validation (checkpoint_settings), the evaluation loader options and net_from_checkpoint without
// weights. The input is lines of "key=value" applied over a valid map; a key that is one digit names one
// of the known keys (so that the fuzzer reaches every field quickly). What validation accepts must be in
// range; only engine::Error may come out (never std::invalid_argument from a stoll, std::bad_alloc from a
// size taken on trust, or a sanitizer finding). Nets are built only for densenet_tiny, whose construction
// is cheap at any accepted size; the other archs go through the validation alone.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>

#include "engine/check.h"
#include "experiment/run_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  static const char* const known[] = {"arch",  "head", "flavor", "input_size", "preprocess",
                                      "resize", "epoch", "step", "bad_epochs", "best_val_loss"};
  std::map<std::string, std::string> metadata = {
      {"format", "mura-engine-checkpoint-v1"}, {"arch", "densenet_tiny"}, {"head", "gap"}, {"flavor", "torch"},
      {"input_size", "32"}, {"preprocess", "study"}, {"resize", "nearest"}, {"optimizer", "adam-keras"},
      {"lr", "0.001"}, {"epoch", "1"}, {"step", "3"}, {"seed", "0"}, {"best_val_loss", "inf"}, {"bad_epochs", "0"}};
  std::istringstream lines(std::string(reinterpret_cast<const char*>(bytes), size));
  for (std::string line; std::getline(lines, line);) {
    const size_t eq = line.find('=');
    if (eq == std::string::npos) {
      metadata.erase(line);  // a bare key: absent
      continue;
    }
    std::string key = line.substr(0, eq);
    if (key.size() == 1 && key[0] >= '0' && key[0] <= '9') key = known[key[0] - '0'];
    metadata[key] = line.substr(eq + 1);
  }

  experiment::CheckpointSettings s;
  try {
    s = experiment::checkpoint_settings(metadata, "fuzz.safetensors");
  } catch (const engine::Error&) {
    return 0;
  }
  if (s.input_size < experiment::kMinInputSize || s.input_size > experiment::kMaxInputSize) std::abort();
  if (s.epoch < 0 || s.step < 0 || s.bad_epochs < 0) std::abort();
  if (std::isnan(s.best_value) || (s.best_metric == "val_loss" && s.best_value < 0)) std::abort();
  if (metadata.count("lr") && !(s.lr > 0 && std::isfinite(s.lr))) std::abort();

  const data::LoaderOptions lo = experiment::eval_loader_options(metadata, 8, 1, "fuzz.safetensors");
  if (lo.height != s.input_size || lo.width != s.input_size) std::abort();
  if (s.arch != "densenet_tiny") return 0;
  experiment::CheckpointInfo checkpoint;
  checkpoint.path = "fuzz.safetensors";
  checkpoint.metadata = metadata;
  try {
    experiment::net_from_checkpoint(checkpoint);  // no weights: the load names what is missing
  } catch (const engine::Error&) {
  }
  return 0;
}
