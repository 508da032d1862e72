// The Net base class, heads, flavours, the differentiable copy into a block buffer, the forward
// observer and its two uses: the summary and the stage activations (see net.h).
#include "nets/net.h"

#include <tuple>

namespace nets {

using namespace engine;

namespace {

// The observer of the forward pass running on this thread, or null.
thread_local ForwardObserver* active_observer = nullptr;

// Net::summary's observer: a row per unit.
class SummaryRows : public ForwardObserver {
 public:
  void on_unit_output(const std::string& path, const std::string& kind, const Tensor& output,
                      const std::vector<const Module*>& state, int64_t macs) override {
    SummaryRow row;
    row.name = path;
    row.kind = kind;
    row.output = output.shape();
    std::tie(row.parameters, row.buffers) = count_state(state);
    row.macs = macs;
    rows.push_back(std::move(row));
  }
  std::vector<SummaryRow> rows;
};

// Net::forward_with_stages's observer: keeps the outputs of the units that end a stage.
class StageOutputs : public ForwardObserver {
 public:
  StageOutputs(const std::vector<std::pair<std::string, std::string>>& stage_units, StageMap& stages)
      : stages_(stages) {
    for (const auto& [stage, path] : stage_units) stage_of_unit_[path] = stage;
  }
  void on_unit_output(const std::string& path, const std::string&, const Tensor& output,
                      const std::vector<const Module*>&, int64_t) override {
    const auto it = stage_of_unit_.find(path);
    if (it != stage_of_unit_.end()) stages_[it->second] = output;
  }

