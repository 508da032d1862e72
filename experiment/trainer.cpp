// The shared trainer (see trainer.h): data, split, net, epochs, checkpoints, resume, the test report.
#include "experiment/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "data/csv.h"
#include "data/image_write.h"
#include "data/io_util.h"
#include "data/splits.h"
#include "data/synth_mura.h"
#include "engine/engine.h"
#include "engine/serialize.h"
#include "experiment/chart_png.h"
#include "experiment/svg.h"
#include "experiment/tensorboard.h"
#include "nets/densenet.h"
#include "nets/registry.h"

namespace experiment {

namespace fs = std::filesystem;
using engine::Tensor;

namespace {
constexpr const char* kCheckpointFormat = "mura-engine-checkpoint-v1";

std::string g9(double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.9g", v);
  return buffer;
}

bool is_dir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}
bool is_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

double sigmoid(double z) { return z >= 0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z)); }
}  // namespace

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double wall_clock_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// ---------------------------------------------------------------------------------------------------
// Flags

void add_train_flags(FlagParser& f, TrainOptions& o, const std::vector<std::string>& archs) {
  std::string arch_list;
  for (const std::string& a : archs) arch_list += (arch_list.empty() ? "" : "|") + a;
  if (archs.size() > 1) f.add("--arch", &o.arch, "architecture: " + arch_list + " (densenet_tiny: tests only)", "A");
  f.add("--data", &o.data, "a MURA-v1.1 root (the folder with train_image_paths.csv); absent = the synthetic set, "
                           "generated once into a cache folder", "DIR");
  f.add("--synthetic-dir", &o.synthetic_dir, "where the synthetic set is cached (default: "
                                             "${XDG_CACHE_HOME:-~/.cache}/mura-engine/synthetic-v2-p<patients>)", "DIR");
  f.add("--synthetic-patients", &o.synthetic_patients, "train patients of the synthetic set (valid: a quarter)");
  f.add("--weights", &o.weights, "converted ImageNet weights (.safetensors from weights_tools/); the head is "
                                 "initialised fresh. Absent = random initialisation (said loudly)", "FILE");
  f.add("--protocol", &o.protocol, "split protocol: seed (the study's: image-level 80/10/10) | patient | official", "P");
  f.add("--images", &o.images, "images sampled before splitting (the study: 100, 3000, 10000); 0 = all");
  f.add("--parts", &o.parts, "body parts, e.g. hand,wrist (all = every part)", "LIST");
  f.add("--epochs", &o.epochs, "training epochs");
  f.add("--batch-size", &o.batch_size, "batch size");
  f.add("--lr", &o.lr, "learning rate");
  f.add("--optimizer", &o.optimizer, "adam-keras (epsilon 1e-7 on sqrt(v), the study's) | adam-torch", "O");
  f.add("--head", &o.head, "flatten (the study's Flatten + Dense(1)) | gap (global average pool + Dense(1))", "H");
  f.add("--input-size", &o.input_size, "input height and width in pixels");
  f.add("--preprocess", &o.preprocess, "study (x/255, the study's) | torch (ImageNet mean/std) | tf (x/127.5 - 1)", "P");
  f.add("--resize", &o.resize, "nearest (Keras's default, the study's) | bilinear | area", "R");
  f.add("--flavor", &o.flavor, "batch-norm convention: keras (momentum 0.99, the study's) | torch", "F");
  f.add_switch("--augment", &o.augment, "random horizontal flips and rotations (off in the study)");
  f.add("--rotation", &o.rotation, "largest rotation in degrees with --augment");
  f.add_switch("--class-weights", &o.class_weights, "MURA's per-body-part class weights in the loss (off in the study)");
  f.add("--device", &o.device, "auto | cpu | cuda | cuda:N", "D");
  f.add("--seed", &o.seed, "seed of the split, the initialisation, the data order and the augmentation");
  f.add("--workers", &o.workers, "data loader threads");
  f.add("--out", &o.out, "output folder (default: runs/<arch>-<protocol>-n<images>-s<seed>)", "DIR");
  f.add_switch("--resume", &o.resume, "continue the run in --out from checkpoints/last.safetensors (exactly)");
  f.add("--early-stopping", &o.early_stopping, "stop after N epochs without a lower val loss; 0 = off");
  f.add_switch("--deterministic", &o.deterministic, "deterministic GPU algorithms, no TF32 (the CPU always is)");
  f.add_switch("--memory-efficient", &o.memory_efficient,
               "DenseNet: recompute each BN+ReLU in backward instead of keeping it (about 15% of the activation "
               "memory at 224 px, about 10% more time on the CPU; the same numbers bit for bit)");
  f.add("--test-checkpoint", &o.test_checkpoint, "weights evaluated on the test split: last | best", "W");
  f.add_switch("--epoch-checkpoints", &o.keep_epoch_checkpoints,
               "also keep checkpoints/epoch_NNN.safetensors (--epoch-checkpoints=false: only last and best)");
  f.add_switch("--quiet", &o.quiet, "no progress display");
  f.set_epilog(
      "The defaults reproduce the study: Adam (Keras convention) with learning rate 1e-5, binary cross-entropy,\n"
      "batch 32, 10 epochs, a Flatten + Dense(1) head, x/255 preprocessing, 224x224 nearest-neighbour resizing,\n"
      "Keras batch-norm, the 'seed' protocol (image-level 80/10/10 split of N sampled images), no augmentation,\n"
      "no class weights. Pass --weights for the ImageNet start the study used.\n"
      "Output: args.json, split/, summary.csv, curves.svg, curves.png, tensorboard/ (TensorBoard scalars),\n"
      "checkpoints/{last,best,epoch_NNN}.safetensors, test/{metrics.json,report.md,predictions_images.csv,\n"
      "predictions_studies.csv}.");
}

