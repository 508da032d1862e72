// compare: the study's experiment. DenseNet-201 and Inception-ResNet-v2 trained at 100, 3,000 and 10,000
// images and on the whole set (0), under --protocol seed (and optionally patient), each run a full
// train_* run in <out>/runs/<protocol>/<arch>-n<images>/; then results.md (the study's tables: test time
// and accuracy, beside Cohen's kappa and AUROC) and results.html (one self-contained page: the tables, every
// run's curves and the accuracy/time-vs-images figures as inline SVG).
//
//   compare --data MURA-v1.1 --weights-densenet D.safetensors --weights-irv2 I.safetensors --out results/
//   compare --quick --out /tmp/cmp      (the synthetic set, small inputs, 2 epochs: a couple of minutes)
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "data/io_util.h"
#include "experiment/flags.h"
#include "experiment/svg.h"
#include "experiment/trainer.h"

namespace {

using namespace experiment;

struct Cell {
  std::string arch, protocol;
  int64_t images = 0;
  TrainResult result;
  double train_seconds = 0;
};

std::string pretty_arch(const std::string& arch) {
  if (arch == "densenet201") return "DenseNet-201";
  if (arch == "inception_resnet_v2") return "Inception-ResNet-v2";
  return arch;
}

std::string size_label(int64_t n) { return n == 0 ? "all" : std::to_string(n); }

}  // namespace

