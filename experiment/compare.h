// The study's comparison as a library (apps/compare.cpp is its command line; scripts/demo.sh runs it on the
// synthetic set): every net at every training-set size under every split protocol, each a full training
// run (experiment/trainer.h) in OUT/runs/<protocol>/<arch>-n<images>/, then the report.
//
//   results.md    per protocol: the study's two tables (test time, test accuracy; rows = images, columns
//                 = nets), then every figure we add beside them (study kappa, image AUROC, training time,
//                 images/s), and the localisation of the abnormality where it was measured (CAM)
//   results.html  one self-contained page: the same tables, accuracy / kappa / time against the number of
//                 images, every run's five training curves, links to each run's report and CAM gallery
//
// An interrupted comparison resumes: a run folder that holds checkpoints/last.safetensors continues from it,
// and a finished run (its test/metrics.json is newer than last) is read back rather than trained again.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "experiment/trainer.h"

namespace experiment {

// Localisation figures of one run, filled by a hook (the CAM batch pass) when one is given.
struct RunLocalisation {
  bool measured = false;
  int64_t images = 0;            // abnormal test images with a known box
  double pointing_game = 0;      // fraction whose map peak falls in the box
  double pointing_tolerant = 0;  // ... within half a feature cell of the box
  double mean_iou = 0;           // mean IoU of the thresholded map's box with the true box
  double random_pointing_tolerant = 0, random_iou = 0;  // what a random map scores on the same images
  double centre_pointing_tolerant = 0;                  // what "always the image's centre" scores
  std::string gallery;           // the gallery page, relative to the run folder ("" = none)
  std::string note;              // why it was not measured, when it was not
};

struct CompareOptions {
  TrainOptions base;  // every run's training options (arch, protocol, images, weights, out and resume: per run)
  std::string out = "compare_results";
  std::vector<int64_t> sizes = {100, 3000, 10000, 0};  // 0 = the whole set
  std::vector<std::string> protocols = {"seed"};
  std::vector<std::string> archs = {"densenet201", "inception_resnet_v2"};
  std::map<std::string, std::string> weights;  // arch -> converted ImageNet weights ("" = random init)
  // Called after each run (run folder, its result): measures localisation (the CAM pass). Optional.
  std::function<RunLocalisation(const std::string& run_dir, const TrainResult& result)> localise;
};

struct CompareCell {
  std::string arch, protocol;
  int64_t images = 0;       // the requested size (0 = all)
  std::string run_dir;      // relative to the comparison folder
  TrainResult result;
  double train_seconds = 0;  // the sum of the epochs' wall times
  RunLocalisation localisation;
};

struct Comparison {
  CompareOptions options;
  std::vector<CompareCell> cells;
  const CompareCell* find(const std::string& arch, const std::string& protocol, int64_t images) const;
};

// Runs (or resumes) every cell, writing results.md and results.html after each so that a long comparison
// always has a current report. Throws engine::Error on bad options before any run starts.
Comparison run_comparison(const CompareOptions& options);

// "DenseNet-201" for densenet201, etc.; other names unchanged.
std::string pretty_arch(const std::string& arch);

// The report's statement of what its numbers can and cannot show (plain text, one paragraph a line): from
// the data (synthetic or MURA), the initialisation, the protocol against the study's and the device.
std::string comparison_scope(const Comparison& comparison);

std::string comparison_markdown(const Comparison& comparison);
std::string comparison_html(const Comparison& comparison);
// Both files into comparison.options.out, atomically.
void write_comparison_report(const Comparison& comparison);

}  // namespace experiment
