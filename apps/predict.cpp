// predict: a trained checkpoint on one or more images, or on a study folder, to each image's probability
// of being abnormal and the study's verdict (the mean probability over its images, abnormal when > 0.5,
// as MURA defines a study's prediction).
//
//   predict --checkpoint runs/x/checkpoints/best.safetensors image1.png image2.png
//   predict --checkpoint C path/to/study1/            (every .png/.jpg in the folder)
//   [--out predictions.csv] (path,study,probability,predicted, written atomically)
//   [--checkpoint C2 ...]  (an ensemble: each image's mean probability over the checkpoints)
//   [--tta flip]           (each image's probability: the mean of the image's and its mirror's)
//   [--fold-bn]  (batch norms folded into the convolutions before them, for inference)
//   [--precision bf16 | --amp]  (the net on bf16 activations)
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "data/csv.h"
#include "data/io_util.h"
#include "engine/engine.h"
#include "experiment/flags.h"
#include "experiment/run_files.h"
#include "experiment/trainer.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  std::vector<std::string> checkpoints;
  std::string out, device = "auto", tta_name = "none", precision = "f32";
  bool amp = false;
  experiment::FlagParser flags("predict",
                               "Probabilities of abnormality for radiographs and the study verdict (mean over the\n"
                               "study's images > 0.5 = abnormal). A folder argument is one study: its images are\n"
                               "averaged; single images passed together count as one study per parent folder.");
  flags.add_list("--checkpoint", &checkpoints, "a checkpoint written by train_densenet / train_irv2; repeated: an "
                                               "ensemble (each image's mean probability over the checkpoints)", "FILE");
  flags.add("--tta", &tta_name, "test-time augmentation: none | flip (the mean probability of each image and its "
                                "horizontal mirror)", "T");
  flags.add("--out", &out, "also write path,study,probability,predicted to this CSV", "FILE");
  flags.add("--device", &device, "auto | cpu | cuda", "D");
  experiment::add_precision_flags(flags, &precision, &amp);
  bool fold_bn = false;
  flags.add_switch("--fold-bn", &fold_bn, "inference with every batch norm that follows a convolution folded into it "
                                          "(the same predictions to f32 rounding; docs/nets.md)");
  flags.allow_positional("IMAGE|STUDY_FOLDER", "PNG/JPEG files, or folders whose images form one study");
  try {
    if (!flags.parse(argc, argv)) return 0;
    experiment::resolve_precision_flag(flags, precision, amp);
    ENGINE_USER_CHECK(!checkpoints.empty()) << "--checkpoint is required (see --help)";
    experiment::parse_tta(tta_name);
    ENGINE_USER_CHECK(!flags.positional().empty()) << "give at least one image or study folder (see --help)";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  try {
    std::vector<data::SplitEntry> entries;
    for (const std::string& arg : flags.positional()) {
      std::error_code ec;
      if (fs::is_directory(arg, ec)) {
        std::vector<std::string> files;
        for (const auto& f : fs::directory_iterator(arg)) {
          std::string ext = f.path().extension().string();
          std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
          const std::string name = f.path().filename().string();
          if (f.is_regular_file() && name.rfind("._", 0) != 0 && (ext == ".png" || ext == ".jpg" || ext == ".jpeg"))
            files.push_back(f.path().string());
        }
        std::sort(files.begin(), files.end());
        ENGINE_USER_CHECK(!files.empty()) << arg << ": no .png or .jpg images in this folder";
        for (const std::string& f : files) entries.push_back({f, 0, "", arg, data::BodyPart::elbow, 1.0f});
      } else {
        ENGINE_USER_CHECK(fs::is_regular_file(arg, ec)) << arg << ": no such file or folder";
        entries.push_back({arg, 0, "", fs::path(arg).parent_path().string(), data::BodyPart::elbow, 1.0f});
      }
    }
    std::vector<experiment::CheckpointInfo> ckpts;
    for (const std::string& c : checkpoints) ckpts.push_back(experiment::read_checkpoint(c));
    experiment::CheckpointPass pass;
    pass.device = engine::select_device(device);
    pass.label = "predict";
    pass.quiet = true;
    pass.tta = experiment::parse_tta(tta_name);
    pass.precision = experiment::parse_precision(precision);
    pass.fold_batch_norms = fold_bn;
    const experiment::EvaluationResult r = experiment::predict_checkpoints(ckpts, "", entries, pass);
    if (pass.precision == engine::Precision::bf16) std::printf("precision bf16: the net ran on bf16 activations\n");
    if (ckpts.size() > 1)
      std::printf("ensemble of %zu checkpoints: each p is the mean of their probabilities\n", ckpts.size());
    ENGINE_USER_CHECK(r.images.size() == entries.size()) << "some images could not be read (see the messages above)";
    std::string csv = "path,study,probability,predicted\n";
    for (const auto& im : r.images) {
      std::printf("%-60s p(abnormal) = %.4f  %s\n", im.path.c_str(), im.probability,
                  im.probability > experiment::kThreshold ? "abnormal" : "normal");
      csv += data::csv_line({im.path, im.study, experiment::fmt(im.probability, 6),
                             im.probability > experiment::kThreshold ? "1" : "0"});
    }
    for (const auto& s : r.studies)
      std::printf("study %s (%lld images): mean p = %.4f -> %s\n", s.study.empty() ? "." : s.study.c_str(),
                  static_cast<long long>(s.images), s.probability,
                  s.probability > experiment::kThreshold ? "ABNORMAL" : "normal");
    if (!out.empty()) data::write_file_atomic(out, csv);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "predict: error: %s\n", e.what());
    return 1;
  }
}