std::string train_options_json(const TrainOptions& o, const std::vector<std::pair<std::string, std::string>>& extra) {
  std::ostringstream j;
  auto s = [&](const char* k, const std::string& v) { j << "  " << json_string(k) << ": " << json_string(v) << ",\n"; };
  auto n = [&](const char* k, double v) { j << "  " << json_string(k) << ": " << json_number(v) << ",\n"; };
  auto b = [&](const char* k, bool v) { j << "  " << json_string(k) << ": " << (v ? "true" : "false") << ",\n"; };
  j << "{\n";
  s("arch", o.arch);
  s("data", o.data);
  s("weights", o.weights);
  s("protocol", o.protocol);
  n("images", static_cast<double>(o.images));
  s("parts", o.parts);
  n("epochs", static_cast<double>(o.epochs));
  n("batch_size", static_cast<double>(o.batch_size));
  n("lr", o.lr);
  s("optimizer", o.optimizer);
  s("head", o.head);
  n("input_size", static_cast<double>(o.input_size));
  s("preprocess", o.preprocess);
  s("resize", o.resize);
  s("flavor", o.flavor);
  b("augment", o.augment);
  n("rotation", o.rotation);
  b("class_weights", o.class_weights);
  s("device", o.device);
  n("seed", static_cast<double>(o.seed));
  n("workers", o.workers);
  s("out", o.out);
  b("resume", o.resume);
  n("early_stopping", static_cast<double>(o.early_stopping));
  b("deterministic", o.deterministic);
  b("memory_efficient", o.memory_efficient);
  s("test_checkpoint", o.test_checkpoint);
  for (const auto& [k, v] : extra) s(k.c_str(), v);
  j << "  \"format\": \"mura-engine-args-v1\"\n}\n";
  return j.str();
}

// ---------------------------------------------------------------------------------------------------
// Data

std::string default_synthetic_dir(int synthetic_patients) {
  std::string base;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) base = xdg;
  else if (const char* home = std::getenv("HOME"); home && *home) base = std::string(home) + "/.cache";
  else base = "/tmp";
  return base + "/mura-engine/synthetic-v2-p" + std::to_string(synthetic_patients);
}

std::string resolve_data_root(const std::string& data_flag, const std::string& synthetic_dir, int synthetic_patients) {
  if (!data_flag.empty()) {
    ENGINE_CHECK(is_dir(data_flag)) << "--data " << data_flag
                                    << ": no such folder. Pass a MURA-v1.1 root (the folder holding "
                                       "train_image_paths.csv, train/ and valid/), or leave --data out to use "
                                       "the synthetic set";
    return data_flag;
  }
  ENGINE_CHECK(synthetic_patients >= 2) << "--synthetic-patients must be at least 2, got " << synthetic_patients;
  const std::string dir = synthetic_dir.empty() ? default_synthetic_dir(synthetic_patients) : synthetic_dir;
  const std::string root = dir + "/MURA-v1.1", marker = dir + "/COMPLETE";
  if (is_file(marker)) return root;
  std::fprintf(stderr, "no --data: generating the synthetic MURA (%d train patients) into %s (once)\n",
               synthetic_patients, dir.c_str());
  fs::create_directories(fs::path(dir).parent_path());
  const std::string tmp = dir + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp);
  data::SynthOptions so;
  so.train_patients = synthetic_patients;
  so.valid_patients = std::max(1, synthetic_patients / 4);
  // The apps' synthetic set (v2): cracks twice the generator's subtle default, with soft-tissue swelling,
  // so that a net trained for minutes on a CPU learns it (held-out accuracy about 0.85 for the tiny
  // DenseNet at 64 px in 8 epochs). With the subtle default a net from scratch needs far more images and
  // epochs; mura_synth makes either.
  so.fracture_scale = 2;
  so.swelling = 3;
  const data::SynthResult r = data::make_synthetic_mura(tmp, so);
  data::write_file_atomic(tmp + "/COMPLETE", std::to_string(r.images) + " images\n");
  std::error_code ec;
  fs::rename(tmp, dir, ec);
  if (ec) {
    // Another process finished first (or a stale incomplete folder is in the way).
    if (!is_file(marker)) {
      fs::remove_all(dir);
      fs::rename(tmp, dir);
    } else {
      fs::remove_all(tmp);
    }
  }
  return root;
}

