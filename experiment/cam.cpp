// Class activation maps, the batch (see cam.h): the images of the inputs, their maps, scores and chance
// levels computed first, then the output folder: pictures, raw maps and the reports.
#include "experiment/cam.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <numeric>
#include <optional>
#include <set>

#include "data/image.h"
#include "data/image_write.h"
#include "data/io_util.h"
#include "data/mura_index.h"
#include "data/splits.h"
#include "data/synth_mura.h"
#include "engine/serialize.h"
#include "experiment/metrics.h"
#include "experiment/progress.h"
#include "experiment/run_files.h"

namespace experiment {

namespace fs = std::filesystem;
using engine::Tensor;

namespace {

bool is_image_file(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const std::string name = path.filename().string();
  return name.rfind("._", 0) != 0 && (ext == ".png" || ext == ".jpg" || ext == ".jpeg");
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Inputs

namespace {

// The MURA label and root of an image path given as it is (…/<root>/<subset>/<part>/<patient>/<study>/<file>).
struct PathInfo {
  int label = -1;
  std::string root, relative;
};
PathInfo mura_path_info(const std::string& path) {
  PathInfo info;
  std::vector<std::string> parts;
  for (const auto& p : fs::path(path).lexically_normal()) parts.push_back(p.string());
  if (parts.size() < 5) return info;
  const std::string tail = parts[parts.size() - 5] + "/" + parts[parts.size() - 4] + "/" + parts[parts.size() - 3] + "/" +
                           parts[parts.size() - 2] + "/" + parts[parts.size() - 1];
  const std::optional<data::MuraPath> parsed = data::parse_mura_path(tail);
  if (!parsed || parsed->file.empty()) return info;
  if (parsed->folder_label) info.label = *parsed->folder_label;
  info.root = fs::path(path).lexically_normal().parent_path().parent_path().parent_path().parent_path().parent_path().string();
  info.relative = parsed->relative();
  return info;
}

std::string box_key(const std::string& relative_path) {
  const std::optional<data::MuraPath> parsed = data::parse_mura_path(relative_path);
  return parsed && !parsed->file.empty() ? parsed->relative() : relative_path;
}

bool exists_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

}  // namespace

CamEntries resolve_cam_entries(const CamInputs& in) {
  const int sources = !in.images.empty() + !in.split.empty() + (in.split.empty() && !in.data_root.empty());
  ENGINE_USER_CHECK(sources > 0) << "nothing to map: give images or study folders, --split (a run's split folder or "
                                    "list file) or --data (a MURA root)";
  ENGINE_USER_CHECK(in.images.empty() || (in.split.empty() && in.data_root.empty()))
      << "give either images/study folders or --split/--data, not both";
  CamEntries e;
  std::error_code ec;
  if (!in.images.empty()) {
    std::map<std::string, std::map<std::string, data::DefectBox>> boxes_by_root;
    for (const std::string& arg : in.images) {
      std::vector<std::string> files;
      if (fs::is_directory(arg, ec)) {
        for (const auto& f : fs::directory_iterator(arg))
          if (f.is_regular_file() && is_image_file(f.path())) files.push_back(f.path().string());
        std::sort(files.begin(), files.end());
        ENGINE_USER_CHECK(!files.empty()) << arg << ": no .png or .jpg images in this folder";
      } else {
        ENGINE_USER_CHECK(fs::is_regular_file(arg, ec)) << arg << ": no such file or folder";
        files.push_back(arg);
      }
      for (const std::string& f : files) {
        const PathInfo info = mura_path_info(f);
        e.paths.push_back(f);
        e.labels.push_back(info.label);
        bool has = false;
        Box box;
        // An image inside a synthetic tree: its root's defect_boxes.csv gives the true box.
        if (!info.root.empty() && exists_file(info.root + "/defect_boxes.csv")) {
          auto it = boxes_by_root.find(info.root);
          if (it == boxes_by_root.end()) it = boxes_by_root.emplace(info.root, data::read_defect_boxes(info.root)).first;
          const auto b = it->second.find(info.relative);
          if (b != it->second.end()) has = true, box = {b->second.x0, b->second.y0, b->second.x1, b->second.y1};
        }
        e.has_box.push_back(has);
        e.boxes.push_back(box);
      }
    }
    return e;
  }
  std::vector<data::SplitEntry> entries;
  std::string root = in.data_root;
  if (!in.split.empty()) {
    const bool is_folder = fs::is_directory(in.split, ec);
    const std::string file = is_folder ? in.split + "/" + in.list + ".csv" : in.split;
    ENGINE_USER_CHECK(fs::is_regular_file(file, ec))
        << file << " does not exist" << (is_folder ? " (--list is train, validation or test)" : "")
        << "; --split takes a run's split folder or one list file";
    entries = data::parse_split_list(data::read_file_text(file), file);
    ENGINE_USER_CHECK(!entries.empty()) << file << " lists no images: nothing to map";
    if (root.empty()) {
      // The run's data root, from args.json next to the split folder.
      const fs::path split_folder = is_folder ? fs::path(in.split) : fs::path(in.split).parent_path();
      const std::string args = split_folder.parent_path().string() + "/args.json";
      ENGINE_USER_CHECK(fs::is_regular_file(args, ec))
          << "no --data given and no " << args << " to take the run's data root from; pass --data MURA_ROOT";
      root = json_string_field(data::read_file_text(args), "data_root");
      ENGINE_USER_CHECK(!root.empty()) << args << " has no data_root; pass --data MURA_ROOT";
    }
  } else {
    ENGINE_USER_CHECK(in.subset == "valid" || in.subset == "train" || in.subset == "all")
        << "--subset must be valid, train or all, got '" << in.subset << "'";
    const data::MuraIndex index = data::load_mura_index(root);
    root = index.root;
    for (const data::MuraStudy& s : index.studies) {
      if (in.subset != "all" && data::subset_name(s.subset) != in.subset) continue;
      for (int64_t i : s.images) {
        data::SplitEntry x;
        x.path = index.images[static_cast<size_t>(i)].path;
        x.label = s.label;
        entries.push_back(x);
      }
    }
    ENGINE_USER_CHECK(!entries.empty()) << root << ": no images in the " << in.subset << " subset: nothing to map";
  }
  ENGINE_USER_CHECK(fs::is_directory(root, ec)) << "data root " << root << " does not exist; pass --data MURA_ROOT";
  std::map<std::string, data::DefectBox> boxes;
  if (exists_file(root + "/defect_boxes.csv")) boxes = data::read_defect_boxes(root);
  e.root = root;
  for (const data::SplitEntry& x : entries) {
    e.paths.push_back(x.path);
    e.labels.push_back(x.label);
    const auto b = boxes.find(box_key(x.path));
    e.has_box.push_back(b != boxes.end());
    e.boxes.push_back(b != boxes.end() ? Box{b->second.x0, b->second.y0, b->second.x1, b->second.y1} : Box{});
  }
  return e;
}

// ---------------------------------------------------------------------------------------------------
// The batch

namespace {

// "0007_XR_HAND_patient00003_study1_positive_image2": the index and the path's last components.
std::string file_stem(size_t index, const std::string& path) {
  std::vector<std::string> parts;
  for (const auto& p : fs::path(path)) parts.push_back(p.string());
  std::string tail;
  const size_t first = parts.size() > 4 ? parts.size() - 4 : 0;
  for (size_t i = first; i < parts.size(); ++i) {
    std::string p = i + 1 == parts.size() ? fs::path(parts[i]).stem().string() : parts[i];
    for (char& c : p)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
    if (p.empty() || p == "_") continue;
    tail += (tail.empty() ? "" : "_") + p;
  }
  char prefix[32];
  std::snprintf(prefix, sizeof prefix, "%04zu", index);
  return std::string(prefix) + (tail.empty() ? "" : "_" + tail);
}

// The positive part of a raw map (Grad-CAM's ReLU; CAM's evidence for the class).
std::vector<float> positive_part(const float* raw, size_t count) {
  std::vector<float> out(raw, raw + count);
  for (float& v : out) v = std::max(v, 0.0f);
  return out;
}

}  // namespace

CamSummary run_cam_batch(const std::string& checkpoint, const CamInputs& inputs, const std::string& out_dir,
                         const CamOptions& options) {
  const double start = now_seconds();
  // --- Every check before anything is written ---
  ENGINE_USER_CHECK(!out_dir.empty()) << "an output folder is required (--out)";
  std::error_code ec;
  ENGINE_USER_CHECK(!fs::exists(out_dir, ec) || fs::is_directory(out_dir, ec)) << "--out " << out_dir << " is a file, not a folder";
  ENGINE_USER_CHECK(options.batch_size >= 1) << "--batch-size must be at least 1, got " << options.batch_size;
  ENGINE_USER_CHECK(options.top >= 0) << "--top must be >= 0, got " << options.top;
  ENGINE_USER_CHECK(options.threshold > 0 && options.threshold <= 1)
      << "--threshold must be in (0, 1] (a fraction of the map's maximum), got " << options.threshold;
  ENGINE_USER_CHECK(options.random_draws >= 0) << "--random-draws must be >= 0, got " << options.random_draws;
  const CheckpointInfo ckpt = read_checkpoint(checkpoint);
  const std::shared_ptr<nets::Net> net = net_from_checkpoint(ckpt);
  const std::vector<CamMethod> methods = parse_cam_methods(options.method, net->head());
  ENGINE_USER_CHECK(options.class_index >= 0 && options.class_index < net->num_classes())
      << "--class " << options.class_index << " is out of range: this net has " << net->num_classes() << " logit(s)";
  const CamEntries entries = resolve_cam_entries(inputs);
  const engine::Device device = engine::select_device(options.device);
  net->to(device);
  net->eval();
  for (auto& [name, t] : net->named_parameters()) t.set_requires_grad(false);  // gradients for the features only

  const data::LoaderOptions lo = eval_loader_options(ckpt.metadata, options.batch_size, 1);
  const data::Normalizer norm = data::Normalizer::make(lo.norm);
  const int size = lo.height;
  const auto [grid_h, grid_w] = net->feature_grid(size, size);

  CamSummary s;
  s.checkpoint = checkpoint;
  s.arch = net->arch();
  s.head = nets::head_name(net->head());
  s.device = device.str();
  s.precision = options.precision;
  const bool bf16 = parse_precision(options.precision) == engine::Precision::bf16;
  s.out_dir = out_dir;
  s.input_size = size;
  s.grid_h = grid_h;
  s.grid_w = grid_w;
  s.threshold = options.threshold;
  const size_t n = entries.paths.size(), cells = static_cast<size_t>(grid_h * grid_w);
  s.images = static_cast<int64_t>(n);
  for (CamMethod m : methods) s.methods.push_back({cam_method_name(m)});
  std::vector<std::vector<float>> raw_maps(methods.size(), std::vector<float>(n * cells));
  auto file_of = [&](size_t i) { return entries.root.empty() ? entries.paths[i] : entries.root + "/" + entries.paths[i]; };

  // --- Pass 1: every image's maps, peak, box and scores (nothing written yet) ---
  Progress progress("cam", static_cast<int64_t>((n + options.batch_size - 1) / options.batch_size), options.quiet);
  std::vector<float> batch;
  for (size_t first = 0, done = 0; first < n; first += static_cast<size_t>(options.batch_size)) {
    const size_t b = std::min(n - first, static_cast<size_t>(options.batch_size));
    batch.assign(b * size * size * 3, 0.0f);
    for (size_t i = 0; i < b; ++i) {
      const size_t index = first + i;
      // Exactly the evaluation pipeline: decode, resize to the net's size, quantise, normalise.
      const data::Image decoded = data::decode_image_file(file_of(index), lo.limits);
      const data::ImageU8 resized = decoded.height == size && decoded.width == size
                                        ? data::quantize_u8(decoded)
                                        : data::quantize_u8(data::resize_image(decoded, size, size, lo.resize));
      data::render_image({resized.pixels.data(), resized.height, resized.width, resized.channels}, {}, norm,
                         batch.data() + i * size * size * 3);
      CamImage im;
      im.path = entries.paths[index];
      im.label = entries.labels[index];
      im.height = decoded.height;
      im.width = decoded.width;
      im.has_box = entries.has_box[index];
      im.truth = entries.boxes[index];
      s.per_image.push_back(std::move(im));
    }
    const Tensor images = Tensor::from_vector({static_cast<int64_t>(b), size, size, 3}, batch).to(device);
    Tensor features;
    {
      engine::NoGradGuard no_grad;
      features = bf16 ? net->features(images.to(engine::DType::bf16)).to(engine::DType::f32) : net->features(images);
    }
    std::vector<double> logits;
    const Tensor gradient = logit_gradient(*net, features, options.class_index, &logits);
    for (size_t m = 0; m < methods.size(); ++m) {
      const std::vector<float> raw =
          methods[m] == CamMethod::gradcam ? gradcam_raw(features, gradient) : cam_raw(*net, features, options.class_index);
      std::copy(raw.begin(), raw.end(), raw_maps[m].begin() + static_cast<std::ptrdiff_t>(first * cells));
    }
    for (size_t i = 0; i < b; ++i) {
      CamImage& im = s.per_image[first + i];
      im.logit = logits[i];
      im.probability = probability_of_logit(im.logit);
      for (size_t m = 0; m < methods.size(); ++m) {
        const std::vector<float> grid = positive_part(raw_maps[m].data() + (first + i) * cells, cells);
        CamImage::Result r;
        r.where = localise(upsample_map(grid.data(), grid_h, grid_w, im.height, im.width), options.threshold);
        if (im.has_box) {
          r.hit = r.where.valid && im.truth.contains(r.where.peak_x, r.where.peak_y);
          r.hit_tolerant = r.where.valid && half_cell_box(im.truth, grid_h, grid_w, im.width, im.height)
                                                .contains(r.where.peak_x, r.where.peak_y);
          r.iou = box_iou(r.where.box, im.truth);
        }
        im.results.push_back(r);
      }
    }
    progress.update(static_cast<int64_t>(++done), static_cast<int64_t>(first + b));
  }

  // A net with non-finite weights gives NaN logits and maps: say so, naming the images, before anything is
  // scored or written (its maps would otherwise be scored as misses and reported as "n/a").
  {
    std::vector<ImagePrediction> scores(n);
    for (size_t i = 0; i < n; ++i)
      scores[i] = {s.per_image[i].path, "", data::BodyPart::elbow, 0, s.per_image[i].logit, s.per_image[i].probability};
    check_finite_scores(scores);
  }

  // --- Scores and chance levels ---
  std::vector<BoxedImage> boxed;
  for (const CamImage& im : s.per_image)
    if (im.has_box) boxed.push_back({im.height, im.width, im.truth});
  s.boxed = static_cast<int64_t>(boxed.size());
  for (size_t m = 0; m < methods.size(); ++m) score_method(s.per_image, m, s.methods[m]);
  s.chance = chance_levels(boxed, grid_h, grid_w, options.threshold, options.random_draws, options.seed);

  // --- The gallery's entries: the highest probabilities of abnormality ---
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return s.per_image[a].probability > s.per_image[b].probability; });
  order.resize(std::min(n, static_cast<size_t>(options.top)));
  std::set<size_t> save(order.begin(), order.end());
  if (options.save_all || !inputs.images.empty())
    for (size_t i = 0; i < n; ++i) save.insert(i);

