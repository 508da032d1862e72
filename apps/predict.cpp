// predict: a trained checkpoint on one or more images, or on a study folder, to each image's probability
// of being abnormal and the study's verdict (the mean probability over its images, abnormal when > 0.5,
// as MURA defines a study's prediction).
//
//   predict --checkpoint runs/x/checkpoints/best.safetensors image1.png image2.png
//   predict --checkpoint C path/to/study1/            (every .png/.jpg in the folder)
//   [--out predictions.csv] (path,study,probability,predicted, written atomically)
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
  std::string checkpoint, out, device = "auto";
  experiment::FlagParser flags("predict",
                               "Probabilities of abnormality for radiographs and the study verdict (mean over the\n"
                               "study's images > 0.5 = abnormal). A folder argument is one study: its images are\n"
                               "averaged; single images passed together count as one study per parent folder.");
  flags.add("--checkpoint", &checkpoint, "a checkpoint written by train_densenet / train_irv2", "FILE");
  flags.add("--out", &out, "also write path,study,probability,predicted to this CSV", "FILE");
  flags.add("--device", &device, "auto | cpu | cuda", "D");
  flags.allow_positional("IMAGE|STUDY_FOLDER", "PNG/JPEG files, or folders whose images form one study");
  try {
    if (!flags.parse(argc, argv)) return 0;
    ENGINE_USER_CHECK(!checkpoint.empty()) << "--checkpoint is required (see --help)";
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
    const experiment::CheckpointInfo ckpt = experiment::read_checkpoint(checkpoint);
    auto net = experiment::net_from_checkpoint(ckpt);
    const engine::Device dev = engine::select_device(device);
    net->to(dev);
    const experiment::EvaluationResult r = experiment::predict_entries(
        *net, "", entries, experiment::eval_loader_options(ckpt.metadata, 32, 2, ckpt.path), dev, "predict", true);
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