// ---------------------------------------------------------------------------------------------------
// Nets and checkpoints

std::shared_ptr<nets::Net> build_net(const std::string& arch, nets::Head head, nets::Flavor flavor, int64_t input_size,
                                     uint64_t seed, bool memory_efficient) {
  engine::Generator gen(seed, 0x1417);  // the initialisation stream
  std::shared_ptr<nets::Net> net;
  if (arch == "densenet_tiny") {
    nets::DenseNetConfig c = nets::DenseNetConfig::densenet121(flavor);
    c.block_layers = {2, 2, 2, 2};
    c.growth = 8;
    c.bottleneck = 32;
    c.stem_channels = 16;
    net = std::make_shared<nets::DenseNet>(arch, c, head, input_size, gen);
  } else {
    net = nets::make_net(arch, head, flavor, input_size, gen);
  }
  if (auto* densenet = dynamic_cast<nets::DenseNet*>(net.get())) densenet->set_memory_efficient(memory_efficient);
  return net;
}

CheckpointInfo read_checkpoint(const std::string& path) {
  ENGINE_CHECK(is_file(path)) << "checkpoint " << path << " does not exist (a run writes checkpoints/last.safetensors, "
                                 "best.safetensors and epoch_NNN.safetensors)";
  CheckpointInfo info;
  auto tensors = engine::load_tensors(path, &info.metadata);
  ENGINE_CHECK(info.metadata.count("format") && info.metadata.at("format") == kCheckpointFormat)
      << path << " is not a training checkpoint of this project (no metadata format=" << kCheckpointFormat
      << "); converted ImageNet weights go to --weights";
  for (auto& [name, t] : tensors) {
    if (name.rfind("model.", 0) == 0) info.model.emplace(name.substr(6), t);
    else if (name.rfind("optim.", 0) == 0) info.optimizer.emplace(name.substr(6), t);
  }
  return info;
}

namespace {
const std::string& meta(const std::map<std::string, std::string>& m, const std::string& key) {
  auto it = m.find(key);
  ENGINE_CHECK(it != m.end()) << "checkpoint metadata has no '" << key << "'";
  return it->second;
}
}  // namespace

std::shared_ptr<nets::Net> net_from_checkpoint(const CheckpointInfo& c) {
  auto net = build_net(meta(c.metadata, "arch"), nets::parse_head(meta(c.metadata, "head")),
                       nets::parse_flavor(meta(c.metadata, "flavor")), std::stoll(meta(c.metadata, "input_size")), 0);
  net->load_state(c.model);
  return net;
}

data::LoaderOptions eval_loader_options(const std::map<std::string, std::string>& m, int64_t batch_size, int workers) {
  data::LoaderOptions lo;
  lo.batch_size = batch_size;
  lo.height = lo.width = static_cast<int>(std::stoll(meta(m, "input_size")));
  lo.resize = data::parse_resize_mode(meta(m, "resize"));
  lo.norm = data::parse_norm_mode(meta(m, "preprocess"));
  lo.shuffle = false;
  lo.workers = workers;
  return lo;
}

// ---------------------------------------------------------------------------------------------------
// Progress

Progress::Progress(std::string label, int64_t total, bool quiet)
    : label_(std::move(label)), total_(total), quiet_(quiet), tty_(::isatty(::fileno(stderr)) != 0), start_(now_seconds()) {}

void Progress::update(int64_t done, int64_t images, double loss, double accuracy) {
  if (quiet_) return;
  const double t = now_seconds(), elapsed = t - start_;
  if (tty_ ? (t - last_print_ < 0.2 && done < total_) : (t - last_print_ < 15 && last_print_ >= 0) || done == total_)
    return;
  if (!tty_ && last_print_ < 0 && elapsed < 15) return;  // plain lines: every 15 s
  last_print_ = t;
  const double rate = elapsed > 0 ? images / elapsed : 0;
  const double eta = done > 0 ? elapsed * static_cast<double>(total_ - done) / static_cast<double>(done) : 0;
  char stats[160];
  std::snprintf(stats, sizeof stats, "%lld/%lld loss %.4f acc %.3f %.1f img/s ETA %d:%02d", static_cast<long long>(done),
                static_cast<long long>(total_), loss, accuracy, rate, static_cast<int>(eta) / 60, static_cast<int>(eta) % 60);
  if (tty_) {
    const int width = 24, filled = total_ > 0 ? static_cast<int>(width * done / total_) : width;
    std::string bar(static_cast<size_t>(filled), '=');
    if (filled < width) bar += '>' + std::string(static_cast<size_t>(width - filled - 1), ' ');
    std::fprintf(stderr, "\r%s [%s] %s\x1b[K", label_.c_str(), bar.c_str(), stats);
  } else {
    std::fprintf(stderr, "%s %s\n", label_.c_str(), stats);
  }
  std::fflush(stderr);
}

