// Class activation maps, the reports (see cam_report.h): the scores per method, cam.csv, summary.json,
// report.md and the gallery page.
#include "experiment/cam_report.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "data/csv.h"
#include "data/io_util.h"
#include "experiment/metrics.h"
#include "experiment/cam_draw.h"
#include "experiment/svg.h"

namespace experiment {

namespace {

std::string method_title(const std::string& method) { return method == "cam" ? "CAM" : "Grad-CAM"; }

}  // namespace

void score_method(const std::vector<CamImage>& images, size_t m, MethodScore& ms) {
  double iou = 0, iou_predicted = 0;
  int64_t hits_predicted = 0, hits_tolerant_predicted = 0;
  for (const CamImage& im : images) {
    ms.empty += !im.results[m].where.valid;
    if (!im.has_box) continue;
    ++ms.boxed;
    ms.hits += im.results[m].hit;
    ms.hits_tolerant += im.results[m].hit_tolerant;
    iou += im.results[m].iou;
    if (im.probability > kThreshold) {
      ++ms.boxed_predicted;
      hits_predicted += im.results[m].hit;
      hits_tolerant_predicted += im.results[m].hit_tolerant;
      iou_predicted += im.results[m].iou;
    }
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  ms.pointing = ms.boxed ? static_cast<double>(ms.hits) / ms.boxed : nan;
  ms.pointing_tolerant = ms.boxed ? static_cast<double>(ms.hits_tolerant) / ms.boxed : nan;
  ms.pointing_tolerant_predicted =
      ms.boxed_predicted ? static_cast<double>(hits_tolerant_predicted) / ms.boxed_predicted : nan;
  ms.mean_iou = ms.boxed ? iou / ms.boxed : nan;
  ms.pointing_predicted = ms.boxed_predicted ? static_cast<double>(hits_predicted) / ms.boxed_predicted : nan;
  ms.mean_iou_predicted = ms.boxed_predicted ? iou_predicted / ms.boxed_predicted : nan;
}

namespace {

std::string score(double v) { return std::isfinite(v) ? fmt(v, 3) : "n/a"; }

struct TableRow {
  std::string name, boxed, pointing, pointing_tolerant, iou;
};

std::vector<TableRow> summary_rows(const CamSummary& s) {
  std::vector<TableRow> rows;
  for (const MethodScore& m : s.methods) {
    rows.push_back({method_title(m.method), std::to_string(m.boxed), score(m.pointing), score(m.pointing_tolerant),
                    score(m.mean_iou)});
    rows.push_back({method_title(m.method) + ", images predicted abnormal", std::to_string(m.boxed_predicted),
                    score(m.pointing_predicted), score(m.pointing_tolerant_predicted), score(m.mean_iou_predicted)});
  }
  const ChanceLevels& c = s.chance;
  const std::string n = std::to_string(c.images);
  rows.push_back({"chance: uniformly random peak (exact)", n, score(c.pointing_exact), score(c.pointing_exact_tolerant), ""});
  rows.push_back({"chance: random " + std::to_string(s.grid_h) + "x" + std::to_string(s.grid_w) + " map (" +
                      std::to_string(c.draws) + " draws, seed " + std::to_string(c.seed) + ")",
                  n, score(c.pointing_random), score(c.pointing_random_tolerant), score(c.iou_random)});
  rows.push_back({"centre map", n, score(c.pointing_centre), score(c.pointing_centre_tolerant), score(c.iou_centre)});
  return rows;
}

const char* kScoreNote =
    "Pointing game: the map's peak inside the true box; within half a cell: inside the box grown by half a "
    "feature cell each way (the map's own resolution). IoU: the thresholded map's box against the true box. "
    "Chance levels: a uniformly random peak pixel hits with probability box area / image area; the random "
    "map is i.i.d. uniform on the feature grid, through the same upsampling and box rule; the centre map "
    "always points at the middle.";

const char* kTableHeader[5] = {"map", "images with a box", "pointing game", "pointing game within half a cell",
                               "mean IoU"};

std::vector<std::pair<std::string, std::string>> summary_context(const CamSummary& s) {
  std::string empty;
  for (const MethodScore& m : s.methods)
    empty += (empty.empty() ? "" : ", ") + method_title(m.method) + " " + std::to_string(m.empty) + " of " +
             std::to_string(s.images);
  return {{"checkpoint", s.checkpoint},
          {"net", s.arch + ", " + s.head + " head, " + std::to_string(s.input_size) + " px input, " +
                      std::to_string(s.grid_h) + "x" + std::to_string(s.grid_w) + " feature grid"},
          {"images", std::to_string(s.images) + " (" + std::to_string(s.boxed) + " with a known defect box)"},
          {"box rule", "largest 4-connected component of the map >= " + fmt(s.threshold, 2) +
                           " x its maximum, in the image's own pixels"},
          {"maps with no positive value (nothing to point at; a miss where there is a box)", empty},
          {"device", s.device},
          {"precision", s.precision},
          {"seconds", fmt(s.seconds, 1)}};
}

}  // namespace

std::string cam_summary_markdown(const CamSummary& s) {
  std::string md = "## Localisation: " + s.arch + " (" + s.head + " head)\n\n";
  for (const auto& [k, v] : summary_context(s)) md += "- " + k + ": " + v + "\n";
  md += "\n|";
  for (const char* h : kTableHeader) md += std::string(" ") + h + " |";
  md += "\n|---|---:|---:|---:|---:|\n";
  for (const TableRow& r : summary_rows(s))
    md += "| " + r.name + " | " + r.boxed + " | " + r.pointing + " | " + r.pointing_tolerant + " | " + r.iou + " |\n";
  md += "\n" + std::string(kScoreNote) + "\n";
  if (!s.gallery_path.empty()) md += "\nGallery of the top abnormal predictions: [" + s.gallery_path + "](" + s.gallery_path + ")\n";
  return md;
}

std::string cam_summary_json(const CamSummary& s) {
  std::string j = "{\n";
  j += "  \"checkpoint\": " + json_string(s.checkpoint) + ",\n";
  j += "  \"arch\": " + json_string(s.arch) + ",\n  \"head\": " + json_string(s.head) + ",\n";
  j += "  \"input_size\": " + std::to_string(s.input_size) + ",\n";
  j += "  \"grid\": [" + std::to_string(s.grid_h) + ", " + std::to_string(s.grid_w) + "],\n";
  j += "  \"device\": " + json_string(s.device) + ",\n";
  j += "  \"precision\": " + json_string(s.precision) + ",\n";
  j += "  \"images\": " + std::to_string(s.images) + ",\n  \"boxed_images\": " + std::to_string(s.boxed) + ",\n";
  j += "  \"threshold\": " + json_number(s.threshold) + ",\n  \"seconds\": " + json_number(s.seconds) + ",\n";
  j += "  \"gallery\": " + json_string(s.gallery_path) + ",\n";
  j += "  \"methods\": [";
  for (size_t i = 0; i < s.methods.size(); ++i) {
    const MethodScore& m = s.methods[i];
    j += std::string(i ? ", " : "") + "{\"method\": " + json_string(m.method) + ", \"boxed\": " + std::to_string(m.boxed) +
         ", \"empty_maps\": " + std::to_string(m.empty) + ", \"hits\": " + std::to_string(m.hits) +
         ", \"pointing_game\": " + json_number(m.pointing) +
         ", \"hits_half_cell\": " + std::to_string(m.hits_tolerant) + ", \"pointing_game_half_cell\": " +
         json_number(m.pointing_tolerant) +
         ", \"mean_iou\": " + json_number(m.mean_iou) + ", \"boxed_predicted_abnormal\": " +
         std::to_string(m.boxed_predicted) + ", \"pointing_game_predicted_abnormal\": " + json_number(m.pointing_predicted) +
         ", \"pointing_game_half_cell_predicted_abnormal\": " + json_number(m.pointing_tolerant_predicted) +
         ", \"mean_iou_predicted_abnormal\": " + json_number(m.mean_iou_predicted) + "}";
  }
  j += "],\n";
  const ChanceLevels& c = s.chance;
  j += "  \"chance\": {\"images\": " + std::to_string(c.images) + ", \"pointing_game_exact\": " + json_number(c.pointing_exact) +
       ", \"pointing_game_random_map\": " + json_number(c.pointing_random) + ", \"mean_iou_random_map\": " +
       json_number(c.iou_random) + ", \"pointing_game_centre_map\": " + json_number(c.pointing_centre) +
       ", \"mean_iou_centre_map\": " + json_number(c.iou_centre) + ", \"pointing_game_half_cell_exact\": " +
       json_number(c.pointing_exact_tolerant) + ", \"pointing_game_half_cell_random_map\": " +
       json_number(c.pointing_random_tolerant) + ", \"pointing_game_half_cell_centre_map\": " +
       json_number(c.pointing_centre_tolerant) + ", \"draws\": " + std::to_string(c.draws) +
       ", \"seed\": " + std::to_string(c.seed) + "}\n}\n";
  return j;
}

std::string cam_gallery_html(const CamSummary& s, const std::vector<size_t>& entries,
                             const std::vector<std::vector<std::vector<uint8_t>>>& pngs) {
  ENGINE_CHECK(pngs.size() == entries.size()) << "cam_gallery_html: one PNG list per entry";
  // What the page shows, in its title: which maps, of which net, for which images.
  std::string maps;
  for (size_t m = 0; m < s.methods.size(); ++m)
    maps += (m == 0 ? "" : m + 1 == s.methods.size() ? " and " : ", ") + method_title(s.methods[m].method);
  const std::string title = "Where " + s.arch + " looks: " + (maps.empty() ? "class activation" : maps) +
                            " maps of its " + std::to_string(entries.size()) + " most confident abnormal predictions";
  // Even cards: every map in a square box of kBox pixels whatever the radiograph's aspect (letterboxed on
  // dark grey), the cards of a row stretched to the tallest, long paths wrapped.
  constexpr int kBox = 260;
  const int card = static_cast<int>(std::max<size_t>(1, s.methods.size())) * (kBox + 6) + 16;
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>" + xml_escape(title) +
      "</title>\n<style>\n"
      "body{font-family:sans-serif;margin:1.5em;background:#fafafa;color:#222}\n"
      "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.3em .6em;text-align:right}\n"
      "td:first-child,th:first-child{text-align:left}\n"
      ".gallery{display:grid;grid-template-columns:repeat(auto-fill," + std::to_string(card) + "px);gap:1em}\n"
      ".entry{margin:0;background:#fff;border:1px solid #ccc;padding:.5em;box-sizing:border-box;width:" +
      std::to_string(card) + "px}\n"
      ".maps{display:flex;gap:6px}.map{text-align:center;font-size:.85em}\n"
      ".map img{display:block;width:" + std::to_string(kBox) + "px;height:" + std::to_string(kBox) +
      "px;object-fit:contain;background:#333}\n"
      "figcaption{font-size:.85em;margin-top:.4em;overflow-wrap:anywhere}.p{font-weight:bold}\n"
      ".key{display:flex;align-items:center;gap:1em;flex-wrap:wrap;margin:.5em 0 1em}\n"
      "</style></head><body>\n";
  h += "<h1>" + xml_escape(title) + "</h1>\n<p>" + xml_escape(s.arch) + " (" + xml_escape(s.head) +
       " head): the class activation maps of the images it finds most likely abnormal, highest first, over each "
       "radiograph, with the true defect box where one is known.</p>\n<ul>\n";
  for (const auto& [k, v] : summary_context(s)) h += "<li>" + xml_escape(k) + ": " + xml_escape(v) + "</li>\n";
  h += "</ul>\n<table>\n<tr>";
  for (const char* t : kTableHeader) h += std::string("<th>") + t + "</th>";
  h += "</tr>\n";
  for (const TableRow& r : summary_rows(s))
    h += "<tr><td>" + xml_escape(r.name) + "</td><td>" + r.boxed + "</td><td>" + r.pointing + "</td><td>" +
         r.pointing_tolerant + "</td><td>" + r.iou + "</td></tr>\n";
  h += "</table>\n<p>" + xml_escape(kScoreNote) + "</p>\n";
  h += "<div class=\"key\">" + colour_bar_svg(320) +
       "<span>Colours: the map scaled to its maximum (blue low, red high) over the radiograph; green: the true "
       "defect box; white: the map's box and its peak (cross).</span></div>\n";
  h += "<h2>The " + std::to_string(entries.size()) +
       " most confident abnormal predictions, highest first</h2>\n<div class=\"gallery\">\n";
  for (size_t e = 0; e < entries.size(); ++e) {
    const CamImage& im = s.per_image.at(entries[e]);
    h += "<figure class=\"entry\" data-probability=\"" + fmt(im.probability, 4) + "\">\n<div class=\"maps\">";
    ENGINE_CHECK(pngs[e].size() == s.methods.size()) << "cam_gallery_html: one PNG per method";
    for (size_t m = 0; m < s.methods.size(); ++m)
      h += "<div class=\"map\"><img alt=\"" + method_title(s.methods[m].method) + "\" src=\"data:image/png;base64," +
           base64(pngs[e][m]) + "\"><span>" + method_title(s.methods[m].method) + "</span></div>";
    h += "</div>\n<figcaption><span class=\"p\">p(abnormal) = " + fmt(im.probability, 4) + "</span>";
    h += std::string(" &middot; label: ") + (im.label < 0 ? "unknown" : im.label ? "abnormal" : "normal");
    if (im.has_box)
      for (size_t m = 0; m < s.methods.size(); ++m)
        h += " &middot; " + method_title(s.methods[m].method) + ": " +
             (im.results[m].hit ? "hit" : im.results[m].hit_tolerant ? "hit within half a cell" : "miss") + ", IoU " +
             fmt(im.results[m].iou, 2);
    h += "<br><code>" + xml_escape(im.path) + "</code></figcaption>\n</figure>\n";
  }
  h += "</div>\n</body></html>\n";
  return h;
}

std::string cam_csv(const CamSummary& s) {
  std::vector<std::string> header = {"path", "label", "probability", "logit", "height", "width",
                                     "true_x0", "true_y0", "true_x1", "true_y1", "files"};
  for (const MethodScore& m : s.methods)
    for (const char* f : {"_peak_x", "_peak_y", "_x0", "_y0", "_x1", "_y1", "_hit", "_hit_half_cell", "_iou"})
      header.push_back(m.method + f);
  std::string csv = data::csv_line(header);
  for (const CamImage& im : s.per_image) {
    std::vector<std::string> row = {im.path, std::to_string(im.label), fmt(im.probability, 6), fmt(im.logit, 6),
                                    std::to_string(im.height), std::to_string(im.width)};
    for (int v : {im.truth.x0, im.truth.y0, im.truth.x1, im.truth.y1}) row.push_back(im.has_box ? std::to_string(v) : "");
    row.push_back(im.files);
    for (const CamImage::Result& r : im.results) {
      for (int v : {r.where.peak_x, r.where.peak_y, r.where.box.x0, r.where.box.y0, r.where.box.x1, r.where.box.y1})
        row.push_back(r.where.valid ? std::to_string(v) : "");
      row.push_back(im.has_box ? (r.hit ? "1" : "0") : "");
      row.push_back(im.has_box ? (r.hit_tolerant ? "1" : "0") : "");
      row.push_back(im.has_box ? fmt(r.iou, 4) : "");
    }
    csv += data::csv_line(row);
  }
  return csv;
}

std::string base64(const std::vector<uint8_t>& bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const uint32_t b0 = bytes[i], b1 = i + 1 < bytes.size() ? bytes[i + 1] : 0, b2 = i + 2 < bytes.size() ? bytes[i + 2] : 0;
    const uint32_t v = (b0 << 16) | (b1 << 8) | b2;
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? table[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? table[v & 63] : '=';
  }
  return out;
}

void write_cam_reports(CamSummary& s, const std::vector<size_t>& gallery_entries,
                       const std::vector<std::vector<std::vector<uint8_t>>>& gallery_pngs) {
  data::write_file_atomic(s.out_dir + "/cam.csv", cam_csv(s));
  if (!s.gallery_path.empty()) {
    data::write_file_atomic(s.out_dir + "/gallery.html", cam_gallery_html(s, gallery_entries, gallery_pngs));
    s.gallery_path = s.out_dir + "/gallery.html";
  }
  CamSummary for_files = s;
  if (!s.gallery_path.empty()) for_files.gallery_path = "gallery.html";  // links relative to the folder
  data::write_file_atomic(s.out_dir + "/summary.json", cam_summary_json(for_files));
  data::write_file_atomic(s.out_dir + "/report.md", "# Class activation maps\n\n" + cam_summary_markdown(for_files));
}

}  // namespace experiment
