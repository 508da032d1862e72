// The study's comparison (see compare.h).
#include "experiment/compare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>

#include "data/io_util.h"
#include "engine/check.h"
#include "experiment/metrics.h"
#include "experiment/svg.h"

namespace experiment {

namespace {

std::string size_label(int64_t n) { return n == 0 ? "all" : std::to_string(n); }

// A table of text cells, rendered both as Markdown and as HTML (so the two reports cannot disagree).
struct Table {
  std::string title;  // a heading above it ("" = none)
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::vector<std::string>> links;  // per cell: an href for HTML ("" = plain text); may be empty
};

std::string markdown_table(const Table& t) {
  std::ostringstream o;
  if (!t.title.empty()) o << "\n### " << t.title << "\n\n";
  o << "|";
  for (const std::string& h : t.header) o << " " << h << " |";
  o << "\n|";
  for (size_t i = 0; i < t.header.size(); ++i) o << (i == 0 ? "---|" : "---:|");
  o << "\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    o << "|";
    for (size_t c = 0; c < t.rows[r].size(); ++c) {
      const std::string href = r < t.links.size() && c < t.links[r].size() ? t.links[r][c] : "";
      o << " " << (href.empty() ? t.rows[r][c] : "[" + t.rows[r][c] + "](" + href + ")") << " |";
    }
    o << "\n";
  }
  return o.str();
}

std::string html_table(const Table& t) {
  std::ostringstream o;
  if (!t.title.empty()) o << "<h3>" << xml_escape(t.title) << "</h3>\n";
  o << "<table>\n<tr>";
  for (const std::string& h : t.header) o << "<th>" << xml_escape(h) << "</th>";
  o << "</tr>\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    o << "<tr>";
    for (size_t c = 0; c < t.rows[r].size(); ++c) {
      const std::string href = r < t.links.size() && c < t.links[r].size() ? t.links[r][c] : "";
      const std::string text = xml_escape(t.rows[r][c]);
      o << "<td>" << (href.empty() ? text : "<a href=\"" + xml_escape(href) + "\">" + text + "</a>") << "</td>";
    }
    o << "</tr>\n";
  }
  o << "</table>\n";
  return o.str();
}

// What stands in a cell instead of a test figure: "" when the run was tested, else why there is none.
std::string missing_text(const CompareCell* c) {
  if (!c) return "-";
  if (c->result.nonfinite) return "stopped (non-finite loss)";
  return c->result.tested ? "" : "-";
}

