// The shared trainer (see trainer.h): data, split, net, epochs, checkpoints, resume, the test report.
#include "experiment/trainer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <set>
#include <sstream>

#include "data/csv.h"
#include "data/image_write.h"
#include "data/io_util.h"
#include "data/splits.h"
#include "data/synth_mura.h"
#include "engine/batch_norm_sync.h"
#include "engine/distributed.h"
#include "engine/grad_buckets.h"
#include "engine/engine.h"
#include "engine/graph_step.h"
#include "engine/runtime.h"
#include "engine/serialize.h"
#include "engine/training_step.h"
#include "experiment/chart_png.h"
#include "experiment/lr_schedule.h"
#include "experiment/run_guard.h"
#include "experiment/svg.h"
#include "experiment/tensorboard.h"
#include "experiment/weights_check.h"
#include "nets/registry.h"

namespace experiment {

namespace fs = std::filesystem;
using engine::Tensor;

namespace {
bool is_dir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}
bool is_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}
}  // namespace

// ---------------------------------------------------------------------------------------------------
// Flags

void add_train_flags(FlagParser& f, TrainOptions& o, const std::vector<std::string>& archs) {
  // Flags that apply to DenseNet only are not offered where no DenseNet is trained (train_irv2).
  const bool densenet = std::any_of(archs.begin(), archs.end(), [](const std::string& a) { return a.rfind("densenet", 0) == 0; });
  if (!densenet) f.leave_out({"--memory-efficient"}, "it applies to DenseNet only");
  std::string arch_list;
  for (const std::string& a : archs) arch_list += (arch_list.empty() ? "" : "|") + a;
  if (archs.size() > 1) f.add("--arch", &o.arch, "architecture: " + arch_list + " (densenet_tiny: tests only)", "A");
  // o.arch is the program's default architecture here.
  const Recipe paper = recipe_settings("mura-paper", o.arch, archs);
  const bool paper_net = std::find(paper.keys.begin(), paper.keys.end(), "arch") != paper.keys.end();
  f.add("--recipe", &o.recipe, "a set of defaults (flags given beside it override them; recorded in args.json): "
        "study (the defaults listed here: the study's) | mura-paper (the MURA paper's: " +
        recipe_flags_text("mura-paper", o.arch, archs) + (paper_net ? "" : "; the net stays " + o.arch) + ")", "R");
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
  f.add("-e,--epochs", &o.epochs, "training epochs");
  f.add("-b,--batch-size", &o.batch_size, "batch size");
  f.add("--lr", &o.lr, "learning rate");
  f.add("--optimizer", &o.optimizer, "adam-keras (epsilon 1e-7 on sqrt(v), the study's) | adam-torch", "O");
  f.add("--weight-decay", &o.weight_decay, "decoupled weight decay (AdamW, as torch.optim.AdamW): every parameter "
        "p -= lr * X * p with each step; 0 = none (the study)", 0.0, 1e6);
  f.add("--sched", &o.sched, "learning-rate schedule: constant (the study's) | cosine (to --min-lr over --epochs) | "
        "step (x --decay-rate every --decay-epochs) | plateau (x --decay-rate when --best-metric has not improved "
        "for --patience-epochs epochs)", "S");
  f.add("--warmup-epochs", &o.warmup_epochs, "linear learning-rate warm-up over the first N epochs, per step "
        "(from lr/steps up to the scheduled value); 0 = none", 0, kMaxCount);
  f.add("--decay-epochs", &o.decay_epochs, "--sched step: epochs between decays", 1, kMaxCount);
  f.add("--decay-rate", &o.decay_rate, "--sched step, plateau: the factor of each decay (0.1 divides by 10)", 0.0, 1.0);
  f.add("--min-lr", &o.min_lr, "--sched cosine: the last learning rate; plateau: the floor", 0.0, 1e6);
  f.add("--patience-epochs", &o.patience_epochs, "--sched plateau: epochs without an improvement of --best-metric "
        "before a decay (Keras's patience; timm's and torch's count one more)", 1, kMaxCount);
  f.add("--head", &o.head, "flatten (the study's Flatten + Dense(1)) | gap (global average pool + Dense(1))", "H");
  f.add("--input-size", &o.input_size, "input height and width in pixels");
  f.add("--preprocess", &o.preprocess, "study (x/255, the study's) | torch (ImageNet mean/std) | tf (x/127.5 - 1)", "P");
  f.add("--resize", &o.resize, "nearest (Keras's default, the study's) | bilinear | area", "R");
  f.add("--flavor", &o.flavor, "batch-norm convention: keras (momentum 0.99, the study's) | torch", "F");
  f.add_switch("--augment", &o.augment, "random horizontal flips and rotations (off in the study)");
  f.add("--rotation", &o.rotation, "largest rotation in degrees with --augment", 0.0, 180.0, "DEG");
  f.add_switch("--class-weights", &o.class_weights, "MURA's per-body-part class weights in the loss (off in the study)");
  f.add("--device", &o.device, "auto | cpu | cuda | cuda:N (under mpirun / srun, cuda is the local rank's GPU)", "D");
  f.add_switch("--sync-bn", &o.sync_bn, "data parallelism (mpirun -np N): batch-norm statistics over every "
               "process's images, so that N processes compute one process's step (docs/distributed.md)");
  f.add("--bucket-mb", &o.bucket_mb, "data parallelism: the gradients are summed over the processes in buckets of "
        "this many MB, each started while backward still runs; 0 = one sum after backward", 0.0, 1e6, "MB");
  f.add("--seed", &o.seed, "seed of the split, the initialisation, the data order and the augmentation");
  f.add("-j,--workers", &o.workers, "data loader threads");
  f.add("-o,--out", &o.out, "output folder (default: runs/<arch>-<protocol>-n<images>-s<seed>)", "DIR");
  f.add_switch("--resume", &o.resume, "continue a run from its checkpoints/last.safetensors (exactly): the run "
                                      "named after it (--resume RUN_DIR) or the one in --out");
  f.allow_positional("RUN_DIR", "with --resume: the run folder to continue (the same as --out RUN_DIR)");
  f.add("--early-stopping", &o.early_stopping, "stop after N epochs without an improvement of --best-metric; 0 = off");
  f.add("--best-metric", &o.best_metric, "the validation metric that picks best.safetensors and drives "
        "--early-stopping and --sched plateau: val_loss (lower is better) | val_auroc (image level) | val_kappa "
        "(study level, MURA's)", "M");
  f.add_switch("--deterministic", &o.deterministic, "deterministic GPU algorithms, no TF32 (the CPU always is)");
  add_precision_flags(f, &o.precision, &o.amp);
  f.add_switch("--memory-efficient", &o.memory_efficient,
               "DenseNet: recompute each BN+ReLU in backward instead of keeping it (about 15% of the activation "
               "memory at 224 px, about 10% more time on the CPU; the same numbers bit for bit)");
  f.add_switch("--no-graph", &o.no_graph,
               "CUDA: run every training step's kernels one by one instead of replaying the step as one recorded "
               "CUDA graph (debugging; the same numbers, slower with small batches)");
  f.add("--test-checkpoint", &o.test_checkpoint, "weights evaluated on the test split: last | best", "W");
  f.add("--checkpoint-hist", &o.checkpoint_hist,
        "keep checkpoints/epoch_NNN.safetensors of the last N epochs (older ones are deleted after each epoch); "
        "0 = only last and best; -1 = every epoch (the older --epoch-checkpoints switch means -1)", -1, kMaxCount);
  f.add_switch("--quiet", &o.quiet, "no progress display");
  f.add("--max-bad-fraction", &o.max_bad_fraction,
        "share of each split's images that may be unreadable: they are skipped, counted and reported (0 = any "
        "unreadable image stops the run)", 0.0, 1.0);
  f.set_epilog(
      "The defaults reproduce the study: Adam (Keras convention) with learning rate 1e-5, binary cross-entropy,\n"
      "batch 32, 10 epochs, a Flatten + Dense(1) head, x/255 preprocessing, 224x224 nearest-neighbour resizing,\n"
      "Keras batch-norm, the 'seed' protocol (image-level 80/10/10 split of N sampled images), no augmentation,\n"
      "no class weights. Pass --weights for the ImageNet start the study used.\n"
      "Output: args.json, split/, summary.csv, curves.svg, curves.png, tensorboard/ (TensorBoard scalars),\n"
      "checkpoints/{last,best,epoch_NNN}.safetensors, test/{metrics.json,report.md,predictions_images.csv,\n"
      "predictions_studies.csv}, train.log (every message of the run, appended on --resume).\n"
      "--resume takes every setting not given on the command line from the run's args.json; of those given,\n"
      "only --epochs (not under --sched cosine), --workers, --quiet, --device, --early-stopping,\n"
      "--test-checkpoint, --checkpoint-hist, --deterministic" + std::string(densenet ? ", --memory-efficient" : "") +
      ", --no-graph and --max-bad-fraction may\n"
      "differ from the run's (not --precision: a bf16 run resumes in bf16).\n"
      "--config FILE starts a new run (a new --out) with the settings of a saved args.json; flags override them.");
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
    ENGINE_USER_CHECK(is_dir(data_flag)) << "--data " << data_flag
                                    << ": no such folder. Pass a MURA-v1.1 root (the folder holding "
                                       "train_image_paths.csv, train/ and valid/), or leave --data out to use "
                                       "the synthetic set";
    return absolute_path(data_flag);  // recorded in args.json: valid from any folder
  }
  ENGINE_USER_CHECK(synthetic_patients >= 2) << "--synthetic-patients must be at least 2, got " << synthetic_patients;
  const std::string dir =
      absolute_path(synthetic_dir.empty() ? default_synthetic_dir(synthetic_patients) : synthetic_dir);
  const std::string root = dir + "/MURA-v1.1", marker = dir + "/COMPLETE";
  if (is_file(marker)) return root;
  message("no --data: generating the synthetic MURA (%d train patients) into %s (once)\n",
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
// The run: run_training is the table of contents, each stage a function of the Run state below.

namespace {

// Everything a run holds between its stages.
struct Run {
  TrainOptions o;
  double start_wall_time = 0;  // names tensorboard/'s event file (kept on resume)
  std::string last_path, checkpoint_dir;  // checkpoints/last.safetensors, checkpoints/
  // setup
  engine::Device device = engine::Device::cpu();
  std::string root, weights_note;
  data::Split split;
  data::LoaderOptions train_loader_options, eval_loader_options;
  std::shared_ptr<nets::Net> net;
  std::unique_ptr<engine::ParameterArena> arena;
  std::unique_ptr<engine::Adam> adam;
  std::unique_ptr<engine::TrainingStep> step;
  // One process: `step` replayed as a CUDA graph on a GPU, eager otherwise (engine/graph_step.h).
  std::unique_ptr<engine::GraphedTrainingStep> graphed;
  std::unique_ptr<data::Loader> train_loader, val_loader;
  size_t train_bad_reported = 0, val_bad_reported = 0;  // unreadable images already reported
  const InterruptGuard* interrupt = nullptr;             // set while the epochs run
  // the state that resume restores and every epoch advances
  int64_t start_epoch = 0;
  CheckpointProgress progress{0, INFINITY, 0};  // best_value and best_metric: set by check_options
  LrScheduleOptions schedule;                   // the learning-rate schedule of the options
  TrainResult result;
  RunPlan plan;  // the batches of the whole run, for the progress bars' run ETA
  // Data parallelism (docs/distributed.md): this process's group; rank 0 alone writes the run folder.
  engine::Distributed* world = &engine::Distributed::world();
  engine::BatchNormSyncScope* sync_bn = nullptr;  // --sync-bn on several processes: told each step's global batch
  std::shared_ptr<engine::GradientBuckets> buckets;  // the gradient all-reduce, when distributed
  bool writer() const { return world->is_root(); }
};

// Data parallelism: each process evaluates a consecutive share of an evaluation split, entries
// [n r / N, n (r + 1) / N); a split of fewer images than processes is evaluated whole by each.
bool evaluation_sharded(const Run& run, const std::vector<data::SplitEntry>& entries) {
  return run.world->distributed() && entries.size() >= static_cast<size_t>(run.world->size());
}
size_t share_begin(const Run& run, size_t n, int rank) { return n * static_cast<size_t>(rank) / static_cast<size_t>(run.world->size()); }
std::vector<data::SplitEntry> evaluation_share(const Run& run, const std::vector<data::SplitEntry>& entries) {
  if (!evaluation_sharded(run, entries)) return entries;
  const size_t n = entries.size(), r = static_cast<size_t>(run.world->rank());
  return {entries.begin() + static_cast<std::ptrdiff_t>(share_begin(run, n, static_cast<int>(r))),
          entries.begin() + static_cast<std::ptrdiff_t>(share_begin(run, n, static_cast<int>(r) + 1))};
}

// The whole split's evaluation from every process's share (on every process): the predictions gathered in
// the split's order, the metrics computed over all of them, the time the slowest process's. Images a
// process could not read are missing from its share, as they would be from one process's pass.
EvaluationResult gathered_evaluation(const Run& run, const EvaluationResult& local,
                                     const std::vector<data::SplitEntry>& entries) {
  if (!evaluation_sharded(run, entries)) return local;
  const size_t begin = share_begin(run, entries.size(), run.world->rank());
  std::map<std::string, size_t> position;  // path -> index in the split, for this share
  for (size_t i = begin; i < share_begin(run, entries.size(), run.world->rank() + 1); ++i) position[entries[i].path] = i;
  std::vector<double> mine;  // [index, logit] per image
  for (const ImagePrediction& p : local.images) {
    mine.push_back(static_cast<double>(position.at(p.path)));
    mine.push_back(p.logit);
  }
  const std::vector<double> all = run.world->allgather(mine);
  EvaluationResult result;
  for (size_t k = 0; k + 1 < all.size(); k += 2) {
    const data::SplitEntry& e = entries[static_cast<size_t>(all[k])];
    ImagePrediction p;
    p.path = e.path;
    p.study = e.study;
    p.part = e.part;
    p.label = e.label;
    p.logit = all[k + 1];
    p.probability = probability_of_logit(p.logit);
    result.images.push_back(std::move(p));
  }
  const std::vector<double> seconds = run.world->allgather({local.seconds});
  result.seconds = *std::max_element(seconds.begin(), seconds.end());
  compute_metrics(result);
  return result;
}

void check_choice(const std::string& flag, const std::string& value, const std::vector<std::string>& choices) {
  std::string list;
  for (const std::string& c : choices) {
    if (c == value) return;
    list += (list.empty() ? "" : ", ") + c;
  }
  ENGINE_USER_FAIL() << flag << " '" << value << "' is not one of: " << list;
}

// The flags alone: every value checked and parsed (the loader options made of them), --out chosen and
// tested against --resume.
std::string default_out(const TrainOptions& o) {
  return "runs/" + o.arch + "-" + o.protocol + "-n" + std::to_string(o.images) + "-s" + std::to_string(o.seed);
}

void check_options(Run& run) {
  TrainOptions& o = run.o;
  make_paths_absolute(o);
  check_choice("--optimizer", o.optimizer, {"adam-keras", "adam-torch"});
  check_choice("--test-checkpoint", o.test_checkpoint, {"last", "best"});
  check_choice("--best-metric", o.best_metric, best_metric_names());
  check_choice("--recipe", o.recipe, recipe_names());
  check_choice("--precision", o.precision, {"f32", "bf16"});
  ENGINE_USER_CHECK(nets::parse_head(o.head) != nets::Head::imagenet)
      << "--head imagenet has 1000 classes; use flatten or gap for MURA";
  nets::parse_flavor(o.flavor);  // throws, naming the flavours, for an unknown one
  ENGINE_USER_CHECK(o.epochs >= 1) << "--epochs must be at least 1, got " << o.epochs;
  ENGINE_USER_CHECK(o.batch_size >= 1) << "--batch-size must be at least 1, got " << o.batch_size;
  ENGINE_USER_CHECK(o.lr > 0 && std::isfinite(o.lr)) << "--lr must be positive, got " << o.lr;
  ENGINE_USER_CHECK(o.workers >= 1) << "--workers must be at least 1, got " << o.workers;
  ENGINE_USER_CHECK(o.images >= 0) << "--images must not be negative";
  ENGINE_USER_CHECK(o.early_stopping >= 0) << "--early-stopping must not be negative";
  ENGINE_USER_CHECK(o.max_bad_fraction >= 0 && o.max_bad_fraction <= 1)
      << "--max-bad-fraction must be between 0 and 1, got " << o.max_bad_fraction;
  ENGINE_USER_CHECK(o.weight_decay >= 0 && std::isfinite(o.weight_decay))
      << "--weight-decay must not be negative, got " << o.weight_decay;
  run.schedule = {o.sched, o.lr, o.epochs, o.warmup_epochs, o.decay_epochs, o.decay_rate, o.min_lr, o.patience_epochs};
  check_lr_schedule(run.schedule);
  if (o.sched == "step" && o.decay_epochs >= o.epochs)
    message("note: --sched step with --decay-epochs %lld never decays in %lld epochs\n",
            static_cast<long long>(o.decay_epochs), static_cast<long long>(o.epochs));
  run.progress.best_metric = o.best_metric;
  run.progress.best_value = metric_none_yet(o.best_metric);

  data::LoaderOptions& lo = run.train_loader_options;
  lo.batch_size = o.batch_size;
  lo.height = lo.width = static_cast<int>(o.input_size);
  lo.resize = data::parse_resize_mode(o.resize);
  lo.norm = data::parse_norm_mode(o.preprocess);
  lo.seed = o.seed;
  lo.workers = o.workers;
  lo.shuffle = true;
  lo.max_bad_fraction = o.max_bad_fraction;
  if (o.augment) lo.augment = {true, static_cast<float>(o.rotation)};
  run.eval_loader_options = lo;
  run.eval_loader_options.shuffle = false;
  run.eval_loader_options.augment = {};
  // Data parallelism: --batch-size is the global batch, each process a 1/N share of it.
  const int processes = run.world->size();
  ENGINE_USER_CHECK(o.batch_size % processes == 0)
      << "--batch-size " << o.batch_size << " (the global batch) does not divide evenly over " << processes
      << " processes; pass a multiple of " << processes << " (e.g. --batch-size "
      << (o.batch_size / processes + 1) * processes << ") or launch another number of processes";
  lo.shard_rank = run.world->rank();
  lo.shard_count = processes;

  if (o.out.empty()) o.out = default_out(o);
  run.checkpoint_dir = o.out + "/checkpoints/";
  run.last_path = run.checkpoint_dir + "last.safetensors";
  if (o.resume) {
    ENGINE_USER_CHECK(is_file(run.last_path)) << "--resume: " << run.last_path
                                         << " does not exist; start the run without --resume";
  } else {
    ENGINE_USER_CHECK(!is_file(run.last_path)) << "--out " << o.out
                                          << " already holds a run (checkpoints/last.safetensors); pass --resume to "
                                             "continue it, or choose another --out";
  }
  if (!o.weights.empty())
    ENGINE_USER_CHECK(is_file(o.weights)) << "--weights " << o.weights
                                     << ": no such file. Convert ImageNet weights with weights_tools/ (see "
                                        "docs/apps.md), or leave --weights out for a random initialisation";
}

// The data root and the split (made, or read back when resuming), with class weights when asked for.
void load_data(Run& run) {
  const TrainOptions& o = run.o;
  // The synthetic set is generated once, by rank 0, before the others look for it.
  if (run.writer()) run.root = resolve_data_root(o.data, o.synthetic_dir, o.synthetic_patients);
  run.world->barrier();
  if (!run.writer()) run.root = resolve_data_root(o.data, o.synthetic_dir, o.synthetic_patients);
  if (o.resume) {
    run.split = data::read_split(o.out + "/split");
  } else {
    const data::MuraIndex index = data::load_mura_index(run.root);
    if (index.report.inconsistencies() > 0) message("MURA index notes:\n%s", index.report.summary().c_str());
    data::SplitOptions so;
    so.protocol = data::parse_split_protocol(o.protocol);
    so.seed = o.seed;
    so.sample_images = o.images;
    so.parts = data::parse_body_parts(o.parts);
    ENGINE_USER_CHECK(o.images == 0 || o.images <= static_cast<int64_t>(index.images.size()))
        << "--images " << o.images << " but " << run.root << " has only " << index.images.size() << " images";
    run.split = data::make_split(index, so);
    run.root = index.root;
  }
  ENGINE_USER_CHECK(!run.split.train.empty() && !run.split.validation.empty() && !run.split.test.empty())
      << "the split has an empty side (train " << run.split.train.size() << ", validation " << run.split.validation.size()
      << ", test " << run.split.test.size() << "); pass a larger --images";
  if (o.class_weights) data::apply_class_weights(run.split, data::compute_class_weights(run.split.train));
}

// The net with its starting weights (ImageNet, or said loudly to be random), on the device, with the
// arena, the optimizer and the training step over it.
void build_model(Run& run) {
  const TrainOptions& o = run.o;
  run.net = build_net(o.arch, nets::parse_head(o.head), nets::parse_flavor(o.flavor), o.input_size, o.seed,
                      o.memory_efficient);
  if (!o.weights.empty()) {
    const auto report = nets::load_weights(*run.net, o.weights, /*skip_head=*/true);
    run.weights_note = o.weights;
    message("loaded %zu tensors from %s (the %s head starts from a fresh Glorot initialisation)\n",
            report.loaded.size(), o.weights.c_str(), o.head.c_str());
    report_weights_check(o.weights, o.flavor, o.preprocess);  // WARNING when --flavor/--preprocess disagree
  } else {
    run.weights_note = "random (seed " + std::to_string(o.seed) + ")";
    message("WARNING: no --weights: %s starts from a RANDOM initialisation, not ImageNet as in the study.\n"
            "WARNING: convert ImageNet weights with weights_tools/ and pass --weights FILE to reproduce it.\n",
            o.arch.c_str());
  }
  run.net->to(run.device);
  run.arena = std::make_unique<engine::ParameterArena>(run.net->named_parameters());
  const float lr = static_cast<float>(o.lr);
  run.adam = std::make_unique<engine::Adam>(
      *run.arena, engine::Adam::decoupled_weight_decay(
                      o.optimizer == "adam-keras" ? engine::Adam::keras(lr) : engine::Adam::pytorch(lr),
                      static_cast<float>(o.weight_decay)));
  engine::StepOptions step_options;
  step_options.precision = parse_precision(o.precision);
  if (run.world->distributed()) {
    // The gradients of the global batch's loss: each process's loss is its share of the global mean (the
    // loss weights of train_pass), so the sum over processes is the single-process gradient.
    // The sums run in buckets started during backward (engine/grad_buckets.h), waited before the update.
    engine::Distributed* world = run.world;
    auto buckets = run.buckets = std::make_shared<engine::GradientBuckets>(
        *run.arena, *world, static_cast<int64_t>(o.bucket_mb * (1 << 20)));
    step_options.begin_backward = [buckets](engine::ParameterArena&) { buckets->begin_backward(); };
    step_options.reduce_gradients = [buckets](engine::ParameterArena&) { buckets->finish_backward(); };
    // The deferred step's non-finite flag: set on every process when set on one (engine/training_step.h).
    step_options.reduce_nonfinite_flag = [world](const Tensor& flag) { world->allreduce_max(flag); };
  }
  run.step = std::make_unique<engine::TrainingStep>(*run.net, *run.arena, run.adam.get(), std::move(step_options));
  if (!run.world->distributed()) {
    engine::GraphOptions graph_options;
    graph_options.enabled = !o.no_graph;
    graph_options.log = [](const std::string& line) { message("%s\n", line.c_str()); };
    run.graphed = std::make_unique<engine::GraphedTrainingStep>(*run.step, std::move(graph_options));
  }
}

// Stage 1, setup: everything that can fail on bad input, before --out is touched.
void setup(Run& run) {
  check_options(run);
  std::string device = run.o.device;
  // One process per GPU: "cuda" (or "auto" where CUDA is) is the local rank's GPU.
  const int gpus = engine::probe_devices().cuda_devices;
  if (run.world->distributed() && gpus > 0 && (device == "cuda" || device == "auto"))
    device = "cuda:" + std::to_string(run.world->local_rank() % gpus);
  run.device = engine::select_device(device);
  if (run.o.deterministic) {
    if (run.device.is_cuda()) {
      engine::set_deterministic(true);
      engine::set_allow_tf32(false);
    }
  }
  load_data(run);
  build_model(run);
  run.train_loader = std::make_unique<data::Loader>(run.root, run.split.train, run.train_loader_options);
  run.val_loader = std::make_unique<data::Loader>(run.root, evaluation_share(run, run.split.validation), run.eval_loader_options);
  run.result.out = run.o.out;
  run.result.train_images = static_cast<int64_t>(run.split.train.size());
  run.result.validation_images = static_cast<int64_t>(run.split.validation.size());
  run.result.test_images = static_cast<int64_t>(run.split.test.size());
}

// Stage 2, resume: the net, the optimizer, the epoch count, the early-stopping state and the finished
// epochs' rows from checkpoints/last.safetensors (and summary.csv), once its settings are the command's.
void resume(Run& run) {
  const TrainOptions& o = run.o;
  const CheckpointInfo last = read_checkpoint(run.last_path);  // its metadata validated
  const CheckpointSettings saved = checkpoint_settings(last.metadata, run.last_path);
  const std::pair<const char*, std::string> settings[] = {
      {"arch", o.arch},         {"head", o.head},           {"flavor", o.flavor},
      {"input_size", std::to_string(o.input_size)}, {"preprocess", o.preprocess}, {"resize", o.resize}};
  for (const auto& [key, now] : settings)
    ENGINE_USER_CHECK(checkpoint_value(last.metadata, key) == now)
        << "--resume: the run in " << o.out << " used " << option_flag(key) << " " << checkpoint_value(last.metadata, key)
        << " but this command says " << option_flag(key) << " " << now
        << "; pass the run's settings or leave the flag out";
  ENGINE_USER_CHECK(saved.best_metric == o.best_metric)
      << "--resume: " << run.last_path << " chose its best epoch by " << saved.best_metric << " but the run says "
      << "--best-metric " << o.best_metric << "; pass --best-metric " << saved.best_metric;
  for (const std::string& key : {std::string("epoch"), std::string("step"), "best_" + saved.best_metric,
                                 std::string("bad_epochs")})
    ENGINE_USER_CHECK(last.metadata.count(key)) << run.last_path << ": checkpoint metadata has no '" << key
                                           << "', which --resume needs";
  ENGINE_USER_CHECK(o.sched != "plateau" || last.metadata.count("lr_reductions"))
      << run.last_path << ": checkpoint metadata has no 'lr_reductions', which --resume needs under --sched plateau";
  run.net->load_state(last.model);
  for (const auto& [name, t] : run.adam->state()) {
    auto it = last.optimizer.find(name);
    ENGINE_USER_CHECK(it != last.optimizer.end()) << run.last_path << " has no optimizer state '" << name << "'";
    t.copy_from(it->second);
  }
  run.adam->set_step_count(saved.step);
  run.start_epoch = saved.epoch;
  run.progress = {saved.epoch, saved.best_value, saved.bad_epochs, saved.best_metric, saved.lr_reductions,
                  saved.plateau_wait};
  const std::string summary = o.out + "/summary.csv";
  if (is_file(summary))
    for (const EpochRow& r : parse_summary_csv(data::read_file_text(summary), summary))
      if (r.epoch <= run.start_epoch) run.result.rows.push_back(r);
  message("resuming %s after epoch %lld (optimizer step %lld)\n", o.out.c_str(),
          static_cast<long long>(run.start_epoch), static_cast<long long>(run.adam->step_count()));
}

// The output folder: checkpoints/, the split (new runs) and args.json.
void open_output(const Run& run) {
  const TrainOptions& o = run.o;
  data::make_directories(run.checkpoint_dir);
  if (!o.resume) data::write_split(run.split, o.out + "/split");
  std::vector<std::pair<std::string, std::string>> resolved = {
      {"data_root", run.root},
      {"device_used", run.device.str()},
      {"processes", std::to_string(run.world->size())},
      {"sync_bn", o.sync_bn ? "true" : "false"},
      {"bucket_mb", g9(o.bucket_mb)},
      {"weights_used", run.weights_note},
      {"train_images", std::to_string(run.split.train.size())},
      {"validation_images", std::to_string(run.split.validation.size())},
      {"test_images", std::to_string(run.split.test.size())}};
  // The last bits of a CPU run depend on the GEMM's kernels (OpenBLAS picks them by CPU, or as
  // OPENBLAS_CORETYPE says): recorded, so that a rerun that differs can be told why.
  if (!run.device.is_cuda()) resolved.emplace_back("cpu_gemm", engine::cpu_info().gemm_library);
  data::write_file_atomic(o.out + "/args.json", train_options_json(o, resolved));
  message("%s (%s head, %s BN) on %s: %zu train, %zu validation, %zu test images; %lld epochs from %lld\n",
          o.arch.c_str(), o.head.c_str(), o.flavor.c_str(), run.device.str().c_str(), run.split.train.size(),
          run.split.validation.size(), run.split.test.size(), static_cast<long long>(o.epochs),
          static_cast<long long>(run.start_epoch + 1));
}

// The model, the batch and its logits where the loss stopped being finite, and the message that says so.
void report_nonfinite(const Run& run, int64_t epoch, const data::Batch& batch, const engine::StepResult& step) {
  if (!run.writer()) return;  // every process stopped at the same step; rank 0 writes its share
  const std::string& ckpt = run.checkpoint_dir;
  engine::NamedTensors debug;
  for (const auto& [name, t] : run.net->state()) debug.emplace_back("model." + name, t);
  debug.emplace_back("batch.images", batch.images);
  debug.emplace_back("batch.labels", batch.labels);
  debug.emplace_back("batch.logits", step.logits.detach());
  const int64_t steps = run.adam->step_count();
  engine::save_tensors(ckpt + "debug_nonfinite.safetensors", debug,
                       {{"format", "mura-engine-debug-v1"}, {"epoch", std::to_string(epoch + 1)},
                        {"batch", std::to_string(batch.batch_index)}, {"step", std::to_string(steps)},
                        {"loss", g9(step.loss)}, {"arch", run.o.arch}});
  // last exists once an epoch has finished (in this run or the one resumed); before that there is none.
  const std::string kept = is_file(run.last_path)
                               ? ckpt + "last.safetensors (epoch " + std::to_string(run.progress.epoch) + ", the last "
                                        "finished epoch) is kept"
                               : "no checkpoint was written (no epoch finished), so there is no last.safetensors";
  message(
          "\nerror: the training loss became %s at epoch %lld, batch %lld (optimizer step %lld). Training "
          "stopped.\n  The model and the batch are in %sdebug_nonfinite.safetensors; %s.\n  Try a lower --lr, "
          "or check the data with mura_verify.\n",
          g9(step.loss).c_str(), static_cast<long long>(epoch + 1), static_cast<long long>(batch.batch_index),
          static_cast<long long>(steps), ckpt.c_str(), kept.c_str());
}

// Runs a pass over `loader`; when it stops because more images are unreadable than the loader allows,
// the error names the flag that allows more.
template <typename Pass>
auto naming_the_bad_fraction_flag(const data::Loader& loader, Pass&& pass) {
  try {
    return pass();
  } catch (const engine::Error& e) {
    const double fraction = loader.options().max_bad_fraction;
    const auto allowed = static_cast<size_t>(std::floor(fraction * static_cast<double>(loader.entries().size())));
    if (loader.bad_files().size() <= allowed) throw;
    throw engine::UserError(std::string(e.what()) + " with --max-bad-fraction (now " + g9(fraction) +
                        "; e.g. --max-bad-fraction 0.01 skips up to 1% of each split's images)");
  }
}

// One line per unreadable image skipped since the last report (--max-bad-fraction allowed it).
void report_skipped(const data::Loader& loader, const std::string& split, size_t& reported) {
  const std::vector<data::BadFile> bad = loader.bad_files();
  for (; reported < bad.size(); ++reported)
    message("skipped an unreadable %s image (--max-bad-fraction %s): %s\n", split.c_str(),
            g9(loader.options().max_bad_fraction).c_str(), bad[reported].error.c_str());
}

struct TrainPass {
  double loss_sum = 0;
  int64_t seen = 0, correct = 0;
  bool nonfinite = false;
  bool interrupted = false;  // a signal stopped the pass before a batch
};

// Test hooks (fault injection), VARIABLE=RANK:STEP: true on process RANK before the optimizer step STEP.
// MURA_ENGINE_TEST_KILL kills that process (SIGKILL), as a crashed node would: the distributed tests check
// that the job ends promptly. MURA_ENGINE_TEST_NAN makes that process's share of the loss NaN: every
// process must skip that update and stop.
bool test_hook_fires(const Run& run, const char* variable) {
  const char* spec = std::getenv(variable);
  int rank = -1;
  long long step = -1;
  return spec && std::sscanf(spec, "%d:%lld", &rank, &step) == 2 && rank == run.world->rank() &&
         run.adam->step_count() == step;
}
void maybe_killed_for_test(const Run& run) {
  if (test_hook_fires(run, "MURA_ENGINE_TEST_KILL")) std::raise(SIGKILL);
}

// The loss weights that make this process's mean loss its share of the global batch's mean:
// w_i * n_local / n_global (w_i = the class weight, or 1), on the host. Pageable: a few bytes, which the
// driver stages at once (a pinned allocation per step would cost more: cudaFreeHost waits for the device).
Tensor shard_loss_weights(const data::Batch& batch, bool class_weights, double global_images) {
  const int64_t n = batch.size();
  Tensor w = Tensor::empty({n});
  const std::vector<float> given = class_weights ? batch.weights.to_vector() : std::vector<float>();
  const double share = static_cast<double>(n) / global_images;
  for (int64_t i = 0; i < n; ++i)
    w.data()[i] = static_cast<float>((class_weights ? given[static_cast<size_t>(i)] : 1.0) * share);
  return w;
}

// The scheduled learning rate of the next step (experiment/lr_schedule.h).
void set_scheduled_lr(Run& run, int64_t epoch) {
  const PlateauState plateau{run.progress.lr_reductions, run.progress.plateau_wait};
  run.adam->set_learning_rate(static_cast<float>(scheduled_lr(run.schedule, epoch, run.adam->step_count(),
                                                              run.train_loader->batches_per_epoch(), plateau)));
}

// A finished step in the pass's running figures and on its bar.
void count_step(TrainPass& pass, Progress& progress, int64_t batches, double mean_loss, int64_t images,
                int64_t correct) {
  pass.correct += correct;
  pass.loss_sum += mean_loss * static_cast<double>(images);
  pass.seen += images;
  progress.update(batches, pass.seen, pass.loss_sum / static_cast<double>(pass.seen),
                  static_cast<double>(pass.correct) / static_cast<double>(pass.seen));
}

int64_t correct_predictions(const Tensor& logits, const data::Batch& batch) {
  const std::vector<float> z = logits.to_vector(), t = batch.labels.to_vector();
  int64_t correct = 0;
  for (size_t i = 0; i < z.size(); ++i) correct += (z[i] > 0) == (t[i] > 0.5f);
  return correct;
}

// Waits for the device when a training pass is left by an exception, before the host buffers of its steps
// in flight (declared before the guard, so destroyed after it) go: an upload may still be reading them, and
// the loader hands a pinned batch buffer out again as soon as nobody holds it.
class WaitForDeviceOnException {
 public:
  explicit WaitForDeviceOnException(engine::Device device)
      : device_(device), exceptions_(std::uncaught_exceptions()) {}
  ~WaitForDeviceOnException() {
    if (std::uncaught_exceptions() <= exceptions_) return;
    try {
      engine::device_synchronize(device_);
    } catch (...) {  // the exception under way is the one to report
    }
  }
  WaitForDeviceOnException(const WaitForDeviceOnException&) = delete;
  WaitForDeviceOnException& operator=(const WaitForDeviceOnException&) = delete;

 private:
  engine::Device device_;
  int exceptions_;
};

// enqueue(images, labels) on the batch uploaded without waiting (the loader's batches are pinned): the GPU
// may still be running the previous step. The caller holds `batch` until that step's readback has been
// waited on, after which the device has passed these copies too; where its loop ends before that (a
// non-finite loss) it waits on the readback first, and on an exception its WaitForDeviceOnException does.
template <typename Enqueue>
engine::PendingStep enqueue_uploaded(const Run& run, const data::Batch& batch, const Enqueue& enqueue) {
  return enqueue(batch.images.to_nonblocking(run.device), batch.labels.to_nonblocking(run.device));
}

// One process: the host reads each step's loss after enqueueing the next (engine/training_step.h, seam
// (a')): no step waits for the host in its middle. A non-finite loss is reported with its own epoch and
// batch; the device skipped its update and that of the step enqueued after it. On a GPU each step after the
// warm-up is one CUDA graph replay (engine/graph_step.h; --no-graph: eager), the last smaller batch eager.
TrainPass train_pass_deferred(Run& run, int64_t epoch, Progress& progress) {
  const TrainOptions& o = run.o;
  data::Loader& loader = *run.train_loader;
  TrainPass pass;
  int64_t batches = 0;
  struct InFlight {
    engine::PendingStep step;
    data::Batch batch;
  };
  InFlight previous;
  data::Batch batch;
  const WaitForDeviceOnException wait_on_exception(run.device);  // after previous and batch: destroyed first
  // Reads the previous step's loss; false when it was not finite (reported; the pass stops).
  const auto finish_previous = [&]() {
    if (!previous.step.defined()) return true;
    const engine::StepResult step = run.graphed->finish(previous.step);
    const data::Batch& batch = previous.batch;
    if (!step.finite) {
      pass.nonfinite = true;
      report_nonfinite(run, epoch, batch, step);
      run.graphed->clear_nonfinite();
      return false;
    }
    count_step(pass, progress, ++batches, step.loss, batch.size(), correct_predictions(step.logits, batch));
    previous = InFlight();
    return true;
  };
  for (;;) {
    if (run.interrupt && run.interrupt->requested()) {  // between batches: nothing partial is written
      const bool previous_finite = finish_previous();
      loader.stop();
      if (!previous_finite) break;
      pass.interrupted = true;
      message("%s\n",
              interruption_message(run.interrupt->signal_number(), epoch + 1, batches + 1, run.progress.epoch).c_str());
      break;
    }
    if (!loader.next(batch)) break;
    maybe_killed_for_test(run);
    set_scheduled_lr(run, epoch);
    // `batch` stays held in `previous` until its step's readback has been waited on (enqueue_uploaded).
    engine::PendingStep current = enqueue_uploaded(run, batch, [&](const Tensor& images, const Tensor& labels) {
      return run.graphed->enqueue(images, labels, o.class_weights ? batch.weights.to_nonblocking(run.device) : Tensor());
    });
    if (!finish_previous()) {
      if (current.readback) current.readback->wait();
      loader.stop();
      break;
    }
    previous = InFlight{std::move(current), batch};
  }
  if (!pass.nonfinite && !pass.interrupted) finish_previous();
  return pass;
}

// Several processes: each step adds small all-reduces beside the gradients': before it, the images of the
// global batch and any process's stop request; the device's non-finite flag (a maximum, inside enqueue: so
// every process skips the same updates); and after the loss is read, the global loss, its finiteness and
// the correct predictions, so that every process stops at the same step for the same reason. As on one
// process the step is deferred (engine/training_step.h, seam (a')): the host reads step k's loss after
// enqueueing step k + 1, so no step waits for the host in its middle.
TrainPass train_pass_distributed(Run& run, int64_t epoch, Progress& progress) {
  const TrainOptions& o = run.o;
  data::Loader& loader = *run.train_loader;
  engine::Distributed& world = *run.world;
  TrainPass pass;
  int64_t batches = 0;
  struct InFlight {
    engine::PendingStep step;
    data::Batch batch;
    double global_images = 0;
    Tensor host_weights;  // the source of the step's weights upload
  };
  InFlight previous;
  data::Batch batch;
  Tensor weights;
  const WaitForDeviceOnException wait_on_exception(run.device);  // after previous, batch, weights: destroyed first
  // Reads the previous step's loss and sums it over the processes; false when it was not finite on some
  // process (reported; every process stops).
  const auto finish_previous = [&]() {
    if (!previous.step.defined()) return true;
    engine::StepResult step = run.step->finish(previous.step);
    const data::Batch& batch = previous.batch;
    const bool finite = step.finite;
    double after[3] = {finite ? step.loss : 0.0, finite ? 0.0 : 1.0,
                       static_cast<double>(correct_predictions(step.logits, batch))};
    world.allreduce_sum(after, 3);  // the sum of the shares: the global batch's mean loss
    step.finite = after[1] == 0;
    step.loss = step.finite ? after[0] : (finite ? NAN : step.loss);
    if (!step.finite) {
      pass.nonfinite = true;
      // Every process skipped this update (the flag is a maximum over them): the step count goes back on
      // the processes whose own share was finite too.
      run.adam->set_step_count(previous.step.optimizer_steps_before);
      // Which processes' shares were not finite (every process asks).
      const std::vector<double> bad = world.allgather({finite ? 0.0 : 1.0});
      std::string ranks;
      for (size_t r = 0; r < bad.size(); ++r)
        if (bad[r] != 0) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
      message("the share of the loss of rank(s) %s of %d was not finite: every process stops at this step\n",
              ranks.c_str(), world.size());
      report_nonfinite(run, epoch, batch, step);
      run.step->clear_nonfinite();
      return false;
    }
    count_step(pass, progress, ++batches, step.loss, static_cast<int64_t>(previous.global_images),
               static_cast<int64_t>(after[2]));
    previous = InFlight();
    return true;
  };
  for (;;) {
    bool stop = run.interrupt && run.interrupt->requested();
    const bool have = !stop && loader.next(batch);
    double before[3] = {have ? static_cast<double>(batch.size()) : 0.0, stop ? 1.0 : 0.0, have ? 1.0 : 0.0};
    world.allreduce_sum(before, 3);
    stop = before[1] > 0;
    if (stop) {  // between batches: nothing partial is written
      const bool previous_finite = finish_previous();
      loader.stop();
      if (!previous_finite) break;
      pass.interrupted = true;
      const int signal = run.interrupt && run.interrupt->requested() ? run.interrupt->signal_number() : SIGTERM;
      message("%s\n", interruption_message(signal, epoch + 1, batches + 1, run.progress.epoch).c_str());
      break;
    }
    if (before[2] < world.size()) break;  // the epoch is over (on every process: the same batch count)
    maybe_killed_for_test(run);
    set_scheduled_lr(run, epoch);
    const double global_images = before[0];
    if (run.sync_bn) run.sync_bn->set_global_images(static_cast<int64_t>(global_images));
    weights = shard_loss_weights(batch, o.class_weights, global_images);
    if (test_hook_fires(run, "MURA_ENGINE_TEST_NAN")) weights.fill_(NAN);
    // The gradients are summed over the processes during and after backward, before the update. `batch`
    // and the host weights stay held in `previous` until the step's readback has been waited on
    // (enqueue_uploaded).
    engine::PendingStep current = enqueue_uploaded(run, batch, [&](const Tensor& images, const Tensor& labels) {
      return run.step->enqueue(images, labels, weights.to_nonblocking(run.device));
    });
    if (!finish_previous()) {
      if (current.readback) current.readback->wait();
      loader.stop();
      break;
    }
    previous = InFlight{std::move(current), batch, global_images, weights};
  }
  if (!pass.nonfinite && !pass.interrupted) finish_previous();
  return pass;
}

// One pass of training steps over the train split (the running loss and accuracy on `progress`).
TrainPass train_pass(Run& run, int64_t epoch, Progress& progress) {
  run.net->train();
  run.train_loader->start_epoch(epoch);
  return run.world->distributed() ? train_pass_distributed(run, epoch, progress)
                                  : train_pass_deferred(run, epoch, progress);
}

// checkpoints/<name> = this epoch's last: a hard link (no second copy on disk), swapped in atomically (a
// full copy where links fail); the next write of last replaces last's directory entry, not the shared file.
void link_to_last(const Run& run, const std::string& name) {
  const std::string tmp = run.checkpoint_dir + name + ".tmp";
  std::error_code ec;
  fs::remove(tmp, ec);
  fs::create_hard_link(run.last_path, tmp, ec);
  if (!ec) fs::rename(tmp, run.checkpoint_dir + name, ec);
  if (ec) write_checkpoint(run.checkpoint_dir + name, *run.net, *run.adam, run.o, run.progress);
}

// The epoch of an epoch_NNN.safetensors name; -1 for any other name.
int64_t epoch_checkpoint_number(const std::string& name) {
  const std::string prefix = "epoch_", suffix = ".safetensors";
  if (name.size() <= prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return -1;
  int64_t epoch = -1;
  return parse_file_int(name.substr(prefix.size(), name.size() - prefix.size() - suffix.size()), epoch) ? epoch : -1;
}

// last (every epoch), epoch_NNN (--checkpoint-hist: the last N kept, older ones deleted; -1 every one) and
// best (when --best-metric improved).
void write_epoch_checkpoints(const Run& run, bool improved) {
  const int64_t epoch = run.progress.epoch, keep = run.o.checkpoint_hist;
  write_checkpoint(run.last_path, *run.net, *run.adam, run.o, run.progress);
  char name[64];
  std::snprintf(name, sizeof name, "epoch_%03lld.safetensors", static_cast<long long>(epoch));
  if (keep != 0) link_to_last(run, name);
  if (improved) link_to_last(run, "best.safetensors");
  if (keep < 0) return;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(run.checkpoint_dir, ec)) {
    const int64_t n = epoch_checkpoint_number(entry.path().filename().string());
    if (n >= 0 && n <= epoch - keep) fs::remove(entry.path(), ec);
  }
}

enum class EpochEnd { next, early_stop, nonfinite, interrupted };


// Data parallelism without --sync-bn: each process's batch-norm running statistics saw its own share of the
// batches; their mean over processes makes every process's model the same (the parameters already are:
// the same all-reduced gradients, the same update). Then a check that they are: a hash of every state
// tensor's bytes on every process, compared with rank 0's; a difference is an error naming the process.
void agree_on_model(Run& run, int64_t epoch) {
  engine::Distributed& world = *run.world;
  if (!world.distributed()) return;
  std::set<std::string> parameters;
  for (const auto& [name, t] : run.net->named_parameters()) parameters.insert(name);
  if (!run.o.sync_bn) {
    const float inverse = 1.0f / static_cast<float>(world.size());
    for (const auto& [name, t] : run.net->state()) {
      if (parameters.count(name)) continue;
      const Tensor host = t.to(engine::Device::cpu()).contiguous().clone();
      world.allreduce_sum(host.data(), host.numel());
      for (int64_t i = 0; i < host.numel(); ++i) host.data()[i] *= inverse;
      t.copy_from(host);
    }
  }
  uint64_t hash = 1469598103934665603ull;  // FNV-1a over the bytes of every state tensor, in order
  for (const auto& [name, t] : run.net->state()) {
    const Tensor host = t.to(engine::Device::cpu()).contiguous();
    const auto* bytes = reinterpret_cast<const unsigned char*>(host.data());
    for (size_t i = 0; i < static_cast<size_t>(host.numel()) * sizeof(float); ++i) hash = (hash ^ bytes[i]) * 1099511628211ull;
  }
  // Two 32-bit halves: exact in a double.
  const std::vector<double> all = world.allgather({static_cast<double>(hash >> 32), static_cast<double>(hash & 0xffffffffu)});
  for (int r = 1; r < world.size(); ++r)
    ENGINE_CHECK(all[2 * static_cast<size_t>(r)] == all[0] && all[2 * static_cast<size_t>(r) + 1] == all[1])
        << "data parallelism: the model of rank " << r << " differs from rank 0's after epoch " << epoch + 1
        << " (the processes diverged)";
  message("epoch %lld: the %d processes hold the same model, bit for bit (%s)\n", static_cast<long long>(epoch + 1),
          world.size(), run.o.sync_bn ? "--sync-bn" : "batch-norm statistics averaged");
  if (run.buckets)
    message("epoch %lld: gradients summed in %lld bucket(s) of --bucket-mb %s; in the last step %lld started "
            "during backward; after backward %.1f ms a step on the host (the mean of %lld)\n",
            static_cast<long long>(epoch + 1), static_cast<long long>(run.buckets->bucket_count()),
            g9(run.o.bucket_mb).c_str(), static_cast<long long>(run.buckets->started_during_backward()),
            1e3 * run.buckets->finish_seconds() / static_cast<double>(std::max<int64_t>(1, run.buckets->backwards())),
            static_cast<long long>(run.buckets->backwards()));
}

// Stage 3, one epoch: the train pass, the validation pass, the summary row, the checkpoints, summary.csv
// and the curves, and the early-stopping decision.
EpochEnd run_epoch(Run& run, int64_t epoch) {
  const TrainOptions& o = run.o;
  char label[64];
  std::snprintf(label, sizeof label, "epoch %lld/%lld", static_cast<long long>(epoch + 1), static_cast<long long>(o.epochs));
  Progress progress(std::string(label) + " train", run.train_loader->batches_per_epoch(), o.quiet, &run.plan, "train");
  const double t0 = now_seconds();
  const TrainPass pass = naming_the_bad_fraction_flag(*run.train_loader, [&] { return train_pass(run, epoch, progress); });
  report_skipped(*run.train_loader, "train", run.train_bad_reported);
  if (pass.nonfinite) return EpochEnd::nonfinite;
  if (pass.interrupted) return EpochEnd::interrupted;
  const double train_seconds = now_seconds() - t0;
  agree_on_model(run, epoch);
  const EvaluationResult val = gathered_evaluation(run, naming_the_bad_fraction_flag(*run.val_loader, [&] {
    return predict_with_loader(*run.net, *run.val_loader, run.device, std::string(label) + " val", o.quiet,
                               {Tta::none, &run.plan, "val", parse_precision(o.precision)});
  }), run.split.validation);
  report_skipped(*run.val_loader, "validation", run.val_bad_reported);

  EpochRow row;
  row.epoch = epoch + 1;
  row.train_loss = pass.seen ? pass.loss_sum / static_cast<double>(pass.seen) : NAN;
  row.train_acc = pass.seen ? static_cast<double>(pass.correct) / static_cast<double>(pass.seen) : NAN;
  row.val_loss = val.overall.image.loss;
  row.val_acc = val.overall.image.accuracy;
  row.val_auroc = val.overall.image.auroc;
  row.val_kappa = val.overall.study.kappa;
  row.seconds = now_seconds() - t0;
  row.images_per_s = train_seconds > 0 ? static_cast<double>(pass.seen) / train_seconds : 0;
  row.lr = run.adam->learning_rate();
  run.result.rows.push_back(row);
  char summary[200];
  std::snprintf(summary, sizeof summary, "loss %.4f acc %.3f | val loss %.4f acc %.3f | %.1f s, %.1f img/s",
                row.train_loss, row.train_acc, row.val_loss, row.val_acc, row.seconds, row.images_per_s);
  progress.finish(summary);

  CheckpointProgress& p = run.progress;
  const double monitored = o.best_metric == "val_loss" ? row.val_loss
                           : o.best_metric == "val_auroc" ? row.val_auroc : row.val_kappa;
  const bool improved = metric_improved(o.best_metric, monitored, p.best_value);
  p.epoch = epoch + 1;
  if (improved) {
    p.best_value = monitored;
    p.bad_epochs = 0;
  } else {
    ++p.bad_epochs;
  }
  const PlateauState plateau =
      plateau_after_epoch(run.schedule, {p.lr_reductions, p.plateau_wait}, improved);
  if (plateau.reductions > p.lr_reductions && epoch + 1 < o.epochs)
    message("%s has not improved for %lld epoch(s): learning rate %s from epoch %lld\n", o.best_metric.c_str(),
            static_cast<long long>(o.patience_epochs), g9(epoch_lr(run.schedule, epoch + 1, plateau)).c_str(),
            static_cast<long long>(epoch + 2));
  p.lr_reductions = plateau.reductions;
  p.plateau_wait = plateau.wait;
  if (run.writer()) {  // rank 0 alone writes the run folder
    write_epoch_checkpoints(run, improved);
    data::write_file_atomic(o.out + "/summary.csv", summary_csv(run.result.rows));
    write_run_curves(o.out, run.result.rows, o.arch + " training curves", run.start_wall_time);
  }
  if (o.early_stopping > 0 && p.bad_epochs >= o.early_stopping && epoch + 1 < o.epochs) {
    message("early stopping: no better %s in %lld epochs (best %.4f)\n", o.best_metric.c_str(),
            static_cast<long long>(p.bad_epochs), p.best_value);
    return EpochEnd::early_stop;
  }
  return EpochEnd::next;
}

// Stage 4, the test split: the chosen weights (last or best) evaluated and test/ written.
void run_test(Run& run) {
  const TrainOptions& o = run.o;
  const std::string best = run.checkpoint_dir + "best.safetensors";
  if (o.test_checkpoint == "best" && is_file(best)) run.net->load_state(read_checkpoint(best).model);
  TrainResult& result = run.result;
  const auto loader = evaluation_loader(run.root, evaluation_share(run, run.split.test), run.eval_loader_options, "test");
  result.test = gathered_evaluation(run, naming_the_bad_fraction_flag(
      *loader, [&] { return predict_with_loader(*run.net, *loader, run.device, "test", o.quiet,
                                                {Tta::none, &run.plan, "test", parse_precision(o.precision)}); }),
      run.split.test);
  size_t reported = 0;
  report_skipped(*loader, "test", reported);
  result.tested = true;
  if (!run.writer()) return;
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
  message("test: image accuracy %.4f, AUROC %s; study accuracy %.4f, kappa %s; %.2f s (%.1f images/s)\n",
          result.test.overall.image.accuracy, fmt(result.test.overall.image.auroc).c_str(),
          result.test.overall.study.accuracy, fmt(result.test.overall.study.kappa).c_str(), result.test.seconds,
          result.test.images_per_second);
  message("wrote %s/{summary.csv,curves.svg,curves.png,tensorboard/,checkpoints/,test/report.md,train.log}\n",
          o.out.c_str());
}

}  // namespace

namespace {
TrainResult run_logged(const TrainOptions& options, RunLog& log) {
  Run run;
  run.o = options;
  run.start_wall_time = wall_clock_seconds();
  setup(run);                          // 1. options, data, split, net, weights: before --out is touched
  // --sync-bn: every training batch norm of this run takes its statistics over the processes.
  std::unique_ptr<engine::BatchNormSyncScope> sync_bn;
  if (run.o.sync_bn && run.world->distributed()) {
    sync_bn = std::make_unique<engine::BatchNormSyncScope>(
        [world = run.world](double* sums, int64_t n, engine::Device where) { world->allreduce_sum(sums, n, where); });
    run.sync_bn = sync_bn.get();
  }
  // One writer per run folder, from here to the end (the lock creates --out when it is new): rank 0 of a
  // data-parallel run; the other processes only read the folder (the checkpoint they resume from).
  std::error_code ec;
  const bool out_existed = fs::exists(run.o.out, ec);
  std::unique_ptr<RunFolderLock> lock;
  if (!run.writer()) {
    if (run.o.resume) resume(run);
  } else try {
    lock = std::make_unique<RunFolderLock>(run.o.out);
    // Another run may have started here between the checks of setup and the lock.
    ENGINE_USER_CHECK(run.o.resume || !is_file(run.last_path))
        << "--out " << run.o.out << " already holds a run (checkpoints/last.safetensors); pass --resume to continue "
        << "it, or choose another --out";
    log.open(run.o.out + "/train.log");
    const std::vector<std::string> stale = remove_stale_temporaries(*lock);
    if (!stale.empty())
      message("removed %zu temporary file(s) left by an interrupted write in %s (e.g. %s)\n", stale.size(),
              run.o.out.c_str(), stale.front().c_str());
    if (run.o.resume) resume(run);     // 2. the state of checkpoints/last.safetensors
    open_output(run);                  //    args.json, split/, checkpoints/
  } catch (...) {
    if (!out_existed) fs::remove_all(run.o.out, ec);  // a failed start leaves nothing behind
    throw;
  }
  {
    // The run's ETA: the epochs left (train, validation: forward only, about a third of a step) and the test.
    const int64_t epochs_left = run.o.epochs - run.start_epoch, eval_batch = run.eval_loader_options.batch_size;
    run.plan.add("train", epochs_left * run.train_loader->batches_per_epoch());
    run.plan.add("val", epochs_left * run.val_loader->batches_per_epoch(), 1.0 / 3);
    run.plan.add("test", (static_cast<int64_t>(run.split.test.size()) + eval_batch - 1) / eval_batch, 1.0 / 3);
    const InterruptGuard interrupt;  // SIGINT / SIGTERM: stop between batches, last intact
    run.interrupt = &interrupt;
    for (int64_t epoch = run.start_epoch; epoch < run.o.epochs; ++epoch) {
      const EpochEnd end = run_epoch(run, epoch);  // 3. train, validate, checkpoints, curves
      if (end == EpochEnd::next) continue;
      run.result.nonfinite = end == EpochEnd::nonfinite;
      run.result.early_stopped = end == EpochEnd::early_stop;
      // Another process's signal stops this one too (the exit status of SIGTERM).
      if (end == EpochEnd::interrupted)
        run.result.interrupted_exit_status = interrupt.exit_status() != 0 ? interrupt.exit_status() : 128 + SIGTERM;
      break;
    }
    run.interrupt = nullptr;
  }
  if (run.result.interrupted_exit_status != 0) return run.result;
  if (run.result.nonfinite) {
    if (!run.result.rows.empty() && run.writer()) data::write_file_atomic(run.o.out + "/summary.csv", summary_csv(run.result.rows));
    return run.result;
  }
  run_test(run);                       // 4. the test split
  return run.result;
}
}  // namespace

TrainResult run_training(const TrainOptions& options) {
  RunLog log;  // the messages from here on, kept until --out exists, then appended to RUN/train.log
  try {
    return run_logged(options, log);
  } catch (const std::exception& e) {
    log.write(std::string("error: ") + e.what() + "\n");  // the caller prints it on stderr
    throw;
  }
}

namespace {
// Where this process's errors go: stderr, or for ranks other than 0 of a data-parallel run (whose messages
// would repeat rank 0's), the stderr they had before it was silenced.
int error_fd = 2;

// Rank 0 speaks for the run: the other processes' messages and progress go nowhere, their errors still
// reach the terminal (error_fd).
void silence_other_ranks(const engine::Distributed& world) {
  if (world.is_root() || std::getenv("MURA_ENGINE_ALL_RANKS_LOG")) return;
  std::fflush(stderr);
  error_fd = ::dup(2);
  const int null_fd = ::open("/dev/null", O_WRONLY);
  if (error_fd < 0 || null_fd < 0) {
    error_fd = 2;
    return;
  }
  ::dup2(null_fd, 2);
  ::close(null_fd);
}

void print_error(const std::string& text) {
  std::fflush(stderr);
  const std::string line = text + "\n";
  if (::write(error_fd, line.data(), line.size()) < 0) std::perror("write");
}

// A failure of one process of a data-parallel run ends them all (MPI_Abort), after its message, which
// names the process; alone, the exit status is returned as before.
int failed(const engine::Distributed& world, const std::string& program, const std::string& what, int status) {
  if (!world.distributed()) {
    std::fprintf(stderr, "%s: error: %s\n", program.c_str(), what.c_str());
    return status;
  }
  print_error(program + ": " + world.name() + ": error: " + what + "\n" + program +
              ": ending every process of the job (MPI_Abort); a checkpoints/last.safetensors, if the run has one, "
              "is its last finished epoch's, and --resume continues from it on any number of processes");
  engine::Distributed::world().abort(status);
}
}  // namespace

int train_main(int argc, char** argv, const std::string& program, const std::string& description,
               const std::string& default_arch, const std::vector<std::string>& archs) {
  engine::Distributed& world = engine::Distributed::world();  // MPI_Init when launched by mpirun / srun
  silence_other_ranks(world);
  TrainOptions options;
  options.arch = default_arch;
  std::string config;
  FlagParser flags(program, description);
  add_train_flags(flags, options, archs);
  flags.add("--config", &config, "start a new run with the settings of a saved args.json (e.g. another run's); "
                                 "flags given on the command line override them; --out must be new", "FILE");
  // The older switch --epoch-checkpoints[=true|false] (every epoch kept, or none) spelled the new way.
  std::vector<std::string> args(argv + 1, argv + argc);
  for (std::string& arg : args) {
    if (arg == "--epoch-checkpoints" || arg == "--epoch-checkpoints=true") arg = "--checkpoint-hist=-1";
    else if (arg == "--epoch-checkpoints=false") arg = "--checkpoint-hist=0";
  }
  try {
    if (!flags.parse(args)) return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  try {
    resolve_precision_flag(flags, options.precision, options.amp);  // --amp: --precision bf16
    const auto given = [&](const std::string& flag) { return precision_aware_given(flags, flag); };
    // --recipe: its settings for the flags not given. They count as given against --config's file below;
    // on --resume they are not (the run's own settings stand, and the recipe must be the run's).
    if (flags.given("--recipe")) options = apply_recipe(options, default_arch, archs, given);
    const Recipe recipe = recipe_settings(options.recipe, default_arch, archs);
    const auto given_or_recipe = [&](const std::string& flag) {
      return given(flag) || (flags.given("--recipe") &&
                             std::any_of(recipe.keys.begin(), recipe.keys.end(),
                                         [&](const std::string& key) { return option_flag(key) == flag; }));
    };
    // --resume: the run's own settings for every flag not given; a given one that may not change must match.
    make_paths_absolute(options);
    // `--resume RUN_DIR`: --resume is a switch, so the folder after it arrives as the positional argument.
    const std::vector<std::string>& positional = flags.positional();
    ENGINE_USER_CHECK(positional.empty() || options.resume)
        << "unexpected argument '" << positional.front() << "': a run folder is taken only with --resume "
        << "(--resume RUN_DIR); a new run's folder is --out DIR";
    ENGINE_USER_CHECK(positional.size() <= 1) << "--resume takes one run folder, got " << positional.size();
    if (!positional.empty()) {
      ENGINE_USER_CHECK(!flags.given("--out") || absolute_path(options.out) == absolute_path(positional.front()))
          << "--resume " << positional.front() << " and --out " << options.out << " name different folders; pass one";
      options.out = positional.front();
    }
    if (!config.empty()) {
      ENGINE_USER_CHECK(!options.resume) << "--config starts a new run and --resume continues one; pass one of them "
                                            "(a resumed run's settings are its own args.json)";
      options = configured_options(options, read_train_options(config), given_or_recipe);
    }
    if (options.resume) {
      if (options.out.empty()) options.out = default_out(options);
      const std::string args = options.out + "/args.json";
      if (is_file(args))
        options = resumed_options(options, read_train_options(args), given);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program.c_str(), e.what());
    return 2;
  }
  if (std::find(archs.begin(), archs.end(), options.arch) == archs.end()) {
    std::fprintf(stderr, "%s: --arch %s is not one of this program's architectures (see --help)\n", program.c_str(),
                 options.arch.c_str());
    return 2;
  }
  try {
    const TrainResult r = run_training(options);
    if (r.interrupted_exit_status != 0) return r.interrupted_exit_status;
    return r.nonfinite ? 3 : 0;
  } catch (const std::exception& e) {
    return failed(world, program, e.what(), 1);
  }
}

}  // namespace experiment
