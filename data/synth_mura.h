// A synthetic MURA: a MURA-v1.1-shaped tree of radiograph-like images with known fracture boxes. The
// embedded default data of the demo and the data of the end-to-end tests.
//
//   <out>/MURA-v1.1/{train,valid}_image_paths.csv, {train,valid}_labeled_studies.csv (no header rows,
//   paths starting with MURA-v1.1/, as the real CSVs), defect_boxes.csv ("path,x0,y0,x1,y1" with a
//   header: the crack's box in the image's own pixels, x1/y1 exclusive), and
//   <out>/MURA-v1.1/{train,valid}/XR_<PART>/patientNNNNN/studyK_{positive,negative}/imageN.png.
//
// Images: grayscale PNGs, longest side 200..512 px, some saved as RGB (three equal channels) or as
// 16-bit; a dark background (sometimes a light one), a soft-tissue silhouette, bright bones drawn as
// capsules with a brighter cortex, laid out per body part (humerus, forearm pair, elbow joint, wrist
// with carpals, hand, fingers with joint gaps, shoulder with humeral head and clavicle), seen from 1-4
// views per study (rotated, scaled, shifted), marker letters in corners, noise and a brightness gradient.
// Abnormal studies (about 40%) carry a fracture: a jagged dark crack across the shaft of one bone,
// with a small displacement of the far fragment, visible in most of the study's views. Normal images
// have natural gaps too (joints), so the crack must be told apart from them: learnable, not trivial.
//
// Deterministic: every file is a function of (seed, image ordinal); the tree is the same byte for byte
// for a given seed and options, whatever `threads` is.
#pragma once
#include <cstdint>
#include <map>
#include <string>

namespace data {

struct SynthOptions {
  uint64_t seed = 0;
  int train_patients = 56;
  int valid_patients = 14;
  int min_side = 200, max_side = 512;  // the longest side of an image is drawn from [min_side, max_side]
  double abnormal_fraction = 0.4;
  // Scales the crack's width and the fragment's displacement: 1 = subtle (a crack 0.8-1.6% of the image's
  // shorter side, a displacement up to 0.35 bone radii), larger = easier to see (tests of learning).
  double fracture_scale = 1.0;
  // Soft-tissue swelling around the crack (a Gaussian bulge, this fraction of the tissue's brightness; 0 =
  // none): a coarse sign of the fracture that small nets at low resolution learn in a few epochs.
  double swelling = 0.0;
  double light_background_fraction = 0.12;
  double rgb_fraction = 0.15;
  double sixteen_bit_fraction = 0.1;
  bool quirks = false;       // also `._*` sidecar files, a .DS_Store and CRLF line ends (real copies' quirks)
  int truncated_images = 0;  // this many train images cut short (listed in the CSV): unreadable files
  int threads = 2;
};

struct SynthResult {
  std::string root;  // <out>/MURA-v1.1
  int64_t images = 0, studies = 0, patients = 0, abnormal_studies = 0, defect_boxes = 0;
};

// Writes the tree under out_dir (created; existing files of the same names are replaced).
SynthResult make_synthetic_mura(const std::string& out_dir, const SynthOptions& options = {});

struct DefectBox {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // pixels of the original image; x1, y1 exclusive
};
// defect_boxes.csv of a synthetic root, keyed by the image path relative to the root
// ("train/XR_HAND/patient00003/study1_positive/image2.png").
std::map<std::string, DefectBox> read_defect_boxes(const std::string& root);

}  // namespace data