// The tables of one protocol: the study's two, ours beside them, and localisation if measured.
std::vector<Table> protocol_tables(const Comparison& cmp, const std::string& protocol) {
  const CompareOptions& o = cmp.options;
  std::vector<Table> tables;
  auto study_table = [&](const std::string& title, const std::function<std::string(const CompareCell&)>& value) {
    Table t{title, {"images"}, {}, {}};
    for (const std::string& a : o.archs) t.header.push_back(pretty_arch(a));
    for (int64_t n : o.sizes) {
      std::vector<std::string> row = {size_label(n)};
      for (const std::string& a : o.archs) {
        const CompareCell* c = cmp.find(a, protocol, n);
        const std::string missing = missing_text(c);
        row.push_back(missing.empty() ? value(*c) : missing);
      }
      t.rows.push_back(row);
    }
    tables.push_back(t);
  };
  study_table("The study's table: test time (s)", [](const CompareCell& c) { return fmt(c.result.test.seconds, 2); });
  study_table("The study's table: test accuracy (image level)",
              [](const CompareCell& c) { return fmt(c.result.test.overall.image.accuracy); });

  Table beside{"Beside them",
               {"images", "net", "train / val / test", "epochs", "train (s)", "train img/s", "test img/s",
                "image accuracy", "image AUROC", "study accuracy", "study kappa", "study AUROC", "report"},
               {},
               {}};
  Table where{"Where is the abnormality (Grad-CAM on the test split; docs/cam.md)",
              {"images", "net", "images with a box", "pointing game", "within half a cell",
               "random map (half cell)", "centre map (half cell)", "mean IoU", "random map IoU", "gallery"},
              {},
              {}};
  for (int64_t n : o.sizes)
    for (const std::string& a : o.archs) {
      const CompareCell* c = cmp.find(a, protocol, n);
      if (!c) continue;
      const TrainResult& r = c->result;
      std::vector<std::string> row = {size_label(n), pretty_arch(a),
                                      std::to_string(r.train_images) + " / " + std::to_string(r.validation_images) +
                                          " / " + std::to_string(r.test_images),
                                      std::to_string(r.rows.size()), fmt(c->train_seconds, 1),
                                      r.rows.empty() ? "-" : fmt(r.rows.back().images_per_s, 1)};
      const auto& t = r.test;
      const std::string missing = missing_text(c);
      auto figure = [&](double value, int digits) { return missing.empty() ? fmt(value, digits) : missing; };
      row.insert(row.end(), {figure(t.images_per_second, 1), figure(t.overall.image.accuracy, 4),
                             figure(t.overall.image.auroc, 4), figure(t.overall.study.accuracy, 4),
                             figure(t.overall.study.kappa, 4), figure(t.overall.study.auroc, 4)});
      row.push_back(r.tested ? "report.md" : "-");
      beside.rows.push_back(row);
      std::vector<std::string> links(row.size());
      if (r.tested) links.back() = c->run_dir + "/test/report.md";
      beside.links.push_back(links);

      const RunLocalisation& l = c->localisation;
      if (l.measured) {
        where.rows.push_back({size_label(n), pretty_arch(a), std::to_string(l.images), fmt(l.pointing_game, 3),
                              fmt(l.pointing_tolerant, 3), fmt(l.random_pointing_tolerant, 3),
                              fmt(l.centre_pointing_tolerant, 3), fmt(l.mean_iou, 3), fmt(l.random_iou, 3),
                              l.gallery.empty() ? "-" : "gallery"});
      } else if (!l.note.empty() || !l.gallery.empty()) {
        where.rows.push_back({size_label(n), pretty_arch(a), l.note.empty() ? "-" : l.note, "-", "-", "-", "-", "-", "-",
                              l.gallery.empty() ? "-" : "gallery"});
      } else {
        continue;
      }
      std::vector<std::string> wl(where.rows.back().size());
      wl.back() = l.gallery;
      where.links.push_back(wl);
    }
  tables.push_back(beside);
  if (!where.rows.empty()) tables.push_back(where);
  return tables;
}

std::string preamble(const Comparison& cmp) {
  const TrainOptions& b = cmp.options.base;
  std::ostringstream o;
  o << (b.data.empty() ? "Data: the synthetic MURA (generated; not radiographs of patients). " : "Data: " + b.data + ". ")
    << "Epochs " << b.epochs << ", batch " << b.batch_size << ", Adam lr " << b.lr << ", input " << b.input_size
    << "x" << b.input_size << ", head " << b.head << ", BN " << b.flavor << ", seed " << b.seed << ".";
  std::set<std::string> random_init;
  for (const std::string& a : cmp.options.archs) {
    auto it = cmp.options.weights.find(a);
    if (it == cmp.options.weights.end() || it->second.empty()) random_init.insert(pretty_arch(a));
  }
  if (!random_init.empty()) {
    o << " Random initialisation (no ImageNet weights) for ";
    for (auto it = random_init.begin(); it != random_init.end(); ++it)
      o << (it == random_init.begin() ? "" : ", ") << *it;
    o << ".";
  }
  o << "\n\nTime = the test split's wall time, decoding included (the study's \"time\" column). Accuracy and AUROC "
       "at image level; kappa at study level (a study's probability is the mean of its images'; abnormal when > "
       "0.5), as MURA defines it. \"all\" is the whole data set, which the study could not train on.\n";
  return o.str();
}

// "The comparison on MURA: DenseNet-201 against Inception-ResNet-v2".
std::string title(const Comparison& cmp) {
  std::string t = "The comparison on MURA: ";
  for (size_t i = 0; i < cmp.options.archs.size(); ++i)
    t += (i == 0 ? "" : i + 1 == cmp.options.archs.size() ? " against " : ", ") + pretty_arch(cmp.options.archs[i]);
  return t;
}

// x of a cell in the figures: its number of images (train + validation + test).
double cell_images(const CompareCell& c) {
  return static_cast<double>(c.result.train_images + c.result.validation_images + c.result.test_images);
}

}  // namespace

