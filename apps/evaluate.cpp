// evaluate: a training checkpoint on a split (a run's split folder, or one list file) or on a whole MURA
// root (its valid/ set: MURA's official test images), with the study's and MURA's metrics.
//
//   evaluate --checkpoint runs/x/checkpoints/best.safetensors --split runs/x/split [--list test] --out DIR
//   evaluate --checkpoint C --data MURA-v1.1 --out DIR          (every image of valid/)
//
// Writes DIR/metrics.json, report.md, predictions_images.csv, predictions_studies.csv (atomically) and
// prints the overall table. Image level: accuracy, loss, AUROC, sensitivity, specificity, confusion
// matrix; study level (mean of the images' probabilities): accuracy, AUROC, Cohen's kappa; both per body
// part; the wall time of the pass and images/s (the study's "time" column).
#include <cstdio>
#include <filesystem>

#include "data/io_util.h"
#include "data/mura_index.h"
#include "data/splits.h"
#include "engine/engine.h"
#include "experiment/flags.h"
#include "experiment/run_files.h"
#include "experiment/trainer.h"

int main(int argc, char** argv) {
  std::string checkpoint, split_dir, list = "test", data_root, out, device = "auto", subset = "valid";
  int64_t batch_size = 32;
  int workers = 2;
  bool quiet = false;
  experiment::FlagParser flags("evaluate",
                               "Evaluates a training checkpoint on a split or a MURA root: image- and study-level\n"
                               "accuracy, loss, AUROC, kappa, sensitivity, specificity, per body part and overall.");
  flags.add("--checkpoint", &checkpoint, "a checkpoint written by train_densenet / train_irv2", "FILE");
  flags.add("--split", &split_dir, "a run's split folder (train.csv, validation.csv, test.csv) or one list file", "PATH");
  flags.add("--list", &list, "which list of --split: train | validation | test", "L");
  flags.add("--data", &data_root, "the MURA root the split's paths are relative to (default: the run's data_root "
                                  "from args.json next to the split, else the synthetic cache); without --split, "
                                  "every image of --subset is evaluated", "DIR");
  flags.add("--subset", &subset, "with --data and no --split: valid (MURA's test set) | train | all", "S");
  flags.add("-o,--out", &out, "output folder", "DIR");
  flags.add("--device", &device, "auto | cpu | cuda", "D");
  flags.add("-b,--batch-size", &batch_size, "batch size");
  flags.add("--workers", &workers, "data loader threads");
  flags.add_switch("--quiet", &quiet, "no progress display");
  try {
    if (!flags.parse(argc, argv)) return 0;
    ENGINE_USER_CHECK(!checkpoint.empty()) << "--checkpoint is required (see --help)";
    ENGINE_USER_CHECK(!out.empty()) << "--out is required (see --help)";
    ENGINE_USER_CHECK(!split_dir.empty() || !data_root.empty()) << "pass --split (a run's split folder) or --data (a MURA root)";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  try {
    const experiment::CheckpointInfo ckpt = experiment::read_checkpoint(checkpoint);
    std::vector<data::SplitEntry> entries;
    std::string root = experiment::absolute_path(data_root);  // recorded in the report: valid from any folder
    if (!split_dir.empty()) {
      std::error_code ec;
      const bool is_folder = std::filesystem::is_directory(split_dir, ec);
      const std::string file = is_folder ? split_dir + "/" + list + ".csv" : split_dir;
      entries = data::parse_split_list(data::read_file_text(file), file);
      if (root.empty()) {
        // The run's data root, from args.json next to the split folder.
        const std::string run_dir = std::filesystem::path(is_folder ? split_dir : std::filesystem::path(split_dir).parent_path().string())
                                        .parent_path()
                                        .string();
        const std::string args = run_dir + "/args.json";
        ENGINE_USER_CHECK(std::filesystem::is_regular_file(args, ec))
            << "no --data given and no " << args << " to take the run's data root from; pass --data MURA_ROOT";
        root = experiment::json_string_field(data::read_file_text(args), "data_root");
        ENGINE_USER_CHECK(!root.empty()) << args << " has no data_root; pass --data MURA_ROOT";
      }
    } else {
      const data::MuraIndex index = data::load_mura_index(root);
      root = index.root;
      for (const data::MuraStudy& s : index.studies) {
        if (subset != "all" && data::subset_name(s.subset) != subset) continue;
        for (int64_t i : s.images) {
          data::SplitEntry e;
          e.path = index.images[static_cast<size_t>(i)].path;
          e.label = s.label;
          e.patient = s.patient;
          e.study = s.key;
          e.part = s.part;
          entries.push_back(e);
        }
      }
    }
    ENGINE_USER_CHECK(!entries.empty()) << "no images to evaluate";
    auto net = experiment::net_from_checkpoint(ckpt);
    const engine::Device dev = engine::select_device(device);
    net->to(dev);
    experiment::EvaluationResult r = experiment::predict_entries(
        *net, root, entries, experiment::eval_loader_options(ckpt.metadata, batch_size, workers, ckpt.path), dev, "evaluate", quiet);
    const std::string title = ckpt.metadata.at("arch") + " evaluated";
    experiment::write_evaluation(out, r, title,
                                 {{"arch", ckpt.metadata.at("arch")},
                                  {"checkpoint", checkpoint},
                                  {"epoch", ckpt.metadata.at("epoch")},
                                  {"images from", split_dir.empty() ? root + " (" + subset + ")" : split_dir + " (" + list + ")"},
                                  {"device", dev.str()}});
    std::fputs(experiment::report_markdown(r, title, {}).c_str(), stdout);
    std::fprintf(stderr, "wrote %s/{metrics.json,report.md,predictions_images.csv,predictions_studies.csv}\n", out.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "evaluate: error: %s\n", e.what());
    return 1;
  }
}
