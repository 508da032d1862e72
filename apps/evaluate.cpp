// evaluate: a training checkpoint on a split (a run's split folder, or one list file) or on a whole MURA
// root (its valid/ set: MURA's official test images), with the study's and MURA's metrics.
//
//   evaluate --checkpoint runs/x/checkpoints/best.safetensors --split runs/x/split [--list test] --out DIR
//   evaluate --checkpoint C --data MURA-v1.1 --out DIR          (every image of valid/)
//   evaluate --checkpoint A --checkpoint B ... --split S --out DIR  (an ensemble: the mean probability)
//   [--tta flip]  (each image's probability: the mean of the image's and its mirror's)
//   [--fold-bn]  (batch norms folded into the convolutions before them, for inference)
//   [--precision bf16 | --amp]  (the net on bf16 activations; recorded in metrics.json)
//
// Writes DIR/metrics.json, report.md, predictions_images.csv, predictions_studies.csv (atomically) and
// prints the overall table. Image level: accuracy, loss, AUROC, sensitivity, specificity, confusion
// matrix; study level (mean of the images' probabilities): accuracy, AUROC, Cohen's kappa; both per body
// part; the wall time of the pass and images/s (the study's "time" column). An ensemble's report lists each
// member's metrics beside the ensemble's, and DIR/members/N/ holds each member's own four files.
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
  std::vector<std::string> checkpoints;
  std::string split_dir, list = "test", data_root, out, device = "auto", subset = "valid", tta_name = "none";
  int64_t batch_size = 32;
  int workers = 2;
  bool quiet = false;
  std::string precision = "f32";
  bool amp = false;
  experiment::FlagParser flags("evaluate",
                               "Evaluates a training checkpoint on a split or a MURA root: image- and study-level\n"
                               "accuracy, loss, AUROC, kappa, sensitivity, specificity, per body part and overall.");
  flags.add_list("--checkpoint", &checkpoints, "a checkpoint written by train_densenet / train_irv2; repeated: an "
                                               "ensemble (each image's mean probability over the checkpoints)", "FILE");
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
  flags.add("--tta", &tta_name, "test-time augmentation: none | flip (the mean probability of each image and its "
                                "horizontal mirror)", "T");
  experiment::add_precision_flags(flags, &precision, &amp);
  bool fold_bn = false;
  flags.add_switch("--fold-bn", &fold_bn, "inference with every batch norm that follows a convolution folded into it "
                                          "(the same predictions to f32 rounding; docs/nets.md)");
  flags.add_switch("--quiet", &quiet, "no progress display");
  try {
    if (!flags.parse(argc, argv)) return 0;
    experiment::resolve_precision_flag(flags, precision, amp);
    ENGINE_USER_CHECK(!checkpoints.empty()) << "--checkpoint is required (see --help)";
    experiment::parse_tta(tta_name);
    ENGINE_USER_CHECK(!out.empty()) << "--out is required (see --help)";
    ENGINE_USER_CHECK(!split_dir.empty() || !data_root.empty()) << "pass --split (a run's split folder) or --data (a MURA root)";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  try {
    const experiment::Tta tta = experiment::parse_tta(tta_name);
    std::vector<experiment::CheckpointInfo> ckpts;  // all read first: a bad member fails before any pass
    for (const std::string& c : checkpoints) ckpts.push_back(experiment::read_checkpoint(c));
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
    if (ckpts.size() > 1 && !split_dir.empty()) experiment::check_members_share_split(checkpoints, list, entries);
    const engine::Device dev = engine::select_device(device);
    experiment::CheckpointPass pass;
    pass.batch_size = batch_size;
    pass.workers = workers;
    pass.device = dev;
    pass.quiet = quiet;
    pass.tta = tta;
    pass.precision = experiment::parse_precision(precision);
    pass.fold_batch_norms = fold_bn;
    std::vector<experiment::EvaluationResult> members;
    const experiment::EvaluationResult r = experiment::predict_checkpoints(ckpts, root, entries, pass, &members);
    const std::string images_from = split_dir.empty() ? root + " (" + subset + ")" : split_dir + " (" + list + ")";
    // The context of one checkpoint's evaluation (a member's, or the single one's).
    const auto context_of = [&](const experiment::CheckpointInfo& c) -> std::vector<std::pair<std::string, std::string>> {
      return {{"arch", c.metadata.at("arch")},    {"checkpoint", c.path},         {"epoch", c.metadata.at("epoch")},
              {"images from", images_from},       {"tta", experiment::tta_name(tta)}, {"precision", precision},
              {"device", dev.str()}};
    };
    std::string title = ckpts.front().metadata.at("arch") + " evaluated";
    std::vector<std::pair<std::string, std::string>> context = context_of(ckpts.front());
    if (ckpts.size() > 1) {
      std::string archs, paths;
      for (const auto& c : ckpts) {
        archs += (archs.empty() ? "" : " + ") + c.metadata.at("arch");
        paths += (paths.empty() ? "" : ", ") + c.path;
      }
      title = "ensemble of " + std::to_string(ckpts.size()) + " checkpoints (" + archs + ") evaluated";
      context = {{"ensemble", "the mean probability of " + std::to_string(ckpts.size()) + " checkpoints per image"},
                 {"checkpoints", paths},
                 {"images from", images_from},
                 {"tta", experiment::tta_name(tta)},
                 {"precision", precision},
                 {"device", dev.str()}};
    }
    experiment::write_evaluation(out, r, title, context);
    if (ckpts.size() > 1)
      for (size_t m = 0; m < ckpts.size(); ++m)
        experiment::write_evaluation(out + "/members/" + std::to_string(m + 1), members[m],
                                     ckpts[m].metadata.at("arch") + " evaluated (ensemble member " +
                                         std::to_string(m + 1) + ")",
                                     context_of(ckpts[m]));
    std::fputs(experiment::report_markdown(r, title, {}).c_str(), stdout);
    std::fprintf(stderr, "wrote %s/{metrics.json,report.md,predictions_images.csv,predictions_studies.csv}%s\n",
                 out.c_str(), ckpts.size() > 1 ? " and members/N/ (each member alone)" : "");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "evaluate: error: %s\n", e.what());
    return 1;
  }
}