void Progress::finish(const std::string& summary) {
  if (quiet_) return;
  std::fprintf(stderr, "%s%s %s\n", tty_ ? "\r\x1b[K" : "", label_.c_str(), summary.c_str());
  std::fflush(stderr);
}

// ---------------------------------------------------------------------------------------------------
// Evaluation pass

namespace {
EvaluationResult predict_with_loader(nets::Net& net, data::Loader& loader, engine::Device device,
                                     const std::string& label, bool quiet) {
  EvaluationResult result;
  net.eval();
  engine::NoGradGuard no_grad;
  Progress progress(label, loader.batches_per_epoch(), quiet);
  const double start = now_seconds();
  loader.start_epoch(0);
  int64_t done = 0;
  for (data::Batch batch; loader.next(batch);) {
    const std::vector<float> logits = net.forward(batch.images.to(device)).to_vector();
    for (int64_t i = 0; i < batch.size(); ++i) {
      const data::SplitEntry& e = loader.entries()[static_cast<size_t>(batch.indices[static_cast<size_t>(i)])];
      ImagePrediction p;
      p.path = e.path;
      p.study = e.study;
      p.part = e.part;
      p.label = e.label;
      p.logit = logits[static_cast<size_t>(i)];
      p.probability = sigmoid(p.logit);
      result.images.push_back(std::move(p));
    }
    progress.update(++done, static_cast<int64_t>(result.images.size()), 0, 0);
  }
  result.seconds = now_seconds() - start;
  compute_metrics(result);
  return result;
}
}  // namespace

EvaluationResult predict_entries(nets::Net& net, const std::string& root, const std::vector<data::SplitEntry>& entries,
                                 const data::LoaderOptions& loader_options, engine::Device device,
                                 const std::string& label, bool quiet) {
  ENGINE_CHECK(!entries.empty()) << label << ": no images to evaluate";
  data::LoaderOptions lo = loader_options;
  lo.shuffle = false;
  lo.augment = {};
  lo.cache = data::CacheMode::memory;
  data::Loader loader(root, entries, lo);
  return predict_with_loader(net, loader, device, label, quiet);
}

// ---------------------------------------------------------------------------------------------------
// summary.csv and curves

std::string summary_csv(const std::vector<EpochRow>& rows) {
  std::string text = "epoch,train_loss,train_acc,val_loss,val_acc,epoch_seconds,images_per_s,lr\n";
  for (const EpochRow& r : rows)
    text += std::to_string(r.epoch) + "," + g9(r.train_loss) + "," + g9(r.train_acc) + "," + g9(r.val_loss) + "," +
            g9(r.val_acc) + "," + g9(r.seconds) + "," + g9(r.images_per_s) + "," + g9(r.lr) + "\n";
  return text;
}

std::vector<EpochRow> parse_summary_csv(const std::string& text, const std::string& source) {
  std::vector<EpochRow> rows;
  const auto csv = data::parse_csv(text, source);
  for (size_t i = 1; i < csv.size(); ++i) {
    const auto& f = csv[i].fields;
    ENGINE_CHECK(f.size() == 8) << source << ":" << csv[i].line << ": expected 8 fields, got " << f.size();
    EpochRow r;
    r.epoch = std::stoll(f[0]);
    r.train_loss = std::stod(f[1]);
    r.train_acc = std::stod(f[2]);
    r.val_loss = std::stod(f[3]);
    r.val_acc = std::stod(f[4]);
    r.seconds = std::stod(f[5]);
    r.images_per_s = std::stod(f[6]);
    r.lr = std::stod(f[7]);
    rows.push_back(r);
  }
  return rows;
}

std::vector<Chart> curves_charts(const std::vector<EpochRow>& rows) {
  std::vector<double> x, tl, vl, ta, va, sec;
  for (const EpochRow& r : rows) {
    x.push_back(static_cast<double>(r.epoch));
    tl.push_back(r.train_loss);
    vl.push_back(r.val_loss);
    ta.push_back(r.train_acc);
    va.push_back(r.val_acc);
    sec.push_back(r.seconds);
  }
  return {{"train loss", "epoch", {{"", x, tl}}},     {"val loss", "epoch", {{"", x, vl}}},
          {"train accuracy", "epoch", {{"", x, ta}}}, {"val accuracy", "epoch", {{"", x, va}}},
          {"epoch time (s)", "epoch", {{"", x, sec}}}};
}

std::string curves_svg(const std::vector<EpochRow>& rows, const std::string& title) {
  return svg_chart_grid(curves_charts(rows), title, 5);
}

std::vector<ScalarEvent> epoch_scalar_events(const std::vector<EpochRow>& rows) {
  std::vector<ScalarEvent> events;
  double seconds = 0;
  for (const EpochRow& r : rows) {
    seconds += r.seconds;
    events.push_back({r.epoch,
                      seconds,
                      {{"train/loss", static_cast<float>(r.train_loss)},
                       {"train/accuracy", static_cast<float>(r.train_acc)},
                       {"val/loss", static_cast<float>(r.val_loss)},
                       {"val/accuracy", static_cast<float>(r.val_acc)},
                       {"time/epoch_seconds", static_cast<float>(r.seconds)},
                       {"time/images_per_s", static_cast<float>(r.images_per_s)},
                       {"lr", static_cast<float>(r.lr)}}});
  }
  return events;
}