 private:
  std::map<std::string, std::string> stage_of_unit_;  // unit path -> stage name
  StageMap& stages_;
};

// Sets the path of every Layer below `module` from the registered names.
void assign_paths(const Module& module, const std::string& prefix) {
  for (const auto& [name, child] : module.named_children()) {
    const std::string path = prefix.empty() ? name : prefix + "." + name;
    if (auto* layer = dynamic_cast<Layer*>(child.get())) layer->set_path(path);
    assign_paths(*child, path);
  }
}

// Calls fold_batch_norms(on) on every Layer below `module`.
void fold_layers(const Module& module, bool on) {
  for (const auto& [name, child] : module.named_children()) {
    if (auto* layer = dynamic_cast<Layer*>(child.get())) layer->fold_batch_norms(on);
    fold_layers(*child, on);
  }
}

}  // namespace

ObserveForward::ObserveForward(ForwardObserver& observer) : previous_(active_observer) {
  active_observer = &observer;
}

ObserveForward::~ObserveForward() { active_observer = previous_; }

Tensor unit_output(const std::string& path, const std::string& kind, const Tensor& output,
                          const std::vector<const Module*>& state, int64_t macs) {
  if (active_observer) active_observer->on_unit_output(path, kind, output, state, macs);
  return output;
}

Tensor Layer::output(const std::string& kind, const Tensor& y, const std::vector<const Module*>& state,
                            int64_t macs) const {
  return unit_output(path_, kind, y, state, macs);
}

Tensor Layer::part_output(const std::string& part, const std::string& kind, const Tensor& y,
                                 const std::vector<const Module*>& state, int64_t macs) const {
  if (!active_observer) return y;  // spares building the part's path
  return unit_output(path_ + "." + part, kind, y, state, macs);
}

Head parse_head(const std::string& name) {
  if (name == "flatten") return Head::flatten;
  if (name == "gap") return Head::gap;
  if (name == "imagenet") return Head::imagenet;
  ENGINE_USER_FAIL() << "unknown head '" << name << "': use flatten (Flatten + Dense(1), the study's), gap "
                     << "(global average pool + Dense(1)) or imagenet (global average pool + Dense(1000))";
}

std::string head_name(Head head) {
  switch (head) {
    case Head::flatten: return "flatten";
    case Head::gap: return "gap";
    case Head::imagenet: return "imagenet";
  }
  return "?";
}

Flavor parse_flavor(const std::string& name) {
  if (name == "keras") return Flavor::keras;
  if (name == "torch") return Flavor::torch;
  ENGINE_USER_FAIL() << "unknown batch-norm flavor '" << name
                     << "': use keras (momentum 0.01, biased variance) or torch (momentum 0.1, unbiased)";
}

std::string flavor_name(Flavor flavor) { return flavor == Flavor::keras ? "keras" : "torch"; }

int64_t conv_macs(const Conv2d& conv, const Tensor& output) {
  const Conv2dSpec& s = conv.spec();
  return output.size(1) * output.size(2) * s.out_channels * s.kernel_h * s.kernel_w * s.in_channels;
}

void ConvBatchNormFold::set(bool on, const Conv2d& conv, const BatchNorm& norm) {
  folded_.reset();
  if (on) folded_ = fold_batch_norm(conv, norm);
}

const FoldedConv2d* ConvBatchNormFold::active(const Module& unit, const Tensor& x) const {
  if (!folded_ || unit.is_training()) return nullptr;
  ENGINE_USER_CHECK(folded_->weight.device() == x.device())
      << "the batch norms were folded on " << folded_->weight.device().str() << " but the input is on "
      << x.device().str() << ": call fold_batch_norms() again after moving the net";
  return &*folded_;
}

std::pair<int64_t, int64_t> count_state(const std::vector<const Module*>& modules) {
  int64_t parameters = 0, buffers = 0;
  for (const Module* m : modules) {
    if (!m) continue;
    for (const auto& [name, t] : m->named_parameters()) parameters += t.numel();
    for (const auto& [name, t] : m->named_buffers()) buffers += t.numel();
  }
  return {parameters, buffers};
}

Tensor copy_into(const Tensor& x, const Tensor& out) {
  ENGINE_CHECK(x.shape() == out.shape())
      << "copy_into: source " << x.str() << " and destination " << out.str() << " differ in shape";
  ENGINE_CHECK(!out.grad_fn()) << "copy_into: the destination already has autograd history";
  out.copy_from(x);
  // d out / d x = identity: the destination's gradient (a slice of the block's gradient) goes to x.
  record(out, "copy_into", {x}, [](const Tensor& dy) { return std::vector<Tensor>{dy}; });
  return out;
}

// ---- Net ------------------------------------------------------------------------------------------

Net::Net(std::string arch, Head head, Flavor flavor, int64_t input_size)
    : arch_(std::move(arch)), head_(head), flavor_(flavor), input_size_(input_size) {}

void Net::finish(const std::string& module_name, int64_t feature_channels, Generator& gen) {
  feature_channels_ = feature_channels;
  head_module_ = module_name;
  int64_t in_features = feature_channels;
  if (head_ == Head::flatten) {
    const auto [h, w] = feature_grid(input_size_, input_size_);
    in_features = h * w * feature_channels;
  }
  classifier_ = register_module(module_name, std::make_shared<Linear>(in_features, num_classes(), true, gen));
  assign_paths(*this, "");
}

void Net::check_images(const Tensor& images) const {
  ENGINE_CHECK(images.defined() && images.ndim() == 4 && images.size(3) == 3)
      << arch_ << ": images must be NHWC [N, H, W, 3], got " << (images.defined() ? images.str() : "none");
  ENGINE_USER_CHECK(images.size(1) >= min_input_size() && images.size(2) >= min_input_size())
      << arch_ << ": input " << images.size(1) << "x" << images.size(2) << " is too small; this net needs at least "
      << min_input_size() << "x" << min_input_size();
  if (head_ == Head::flatten) {
    const auto expected = feature_grid(input_size_, input_size_);
    const auto got = feature_grid(images.size(1), images.size(2));
    ENGINE_USER_CHECK(got == expected)
        << arch_ << ": the flatten head was built for " << input_size_ << "x" << input_size_ << " inputs ("
        << expected.first << "x" << expected.second << "x" << feature_channels_ << " features), but a "
        << images.size(1) << "x" << images.size(2) << " input gives a " << got.first << "x" << got.second
        << " feature map; resize the images or build the net for this size (or use the gap head)";
  }
}

Tensor Net::run_head(const Tensor& features) const {
  Tensor pooled = head_ == Head::flatten ? flatten(features) : global_avg_pool(features);
  const Tensor logits = classifier_->forward(pooled);
  const std::string kind = head_ == Head::flatten ? "flatten + linear" : "global avg pool + linear";
  return unit_output(head_module_, kind, logits, {classifier_.get()}, classifier_->weight.numel());
}

Tensor Net::forward(const Tensor& images) const {
  check_images(images);
  return run_head(run_backbone(images));
}

Tensor Net::features(const Tensor& images) const {
  check_images(images);
  return run_backbone(images);
}

Tensor Net::forward_with_stages(const Tensor& images, StageMap& stages) const {
  check_images(images);
  StageOutputs observer(stage_units(), stages);
  ObserveForward observing(observer);
  Tensor f = run_backbone(images);
  stages["features"] = f;
  return run_head(f);
}

void Net::fold_batch_norms(bool on) {
  ENGINE_USER_CHECK(!on || !is_training())
      << arch_ << ": batch norms fold only for inference; call eval() before fold_batch_norms()";
  NoGradGuard no_grad;
  fold_layers(*this, on);
  batch_norms_folded_ = on;
}

void Net::train(bool on) {
  if (on && batch_norms_folded_) fold_batch_norms(false);
  Module::train(on);
}

std::vector<std::string> Net::stage_names() const {
  std::vector<std::string> names;
  for (const auto& [stage, path] : stage_units()) names.push_back(stage);
  names.push_back("features");
  return names;
}

std::vector<SummaryRow> Net::summary(int64_t input_size) {
  ENGINE_USER_CHECK(input_size >= min_input_size())
      << arch_ << ": summary input size " << input_size << " is below the minimum " << min_input_size();
  const bool was_training = is_training();
  eval();
  SummaryRows observer;
  try {
    NoGradGuard no_grad;
    ObserveForward observing(observer);
    const Device device = state().empty() ? Device::cpu() : state().front().second.device();
    forward(Tensor::zeros({1, input_size, input_size, 3}, device));
  } catch (...) {
    train(was_training);
    throw;
  }
  train(was_training);
  return std::move(observer.rows);
}

}  // namespace nets