  // --- Pass 2: the output folder, the pictures and raw maps, the tables ---
  data::make_directories(out_dir + "/images");
  s.gallery_path = options.top > 0 ? "gallery.html" : "";
  std::map<size_t, std::vector<std::vector<uint8_t>>> gallery_pngs;
  for (size_t index : save) {
    CamImage& im = s.per_image[index];
    const data::Image decoded = data::decode_image_file(file_of(index), lo.limits);
    const std::vector<float> grey = grey_of(decoded);
    im.files = file_stem(index, im.path);
    engine::NamedTensors tensors;
    std::map<std::string, std::string> meta = {{"path", im.path}, {"probability", fmt(im.probability, 6)},
                                               {"logit", fmt(im.logit, 6)}, {"arch", s.arch}, {"head", s.head}};
    for (size_t m = 0; m < methods.size(); ++m) {
      const std::string name = s.methods[m].method;
      const float* raw = raw_maps[m].data() + index * cells;
      const std::vector<float> grid = positive_part(raw, cells);
      const Heatmap map = upsample_map(grid.data(), grid_h, grid_w, im.height, im.width);
      const CamImage::Result& r = im.results[m];
      const Rgb8 picture = blend_heatmap(grey, map, r.where, im.has_box ? im.truth : Box{});
      data::write_bytes_file(out_dir + "/images/" + im.files + "." + name + ".png", encode_png_rgb(picture));
      if (std::find(order.begin(), order.end(), index) != order.end())
        gallery_pngs[index].push_back(encode_png_rgb(thumbnail(picture, 260)));
      // The raw map as computed (CAM keeps its sign; Grad-CAM after its ReLU), at both resolutions.
      const std::vector<float> stored = methods[m] == CamMethod::cam ? std::vector<float>(raw, raw + cells) : grid;
      const Heatmap stored_up = upsample_map(stored.data(), grid_h, grid_w, im.height, im.width);
      tensors.push_back({name + ".feature", Tensor::from_vector({grid_h, grid_w}, stored)});
      tensors.push_back({name + ".image", Tensor::from_vector({im.height, im.width}, stored_up.values)});
      meta[name + ".peak"] = std::to_string(r.where.peak_x) + "," + std::to_string(r.where.peak_y);
      meta[name + ".box"] = std::to_string(r.where.box.x0) + "," + std::to_string(r.where.box.y0) + "," +
                            std::to_string(r.where.box.x1) + "," + std::to_string(r.where.box.y1);
    }
    engine::save_tensors(out_dir + "/images/" + im.files + ".safetensors", tensors, meta);
  }

  engine::NamedTensors all;
  for (size_t m = 0; m < methods.size(); ++m)
    all.push_back({s.methods[m].method, Tensor::from_vector({static_cast<int64_t>(n), grid_h, grid_w}, raw_maps[m])});
  engine::save_tensors(out_dir + "/feature_maps.safetensors", all,
                       {{"arch", s.arch}, {"head", s.head}, {"order", "the rows of cam.csv"},
                        {"note", "raw maps before Grad-CAM's ReLU"}});
  s.seconds = now_seconds() - start;
  std::vector<std::vector<std::vector<uint8_t>>> pngs;
  if (!s.gallery_path.empty())
    for (size_t index : order) pngs.push_back(gallery_pngs.at(index));
  write_cam_reports(s, order, pngs);
  progress.finish(std::to_string(n) + " images, " + std::to_string(s.boxed) + " with a box");
  return s;
}

}  // namespace experiment