namespace {
// curves.svg, curves.png and tensorboard/, regenerated whole from the rows after every epoch.
void write_curves(const std::string& out, const std::vector<EpochRow>& rows, const std::string& title,
                  double start_wall_time) {
  const std::vector<Chart> charts = curves_charts(rows);
  data::write_file_atomic(out + "/curves.svg", svg_chart_grid(charts, title, 5));
  data::write_png_file(out + "/curves.png", png_chart_grid(charts, title, 5), /*durable=*/true);
  // The numbers exactly as summary.csv holds them (9 digits), from which a resumed run regenerates the
  // file: then its bytes equal the file's, and the next epoch is appended to it (tensorboard.h).
  const std::vector<EpochRow> recorded = parse_summary_csv(summary_csv(rows), "summary.csv");
  write_tensorboard_run(out + "/tensorboard", epoch_scalar_events(recorded), start_wall_time);
}
}  // namespace

// ---------------------------------------------------------------------------------------------------
// The run

namespace {

struct Run {
  TrainOptions o;
  std::string root, out;
  data::Split split;
  std::shared_ptr<nets::Net> net;
  engine::Device device = engine::Device::cpu();
  std::string weights_note;
};

void write_checkpoint(const std::string& path, const nets::Net& net, const engine::Optimizer& optim,
                      const TrainOptions& o, int64_t epoch, double best_val_loss, int64_t bad_epochs,
                      const std::map<std::string, std::string>& extra = {}) {
  engine::NamedTensors tensors;
  for (const auto& [name, t] : net.state()) tensors.emplace_back("model." + name, t);
  for (const auto& [name, t] : optim.state()) tensors.emplace_back("optim." + name, t);
  std::map<std::string, std::string> m = {
      {"format", kCheckpointFormat},
      {"arch", o.arch},
      {"head", o.head},
      {"flavor", o.flavor},
      {"input_size", std::to_string(o.input_size)},
      {"preprocess", o.preprocess},
      {"resize", o.resize},
      {"optimizer", o.optimizer},
      {"lr", g9(o.lr)},
      {"epoch", std::to_string(epoch)},
      {"step", std::to_string(optim.step_count())},
      {"seed", std::to_string(o.seed)},
      {"data_order", "loader order and augmentation of epoch e are functions of (seed, e); next epoch " +
                         std::to_string(epoch)},
      {"best_val_loss", g9(best_val_loss)},
      {"bad_epochs", std::to_string(bad_epochs)},
  };
  for (const auto& [k, v] : extra) m[k] = v;
  engine::save_tensors(path, tensors, m);
}

void check_choice(const std::string& flag, const std::string& value, const std::vector<std::string>& choices) {
  std::string list;
  for (const std::string& c : choices) {
    if (c == value) return;
    list += (list.empty() ? "" : ", ") + c;
  }
  ENGINE_FAIL() << flag << " '" << value << "' is not one of: " << list;
}

}  // namespace