std::string pretty_arch(const std::string& arch) {
  if (arch == "densenet201") return "DenseNet-201";
  if (arch == "densenet169") return "DenseNet-169";
  if (arch == "densenet121") return "DenseNet-121";
  if (arch == "inception_resnet_v2") return "Inception-ResNet-v2";
  return arch;
}

const CompareCell* Comparison::find(const std::string& arch, const std::string& protocol, int64_t images) const {
  for (const CompareCell& c : cells)
    if (c.arch == arch && c.protocol == protocol && c.images == images) return &c;
  return nullptr;
}

std::string comparison_markdown(const Comparison& cmp) {
  std::ostringstream md;
  md << "# " << title(cmp) << "\n\n" << preamble(cmp);
  md << "\n## What these numbers can show\n\n" << comparison_scope(cmp);
  for (const std::string& protocol : cmp.options.protocols) {
    md << "\n## Protocol " << protocol << "\n";
    for (const Table& t : protocol_tables(cmp, protocol)) md << markdown_table(t);
  }
  return md.str();
}

std::string comparison_html(const Comparison& cmp) {
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>MURA comparison</title><style>"
       "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:0.5em 0 1.5em}"
       "td,th{border:1px solid #aaa;padding:3px 8px;text-align:right}th{background:#f0f0f0}"
       "td:first-child{text-align:left}svg{margin:4px;vertical-align:top}</style></head><body>\n"
    << "<h1>" << xml_escape(title(cmp)) << "</h1>\n";
  std::istringstream pre(preamble(cmp));
  for (std::string line; std::getline(pre, line);)
    if (!line.empty()) h << "<p>" << xml_escape(line) << "</p>\n";
  h << "<h2 id=\"scope\">What these numbers can show</h2>\n";
  std::istringstream scope(comparison_scope(cmp));
  for (std::string line; std::getline(scope, line);)
    if (!line.empty()) h << "<p>" << xml_escape(line) << "</p>\n";
  for (const std::string& protocol : cmp.options.protocols) {
    h << "<h2 id=\"protocol-" << xml_escape(protocol) << "\">Protocol " << xml_escape(protocol) << "</h2>\n";
    for (const Table& t : protocol_tables(cmp, protocol)) h << html_table(t);

    // Figures: accuracy, kappa and test time against the number of images.
    auto figure = [&](const std::string& title, const std::function<double(const CompareCell&)>& y) {
      Chart chart{title + " vs images (" + protocol + ")", "images", {}, true};
      if (title != "test time (s)") {  // accuracy within [0, 1], kappa within [-1, 1] (svg.h's y limits)
        chart.y_floor = title == "study kappa" ? -1 : 0;
        chart.y_ceiling = 1;
      }
      for (const std::string& a : cmp.options.archs) {
        Series s{pretty_arch(a), {}, {}};
        for (const CompareCell& c : cmp.cells)
          if (c.arch == a && c.protocol == protocol && c.result.tested) {
            s.x.push_back(cell_images(c));
            s.y.push_back(y(c));
          }
        chart.series.push_back(s);
      }
      return svg_chart(chart, 420, 280);
    };
    h << "<h3>Figures</h3>\n<div>"
      << figure("test accuracy", [](const CompareCell& c) { return c.result.test.overall.image.accuracy; })
      << figure("study kappa", [](const CompareCell& c) { return c.result.test.overall.study.kappa; })
      << figure("test time (s)", [](const CompareCell& c) { return c.result.test.seconds; }) << "</div>\n";

    h << "<h3>Training curves</h3>\n<div>";
    const std::vector<std::pair<std::string, double EpochRow::*>> curves = {
        {"train loss", &EpochRow::train_loss},     {"val loss", &EpochRow::val_loss},
        {"train accuracy", &EpochRow::train_acc}, {"val accuracy", &EpochRow::val_acc},
        {"epoch time (s)", &EpochRow::seconds}};
    for (const auto& [what, field] : curves) {
      Chart chart{what + " (" + protocol + ")", "epoch", {}, false, /*integer_x=*/true};
      if (what.find("accuracy") != std::string::npos) {  // within [0, 1]
        chart.y_floor = 0;
        chart.y_ceiling = 1;
      }
      for (const CompareCell& c : cmp.cells) {
        if (c.protocol != protocol) continue;
        Series s{pretty_arch(c.arch) + " n=" + size_label(c.images), {}, {}};
        for (const EpochRow& r : c.result.rows) {
          s.x.push_back(static_cast<double>(r.epoch));
          s.y.push_back(r.*field);
        }
        chart.series.push_back(s);
      }
      h << svg_chart(chart, 420, 280);
    }
    h << "</div>\n";
  }
  h << "</body></html>\n";
  return h.str();
}

