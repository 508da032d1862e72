// Class activation maps, the reports of a batch: the per-image results and the scores per method
// (CamSummary), and what is written of them: cam.csv (per image), summary.json and report.md (the scores
// next to the chance levels) and gallery.html (a self-contained page of the top abnormal predictions, PNGs
// as base64 data: URIs). cam.h's run_cam_batch fills the summary.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "experiment/cam_maps.h"

namespace experiment {

struct MethodScore {
  std::string method;
  int64_t boxed = 0, hits = 0;   // images with a true box, and pointing-game hits among them
  double pointing = 0;           // hits / boxed (NaN without boxes)
  int64_t hits_tolerant = 0;     // hits within half a feature cell of the box
  int64_t empty = 0;             // images (all of them) whose map has no positive value: nothing to point at
  double pointing_tolerant = 0;
  double mean_iou = 0;           // NaN without boxes
  int64_t boxed_predicted = 0;   // boxed images predicted abnormal (p > 0.5) ...
  double pointing_predicted = 0, pointing_tolerant_predicted = 0, mean_iou_predicted = 0;  // ... their scores
};

struct CamImage {
  std::string path;  // as given (split paths: relative to the root)
  int label = -1;    // 0/1 from a split or root; -1 unknown
  int height = 0, width = 0;
  double logit = 0, probability = 0;
  bool has_box = false;
  Box truth;
  struct Result {
    Localisation where;
    bool hit = false, hit_tolerant = false;
    double iou = 0;
  };
  std::vector<Result> results;  // one per method, in CamSummary::methods order
  std::string files;            // the stem of its files under images/ ("" = not written)
};

struct CamSummary {
  std::string checkpoint, arch, head, device, out_dir, gallery_path;  // gallery: <out>/gallery.html
  std::string precision = "f32";  // of the net's feature pass: f32 | bf16
  int64_t input_size = 0, grid_h = 0, grid_w = 0;
  int64_t images = 0, boxed = 0;
  double threshold = 0.5, seconds = 0;
  std::vector<MethodScore> methods;
  ChanceLevels chance;
  std::vector<CamImage> per_image;
};

// The pointing game, its half-cell variant and the mean IoU of method `m` (results[m] of every image),
// over the boxed images and over those predicted abnormal; ms.method is kept.
void score_method(const std::vector<CamImage>& images, size_t m, MethodScore& ms);

// The localisation table (markdown): methods against the chance levels; the comparison report embeds it.
std::string cam_summary_markdown(const CamSummary& summary);
std::string cam_summary_json(const CamSummary& summary);
// The gallery page: the summary table and one entry per image of `entries` (indices into per_image) with
// its probability, label, scores and one <img> per method (PNG data: URIs in `pngs[entry][method]`).
std::string cam_gallery_html(const CamSummary& summary, const std::vector<size_t>& entries,
                             const std::vector<std::vector<std::vector<uint8_t>>>& pngs);
// Per image: path, label, probability, logit, size, true box, files, then per method the peak, box, hit,
// hit within half a cell and IoU (empty where unknown).
std::string cam_csv(const CamSummary& summary);
std::string base64(const std::vector<uint8_t>& bytes);

// cam.csv, summary.json, report.md and (when summary.gallery_path is set) gallery.html into
// summary.out_dir, each atomically; gallery_path then becomes the page's path. The gallery shows
// `gallery_entries` (indices into per_image) with their PNGs (`gallery_pngs[entry][method]`).
void write_cam_reports(CamSummary& summary, const std::vector<size_t>& gallery_entries,
                       const std::vector<std::vector<std::vector<uint8_t>>>& gallery_pngs);

}  // namespace experiment