TrainResult run_training(const TrainOptions& options) {
  Run run;
  run.o = options;
  TrainOptions& o = run.o;
  const double start_wall_time = wall_clock_seconds();  // names tensorboard/'s event file (kept on resume)

  // --- 1. Everything that can fail on bad input, before --out is touched. ---
  check_choice("--optimizer", o.optimizer, {"adam-keras", "adam-torch"});
  check_choice("--test-checkpoint", o.test_checkpoint, {"last", "best"});
  const nets::Head head = nets::parse_head(o.head);
  ENGINE_CHECK(head != nets::Head::imagenet) << "--head imagenet has 1000 classes; use flatten or gap for MURA";
  const nets::Flavor flavor = nets::parse_flavor(o.flavor);
  const data::NormMode norm = data::parse_norm_mode(o.preprocess);
  const data::ResizeMode resize = data::parse_resize_mode(o.resize);
  ENGINE_CHECK(o.epochs >= 1) << "--epochs must be at least 1, got " << o.epochs;
  ENGINE_CHECK(o.batch_size >= 1) << "--batch-size must be at least 1, got " << o.batch_size;
  ENGINE_CHECK(o.lr > 0 && std::isfinite(o.lr)) << "--lr must be positive, got " << o.lr;
  ENGINE_CHECK(o.workers >= 1) << "--workers must be at least 1, got " << o.workers;
  ENGINE_CHECK(o.images >= 0) << "--images must not be negative";
  ENGINE_CHECK(o.early_stopping >= 0) << "--early-stopping must not be negative";
  if (o.out.empty())
    o.out = "runs/" + o.arch + "-" + o.protocol + "-n" + std::to_string(o.images) + "-s" + std::to_string(o.seed);
  run.out = o.out;
  const std::string last_path = o.out + "/checkpoints/last.safetensors";
  if (o.resume) {
    ENGINE_CHECK(is_file(last_path)) << "--resume: " << last_path << " does not exist; start the run without --resume";
  } else {
    ENGINE_CHECK(!is_file(last_path)) << "--out " << o.out
                                      << " already holds a run (checkpoints/last.safetensors); pass --resume to "
                                         "continue it, or choose another --out";
  }
  if (!o.weights.empty())
    ENGINE_CHECK(is_file(o.weights)) << "--weights " << o.weights
                                     << ": no such file. Convert ImageNet weights with weights_tools/ (see "
                                        "docs/apps.md), or leave --weights out for a random initialisation";

  run.device = engine::select_device(o.device);
  if (o.deterministic) {
    if (run.device.is_cuda()) {
      engine::set_deterministic(true);
      engine::set_allow_tf32(false);
    }
  }

  run.root = resolve_data_root(o.data, o.synthetic_dir, o.synthetic_patients);
  if (o.resume) {
    run.split = data::read_split(o.out + "/split");
  } else {
    const data::MuraIndex index = data::load_mura_index(run.root);
    if (index.report.inconsistencies() > 0) std::fprintf(stderr, "MURA index notes:\n%s", index.report.summary().c_str());
    data::SplitOptions so;
    so.protocol = data::parse_split_protocol(o.protocol);
    so.seed = o.seed;
    so.sample_images = o.images;
    so.parts = data::parse_body_parts(o.parts);
    ENGINE_CHECK(o.images == 0 || o.images <= static_cast<int64_t>(index.images.size()))
        << "--images " << o.images << " but " << run.root << " has only " << index.images.size() << " images";
    run.split = data::make_split(index, so);
    run.root = index.root;
  }
  ENGINE_CHECK(!run.split.train.empty() && !run.split.validation.empty() && !run.split.test.empty())
      << "the split has an empty side (train " << run.split.train.size() << ", validation " << run.split.validation.size()
      << ", test " << run.split.test.size() << "); pass a larger --images";
  if (o.class_weights) data::apply_class_weights(run.split, data::compute_class_weights(run.split.train));

  run.net = build_net(o.arch, head, flavor, o.input_size, o.seed, o.memory_efficient);
  if (!o.weights.empty()) {
    const auto report = nets::load_weights(*run.net, o.weights, /*skip_head=*/true);
    run.weights_note = o.weights;
    std::fprintf(stderr, "loaded %zu tensors from %s (the %s head starts from a fresh Glorot initialisation)\n",
                 report.loaded.size(), o.weights.c_str(), o.head.c_str());
  } else {
    run.weights_note = "random (seed " + std::to_string(o.seed) + ")";
    std::fprintf(stderr,
                 "WARNING: no --weights: %s starts from a RANDOM initialisation, not ImageNet as in the study.\n"
                 "WARNING: convert ImageNet weights with weights_tools/ and pass --weights FILE to reproduce it.\n",
                 o.arch.c_str());
  }

  CheckpointInfo resume_from;
  if (o.resume) {
    resume_from = read_checkpoint(last_path);
    for (const char* key : {"arch", "head", "flavor", "input_size", "preprocess", "resize"}) {
      const std::string now = key == std::string("arch") ? o.arch : key == std::string("head") ? o.head
                              : key == std::string("flavor") ? o.flavor : key == std::string("input_size")
                              ? std::to_string(o.input_size) : key == std::string("preprocess") ? o.preprocess : o.resize;
      ENGINE_CHECK(meta(resume_from.metadata, key) == now)
          << "--resume: the run in " << o.out << " used " << key << " " << meta(resume_from.metadata, key)
          << " but this command says " << now << "; pass the run's settings (see " << o.out << "/args.json)";
    }
    run.net->load_state(resume_from.model);
  }

  // --- 2. The output folder. ---
  data::make_directories(o.out + "/checkpoints");
  if (!o.resume) data::write_split(run.split, o.out + "/split");
  data::write_file_atomic(o.out + "/args.json",
                          train_options_json(o, {{"data_root", run.root},
                                                 {"device_used", run.device.str()},
                                                 {"weights_used", run.weights_note},
                                                 {"train_images", std::to_string(run.split.train.size())},
                                                 {"validation_images", std::to_string(run.split.validation.size())},
                                                 {"test_images", std::to_string(run.split.test.size())}}));

  // --- 3. Training. ---
  nets::Net& net = *run.net;
  net.to(run.device);
  engine::ParameterArena arena(net.named_parameters());
  engine::Adam adam(arena, o.optimizer == "adam-keras" ? engine::Adam::keras(static_cast<float>(o.lr))
                                                       : engine::Adam::pytorch(static_cast<float>(o.lr)));
  TrainResult result;
  result.out = o.out;
  result.train_images = static_cast<int64_t>(run.split.train.size());
  result.validation_images = static_cast<int64_t>(run.split.validation.size());
  result.test_images = static_cast<int64_t>(run.split.test.size());
  int64_t start_epoch = 0, bad_epochs = 0;
  double best_val_loss = INFINITY;
  if (o.resume) {
    for (const auto& [name, t] : adam.state()) {
      auto it = resume_from.optimizer.find(name);
      ENGINE_CHECK(it != resume_from.optimizer.end()) << last_path << " has no optimizer state '" << name << "'";
      t.copy_from(it->second);
    }
    adam.set_step_count(std::stoll(meta(resume_from.metadata, "step")));
    start_epoch = std::stoll(meta(resume_from.metadata, "epoch"));
    best_val_loss = std::stod(meta(resume_from.metadata, "best_val_loss"));
    bad_epochs = std::stoll(meta(resume_from.metadata, "bad_epochs"));
    if (is_file(o.out + "/summary.csv"))
      for (const EpochRow& r : parse_summary_csv(data::read_file_text(o.out + "/summary.csv"), o.out + "/summary.csv"))
        if (r.epoch <= start_epoch) result.rows.push_back(r);
    std::fprintf(stderr, "resuming %s after epoch %lld (optimizer step %lld)\n", o.out.c_str(),
                 static_cast<long long>(start_epoch), static_cast<long long>(adam.step_count()));
  }

  data::LoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.height = lo.width = static_cast<int>(o.input_size);
  lo.resize = resize;
  lo.norm = norm;
  lo.seed = o.seed;
  lo.workers = o.workers;
  lo.shuffle = true;
  if (o.augment) lo.augment = {true, static_cast<float>(o.rotation)};
  data::Loader train_loader(run.root, run.split.train, lo);
  data::LoaderOptions vo = lo;
  vo.shuffle = false;
  vo.augment = {};
  data::Loader val_loader(run.root, run.split.validation, vo);

  std::fprintf(stderr, "%s (%s head, %s BN) on %s: %zu train, %zu validation, %zu test images; %lld epochs from %lld\n",
               o.arch.c_str(), o.head.c_str(), o.flavor.c_str(), run.device.str().c_str(), run.split.train.size(),
               run.split.validation.size(), run.split.test.size(), static_cast<long long>(o.epochs),
               static_cast<long long>(start_epoch + 1));
  const std::string ckpt = o.out + "/checkpoints/";
  for (int64_t epoch = start_epoch; epoch < o.epochs && !result.nonfinite; ++epoch) {
    net.train();
    char label[64];
    std::snprintf(label, sizeof label, "epoch %lld/%lld", static_cast<long long>(epoch + 1), static_cast<long long>(o.epochs));
    Progress progress(std::string(label) + " train", train_loader.batches_per_epoch(), o.quiet);
    const double t0 = now_seconds();
    train_loader.start_epoch(epoch);
    double loss_sum = 0;
    int64_t seen = 0, correct = 0, batches = 0;
    for (data::Batch batch; train_loader.next(batch);) {
      const Tensor x = batch.images.to(run.device), y = batch.labels.to(run.device);
      arena.zero_grad();
      const Tensor logits = net.forward(x);
      const Tensor loss = engine::bce_with_logits(logits, y, o.class_weights ? batch.weights.to(run.device) : Tensor());
      const double loss_value = loss.item();
      if (!std::isfinite(loss_value)) {
        result.nonfinite = true;
        engine::NamedTensors debug;
        for (const auto& [name, t] : net.state()) debug.emplace_back("model." + name, t);
        debug.emplace_back("batch.images", batch.images);
        debug.emplace_back("batch.labels", batch.labels);
        debug.emplace_back("batch.logits", logits.detach());
        engine::save_tensors(ckpt + "debug_nonfinite.safetensors", debug,
                             {{"format", "mura-engine-debug-v1"}, {"epoch", std::to_string(epoch + 1)},
                              {"batch", std::to_string(batch.batch_index)}, {"step", std::to_string(adam.step_count())},
                              {"loss", g9(loss_value)}, {"arch", o.arch}});
        train_loader.stop();
        std::fprintf(stderr,
                     "\nerror: the training loss became %s at epoch %lld, batch %lld (optimizer step %lld). Training "
                     "stopped.\n  The model and the batch are in %sdebug_nonfinite.safetensors; %slast.safetensors "
                     "(the last finished epoch) is kept.\n  Try a lower --lr, or check the data with mura_verify.\n",
                     g9(loss_value).c_str(), static_cast<long long>(epoch + 1), static_cast<long long>(batch.batch_index),
                     static_cast<long long>(adam.step_count()), ckpt.c_str(), ckpt.c_str());
        break;
      }
      loss.backward();
      adam.step();
      const std::vector<float> z = logits.to_vector(), t = batch.labels.to_vector();
      for (size_t i = 0; i < z.size(); ++i) correct += (z[i] > 0) == (t[i] > 0.5f);
      loss_sum += loss_value * static_cast<double>(batch.size());
      seen += batch.size();
      ++batches;
      progress.update(batches, seen, loss_sum / static_cast<double>(seen),
                      static_cast<double>(correct) / static_cast<double>(seen));
    }
    if (result.nonfinite) break;
    const double train_seconds = now_seconds() - t0;
    const EvaluationResult val = predict_with_loader(net, val_loader, run.device, std::string(label) + " val", true);
    EpochRow row;
    row.epoch = epoch + 1;
    row.train_loss = seen ? loss_sum / static_cast<double>(seen) : NAN;
    row.train_acc = seen ? static_cast<double>(correct) / static_cast<double>(seen) : NAN;
    row.val_loss = val.overall.image.loss;
    row.val_acc = val.overall.image.accuracy;
    row.seconds = now_seconds() - t0;
    row.images_per_s = train_seconds > 0 ? static_cast<double>(seen) / train_seconds : 0;
    row.lr = adam.learning_rate();
    result.rows.push_back(row);
    char summary[200];
    std::snprintf(summary, sizeof summary, "loss %.4f acc %.3f | val loss %.4f acc %.3f | %.1f s, %.1f img/s",
                  row.train_loss, row.train_acc, row.val_loss, row.val_acc, row.seconds, row.images_per_s);
    progress.finish(summary);

    const bool improved = row.val_loss < best_val_loss;
    if (improved) {
      best_val_loss = row.val_loss;
      bad_epochs = 0;
    } else {
      ++bad_epochs;
    }
    char name[64];
    std::snprintf(name, sizeof name, "epoch_%03lld.safetensors", static_cast<long long>(epoch + 1));
    if (o.keep_epoch_checkpoints) write_checkpoint(ckpt + name, net, adam, o, epoch + 1, best_val_loss, bad_epochs);
    write_checkpoint(last_path, net, adam, o, epoch + 1, best_val_loss, bad_epochs);
    if (improved) {
      // best = this epoch's last: a hard link (no second copy on disk), swapped in atomically; the next
      // write of last replaces last's directory entry, not the shared file.
      const std::string tmp = ckpt + "best.safetensors.tmp";
      std::error_code ec;
      fs::remove(tmp, ec);
      fs::create_hard_link(last_path, tmp, ec);
      if (!ec) fs::rename(tmp, ckpt + "best.safetensors", ec);
      if (ec) write_checkpoint(ckpt + "best.safetensors", net, adam, o, epoch + 1, best_val_loss, bad_epochs);
    }
    data::write_file_atomic(o.out + "/summary.csv", summary_csv(result.rows));
    write_curves(o.out, result.rows, o.arch + " training curves", start_wall_time);
    if (o.early_stopping > 0 && bad_epochs >= o.early_stopping && epoch + 1 < o.epochs) {
      result.early_stopped = true;
      std::fprintf(stderr, "early stopping: no lower val loss in %lld epochs (best %.4f)\n",
                   static_cast<long long>(bad_epochs), best_val_loss);
      break;
    }
  }
  if (result.nonfinite) {
    if (!result.rows.empty()) data::write_file_atomic(o.out + "/summary.csv", summary_csv(result.rows));
    return result;
  }

  // --- 4. The test split. ---
  if (o.test_checkpoint == "best" && is_file(ckpt + "best.safetensors")) {
    net.load_state(read_checkpoint(ckpt + "best.safetensors").model);
  }
  result.test = predict_entries(net, run.root, run.split.test, vo, run.device, "test", o.quiet);
  result.tested = true;
  write_evaluation(o.out + "/test", result.test, o.arch + " on the test split",
                   {{"arch", o.arch},
                    {"head", o.head},
                    {"weights", run.weights_note},
                    {"checkpoint", o.test_checkpoint},
                    {"epochs", std::to_string(result.rows.size())},
                    {"protocol", o.protocol},
                    {"images", std::to_string(o.images)},
                    {"seed", std::to_string(o.seed)},
                    {"device", run.device.str()},
                    {"data", run.root}});
  std::fprintf(stderr, "test: image accuracy %.4f, AUROC %s; study accuracy %.4f, kappa %s; %.2f s (%.1f images/s)\n",
               result.test.overall.image.accuracy, fmt(result.test.overall.image.auroc).c_str(),
               result.test.overall.study.accuracy, fmt(result.test.overall.study.kappa).c_str(), result.test.seconds,
               result.test.images_per_second);
  std::fprintf(stderr, "wrote %s/{summary.csv,curves.svg,curves.png,tensorboard/,checkpoints/,test/report.md}\n",
               o.out.c_str());
  return result;
}

int train_main(int argc, char** argv, const std::string& program, const std::string& description,
               const std::string& default_arch, const std::vector<std::string>& archs) {
  TrainOptions options;
  options.arch = default_arch;
  FlagParser flags(program, description);
  add_train_flags(flags, options, archs);
  try {
    if (!flags.parse(argc, argv)) return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), e.what());
    return 2;
  }
  if (std::find(archs.begin(), archs.end(), options.arch) == archs.end()) {
    std::fprintf(stderr, "%s: --arch %s is not one of this program's architectures (see --help)\n", program.c_str(),
                 options.arch.c_str());
    return 2;
  }
  try {
    const TrainResult r = run_training(options);
    return r.nonfinite ? 3 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program.c_str(), e.what());
    return 1;
  }
}

}  // namespace experiment