void write_comparison_report(const Comparison& cmp) {
  data::make_directories(cmp.options.out);
  data::write_file_atomic(cmp.options.out + "/results.md", comparison_markdown(cmp));
  data::write_file_atomic(cmp.options.out + "/results.html", comparison_html(cmp));
}

Comparison run_comparison(const CompareOptions& options) {
  ENGINE_USER_CHECK(!options.sizes.empty()) << "--sizes is empty";
  ENGINE_USER_CHECK(!options.protocols.empty()) << "--protocols is empty";
  ENGINE_USER_CHECK(!options.archs.empty()) << "--archs is empty";
  for (int64_t n : options.sizes) ENGINE_USER_CHECK(n >= 0) << "--sizes: " << n << " is negative (0 = the whole set)";
  for (const std::string& p : options.protocols)
    ENGINE_USER_CHECK(p == "seed" || p == "patient" || p == "official")
        << "--protocols: '" << p << "' is not one of seed, patient, official";
  for (const auto& [arch, file] : options.weights)
    ENGINE_USER_CHECK(file.empty() || std::filesystem::is_regular_file(file))
        << "weights for " << arch << ": " << file << " is not a file (convert ImageNet weights with weights_tools/)";

  Comparison cmp;
  cmp.options = options;
  for (const std::string& protocol : options.protocols)
    for (int64_t n : options.sizes)
      for (const std::string& arch : options.archs) {
        TrainOptions o = options.base;
        o.arch = arch;
        o.protocol = protocol;
        o.images = n;
        auto w = options.weights.find(arch);
        o.weights = w == options.weights.end() ? "" : w->second;
        CompareCell c;
        c.arch = arch;
        c.protocol = protocol;
        c.images = n;
        c.run_dir = "runs/" + protocol + "/" + arch + "-n" + size_label(n);
        o.out = options.out + "/" + c.run_dir;
        o.resume = std::filesystem::exists(o.out + "/checkpoints/last.safetensors");
        std::fprintf(stderr, "\n=== %s, %s images, protocol %s -> %s%s\n", pretty_arch(arch).c_str(),
                     size_label(n).c_str(), protocol.c_str(), o.out.c_str(), o.resume ? " (resuming)" : "");
        c.result = run_training(o);
        for (const EpochRow& r : c.result.rows) c.train_seconds += r.seconds;
        if (options.localise && c.result.tested) {
          c.localisation = options.localise(o.out, c.result);
          if (!c.localisation.gallery.empty()) c.localisation.gallery = c.run_dir + "/" + c.localisation.gallery;
        }
        cmp.cells.push_back(std::move(c));
        write_comparison_report(cmp);
      }
  return cmp;
}

// ---------------------------------------------------------------------------------------------------
// What the numbers can show: the report's own statement of its scope, from the settings it ran with.