int main(int argc, char** argv) {
  TrainOptions base;
  std::string out = "compare_results", sizes_text = "100,3000,10000,0", protocols_text = "seed", weights_densenet,
              weights_irv2, archs_text = "densenet201,inception_resnet_v2";
  bool quick = false;
  FlagParser flags("compare",
                   "Runs the study's comparison: both nets at 100, 3,000 and 10,000 images and the whole set, then\n"
                   "writes results.md and results.html. Training flags are those of train_densenet (defaults: the study's).");
  flags.add("--out", &out, "output folder", "DIR");
  flags.add("--sizes", &sizes_text, "image counts (0 = the whole set)", "LIST");
  flags.add("--protocols", &protocols_text, "seed and/or patient (e.g. seed,patient)", "LIST");
  flags.add("--archs", &archs_text, "the nets compared", "LIST");
  flags.add("--weights-densenet", &weights_densenet, "converted ImageNet weights for DenseNet", "FILE");
  flags.add("--weights-irv2", &weights_irv2, "converted ImageNet weights for Inception-ResNet-v2", "FILE");
  flags.add_switch("--quick", &quick, "a tiny synthetic comparison for the demo: sizes 60,120,0 of the synthetic set, "
                                      "75x75 inputs, 2 epochs, batch 16, lr 1e-4");
  flags.add("--data", &base.data, "a MURA-v1.1 root; absent = the synthetic set", "DIR");
  flags.add("--synthetic-dir", &base.synthetic_dir, "where the synthetic set is cached", "DIR");
  flags.add("--epochs", &base.epochs, "training epochs");
  flags.add("--batch-size", &base.batch_size, "batch size");
  flags.add("--lr", &base.lr, "learning rate");
  flags.add("--head", &base.head, "flatten | gap", "H");
  flags.add("--input-size", &base.input_size, "input size");
  flags.add("--device", &base.device, "auto | cpu | cuda", "D");
  flags.add("--seed", &base.seed, "seed");
  flags.add("--workers", &base.workers, "data loader threads");
  flags.add_switch("--quiet", &base.quiet, "no progress display");
  try {
    if (!flags.parse(argc, argv)) return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compare: %s\n", e.what());
    return 2;
  }
  base.keep_epoch_checkpoints = false;  // last and best only: Inception-ResNet-v2 checkpoints are 0.66 GB
  if (quick) {
    if (!flags.given("--sizes")) sizes_text = "60,120,0";
    if (!flags.given("--epochs")) base.epochs = 2;
    if (!flags.given("--batch-size")) base.batch_size = 16;
    if (!flags.given("--input-size")) base.input_size = 75;
    if (!flags.given("--lr")) base.lr = 1e-4;
  }
  try {
    std::vector<int64_t> sizes;
    std::stringstream ss(sizes_text);
    for (std::string item; std::getline(ss, item, ',');) sizes.push_back(parse_int("--sizes", item));
    std::vector<std::string> protocols, archs;
    std::stringstream ps(protocols_text), as(archs_text);
    for (std::string item; std::getline(ps, item, ',');) protocols.push_back(item);
    for (std::string item; std::getline(as, item, ',');) archs.push_back(item);

    std::vector<Cell> cells;
    for (const std::string& protocol : protocols)
      for (int64_t n : sizes)
        for (const std::string& arch : archs) {
          TrainOptions o = base;
          o.arch = arch;
          o.protocol = protocol;
          o.images = n;
          o.weights = arch.rfind("densenet", 0) == 0 ? weights_densenet : weights_irv2;
          o.out = out + "/runs/" + protocol + "/" + arch + "-n" + size_label(n);
          o.resume = std::filesystem::exists(o.out + "/checkpoints/last.safetensors");
          std::fprintf(stderr, "\n=== %s, %s images, protocol %s -> %s%s\n", pretty_arch(arch).c_str(),
                       size_label(n).c_str(), protocol.c_str(), o.out.c_str(), o.resume ? " (resuming)" : "");
          Cell c{arch, protocol, n, run_training(o), 0};
          for (const EpochRow& r : c.result.rows) c.train_seconds += r.seconds;
          cells.push_back(std::move(c));
        }

    // results.md
    std::ostringstream md, html_tables;
    md << "# The comparison\n\n" << (base.data.empty() ? "Data: the synthetic MURA. " : "Data: " + base.data + ". ")
       << "Epochs " << base.epochs << ", batch " << base.batch_size << ", lr " << base.lr << ", " << base.input_size
       << "x" << base.input_size << ", head " << base.head << ".\n"
       << "Time = the test set's wall time (the study's \"time\" column); accuracy and AUROC at image level, kappa at "
          "study level (mean of image probabilities, threshold 0.5).\n";
    for (const std::string& protocol : protocols) {
      md << "\n## Protocol " << protocol << "\n\n| images |";
      for (const std::string& a : archs) md << " " << pretty_arch(a) << " time (s) | accuracy | kappa | AUROC | train (s) |";
      md << "\n|---|";
      for (size_t i = 0; i < archs.size(); ++i) md << "---|---|---|---|---|";
      md << "\n";
      for (int64_t n : sizes) {
        md << "| " << size_label(n) << " |";
        for (const std::string& a : archs)
          for (const Cell& c : cells)
            if (c.arch == a && c.protocol == protocol && c.images == n) {
              const auto& t = c.result.test;
              md << " " << fmt(t.seconds, 2) << " | " << fmt(t.overall.image.accuracy) << " | "
                 << fmt(t.overall.study.kappa) << " | " << fmt(t.overall.image.auroc) << " | " << fmt(c.train_seconds, 1)
                 << " |";
            }
        md << "\n";
      }
    }
    data::make_directories(out);
    data::write_file_atomic(out + "/results.md", md.str());

    // results.html: the same tables (rendered from the markdown rows) and the figures.
    std::ostringstream h;
    h << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>MURA comparison</title><style>"
         "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
         "td,th{border:1px solid #aaa;padding:3px 8px;text-align:right}svg{margin:4px}</style></head><body>\n"
      << "<h1>The comparison</h1>\n";
    {
      std::istringstream lines(md.str());
      bool in_table = false;
      for (std::string line; std::getline(lines, line);) {
        if (line.rfind("|", 0) == 0) {
          if (line.rfind("|---", 0) == 0) continue;
          if (!in_table) h << "<table>\n";
          const char* cell = in_table ? "td" : "th";
          in_table = true;
          h << "<tr>";
          std::stringstream cs(line.substr(1));
          for (std::string f; std::getline(cs, f, '|');) h << "<" << cell << ">" << xml_escape(f) << "</" << cell << ">";
          h << "</tr>\n";
        } else {
          if (in_table) h << "</table>\n";
          in_table = false;
          if (line.rfind("## ", 0) == 0) h << "<h2>" << xml_escape(line.substr(3)) << "</h2>\n";
          else if (line.rfind("# ", 0) != 0 && !line.empty()) h << "<p>" << xml_escape(line) << "</p>\n";
        }
      }
      if (in_table) h << "</table>\n";
    }
    for (const std::string& protocol : protocols) {
      Chart acc{"test accuracy vs images (" + protocol + ")", "images", {}, true},
          time{"test time (s) vs images (" + protocol + ")", "images", {}, true};
      for (const std::string& a : archs) {
        Series sa{pretty_arch(a), {}, {}}, st{pretty_arch(a), {}, {}};
        for (const Cell& c : cells)
          if (c.arch == a && c.protocol == protocol) {
            // "all": about ten times the test split (80/10/10).
            const double n = c.images > 0 ? static_cast<double>(c.images)
                                          : static_cast<double>(c.result.test.images.size()) * 10;
            sa.x.push_back(n);
            sa.y.push_back(c.result.test.overall.image.accuracy);
            st.x.push_back(n);
            st.y.push_back(c.result.test.seconds);
          }
        acc.series.push_back(sa);
        time.series.push_back(st);
      }
      h << "<h2>Figures (" << xml_escape(protocol) << ")</h2>\n" << svg_chart(acc, 420, 280) << svg_chart(time, 420, 280);
      h << "<h3>Training curves</h3>\n";
      for (const char* what : {"train loss", "val loss", "train accuracy", "val accuracy", "epoch time (s)"}) {
        Chart ch{std::string(what) + " (" + protocol + ")", "epoch", {}, false};
        for (const Cell& c : cells) {
          if (c.protocol != protocol) continue;
          Series s{pretty_arch(c.arch) + " n=" + size_label(c.images), {}, {}};
          for (const EpochRow& r : c.result.rows) {
            s.x.push_back(static_cast<double>(r.epoch));
            const std::string w = what;
            s.y.push_back(w == "train loss" ? r.train_loss : w == "val loss" ? r.val_loss : w == "train accuracy" ? r.train_acc
                          : w == "val accuracy" ? r.val_acc : r.seconds);
          }
          ch.series.push_back(s);
        }
        h << svg_chart(ch, 420, 280);
      }
    }
    h << "\n</body></html>\n";
    data::write_file_atomic(out + "/results.html", h.str());
    std::fputs(md.str().c_str(), stdout);
    std::fprintf(stderr, "\nwrote %s/results.md and %s/results.html (runs in %s/runs/)\n", out.c_str(), out.c_str(), out.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compare: error: %s\n", e.what());
    return 1;
  }
}