namespace {

// The study's protocol (docs/apps.md): 10 epochs at 224x224 on 100, 3,000 and 10,000 images of MURA.
constexpr int64_t kStudyEpochs = 10, kStudyInputSize = 224, kStudyLargestSubset = 10000;

// The synthetic MURA: the trainer's own (no --data) or a tree written by mura_synth, the only kind with
// defect_boxes.csv (the true fracture boxes; MURA has none).
bool synthetic_data(const TrainOptions& base) {
  std::error_code ec;
  return base.data.empty() || std::filesystem::is_regular_file(base.data + "/defect_boxes.csv", ec);
}

// "cpu", "cuda:0", ... as the first run recorded it (args.json's device_used); "" before any run.
std::string device_used(const Comparison& cmp) {
  for (const CompareCell& c : cmp.cells) {
    std::error_code ec;
    const std::string args = cmp.options.out + "/" + c.run_dir + "/args.json";
    if (std::filesystem::is_regular_file(args, ec)) return json_string_field(data::read_file_text(args), "device_used");
  }
  return "";
}

// "100 images and the whole set (220 images)", "100, 3000 and 10000 images"; whole_set_images 0 = not known.
std::string sizes_text(const std::vector<int64_t>& sizes, int64_t whole_set_images) {
  std::string t;
  for (size_t i = 0; i < sizes.size(); ++i) {
    t += i == 0 ? "" : i + 1 == sizes.size() ? " and " : ", ";
    if (sizes[i] == 0) {
      t += "the whole set";
      if (whole_set_images > 0) t += " (" + std::to_string(whole_set_images) + " images)";
    } else {
      t += std::to_string(sizes[i]);
      if (i + 1 == sizes.size() || sizes[i + 1] == 0) t += " images";
    }
  }
  return t;
}

}  // namespace

std::string comparison_scope(const Comparison& cmp) {
  const TrainOptions& b = cmp.options.base;
  const bool synthetic = synthetic_data(b);
  bool random_init = false;
  for (const std::string& a : cmp.options.archs) {
    const auto it = cmp.options.weights.find(a);
    random_init = random_init || it == cmp.options.weights.end() || it->second.empty();
  }
  int64_t largest = 0;
  bool whole_set = false;
  for (int64_t n : cmp.options.sizes) {
    largest = std::max(largest, n);
    whole_set = whole_set || n == 0;
  }
  const bool cut_down = b.epochs < kStudyEpochs || b.input_size < kStudyInputSize ||
                        (largest < kStudyLargestSubset && !(whole_set && !synthetic));
  const std::string device = device_used(cmp);
  const bool on_cpu = device == "cpu";
  const std::string where =
      device.empty() ? "this machine" : on_cpu ? "this machine's CPU" : "this machine's GPU (" + device + ")";

  int64_t whole_set_images = 0;  // the number behind "all", once its run is done
  for (const CompareCell& c : cmp.cells)
    if (c.images == 0) whole_set_images = std::max(whole_set_images, static_cast<int64_t>(cell_images(c)));
  std::vector<std::string> why_not;
  if (synthetic)
    why_not.push_back("the images are synthetic (generated radiograph-like images with drawn fractures), not "
                      "patients' radiographs");
  if (random_init) why_not.push_back("the nets start from a random initialisation, not the study's ImageNet weights");
  if (cut_down)
    why_not.push_back("the runs are cut down from the study's protocol: " + std::to_string(b.epochs) + " epochs at " +
                      std::to_string(b.input_size) + "x" + std::to_string(b.input_size) + " on " +
                      sizes_text(cmp.options.sizes, whole_set_images) + " (the study: " + std::to_string(kStudyEpochs) +
                      " epochs at 224x224 on 100, 3000 and 10000 images)");
  std::ostringstream o;
  o << "Can show: that the whole pipeline works end to end (data, split, training, checkpoints, evaluation, the "
       "study-level metrics, this report), and the training and test times of "
    << (cut_down ? "this cut-down workload" : "the study's workload") << " on " << where << ".\n\n";
  if (why_not.empty()) {
    o << "Comparable with the study: MURA, ImageNet weights and the study's protocol, so the accuracies, kappas and "
         "AUROCs may be set beside the study's (up to the split drawn and the framework's numerics).\n";
    return o.str();
  }
  o << "Cannot show: accuracy, kappa or AUROC comparable to the study's, or which net is better on radiographs, "
       "because ";
  for (size_t i = 0; i < why_not.size(); ++i)
    o << (i == 0 ? "" : i + 1 == why_not.size() ? "; and " : "; ") << why_not[i];
  o << ".";
  if (on_cpu) o << " Nor GPU timings: these are the CPU's.";
  o << "\n\nFor numbers comparable with the study: the comparison on MURA (docs/apps.md says where to obtain it) "
       "with converted ImageNet weights at the study's protocol, on a GPU (on a GPU machine, scripts/demo.sh runs the "
       "protocol on a synthetic MURA of MURA's size).\n";
  return o.str();
}

}  // namespace experiment
