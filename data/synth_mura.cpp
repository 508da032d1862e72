// The synthetic MURA generator (see synth_mura.h for what it draws and why).
//
// Two phases. Planning (sequential, one random stream): patients, studies, labels (per subset and body
// part, round(abnormal_fraction * studies) abnormal, so every part has both classes), each study's
// anatomy (capsules in a unit square) and fracture, each view's size, pose and file format. Rendering
// (parallel): image i draws only from Generator(seed, kImageStream + i), so the bytes do not depend on
// the thread count.
#include "data/synth_mura.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "data/csv.h"
#include "data/image_write.h"
#include "data/io_util.h"
#include "data/mura_index.h"
#include "data/paths.h"
#include "engine/check.h"
#include "engine/random.h"

namespace data {
namespace {

constexpr uint64_t kPlanStream = 0x5E7'0000;
constexpr uint64_t kImageStream = 0x5E7'1000'0000;
constexpr float kPi = 3.14159265358979f;

struct Vec {
  float x = 0, y = 0;
};
Vec operator+(Vec a, Vec b) { return {a.x + b.x, a.y + b.y}; }
Vec operator-(Vec a, Vec b) { return {a.x - b.x, a.y - b.y}; }
Vec operator*(float s, Vec a) { return {s * a.x, s * a.y}; }
float dot(Vec a, Vec b) { return a.x * b.x + a.y * b.y; }
float length(Vec a) { return std::sqrt(dot(a, a)); }

float segment_distance(Vec p, Vec a, Vec b) {
  const Vec ab = b - a, ap = p - a;
  const float len2 = dot(ab, ab);
  const float t = len2 > 0 ? std::clamp(dot(ap, ab) / len2, 0.0f, 1.0f) : 0.0f;
  return length(ap - t * ab);
}

// Approximately standard normal from one 64-bit draw: the sum of four 16-bit uniforms (Irwin-Hall),
// centred and scaled to unit variance. Film grain does not need Box-Muller's tails, and it is 5x cheaper.
float grain(engine::Generator& gen) {
  const uint64_t r = gen.next_u64();
  const float sum = static_cast<float>((r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48));
  return (sum * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
}

float smoothstep(float e0, float e1, float x) {
  const float t = std::clamp((x - e0) / (e1 - e0), 0.0f, 1.0f);
  return t * t * (3 - 2 * t);
}

struct Capsule {
  Vec a, b;
  float r = 0;
};

struct Fracture {
  int bone = -1;         // index into the anatomy's bones
  float t = 0.5f;        // position along the bone's axis
  float angle = 0;       // crack direction relative to the bone's normal (radians)
  float width = 0.01f;   // crack width, as a fraction of the image's shorter side
  float shift = 0;       // displacement of the far fragment, in bone radii
  std::array<float, 7> jag{};  // lateral offsets of the crack polyline, in crack widths
  float swelling = 0;    // soft-tissue swelling around the crack, as a fraction of the tissue's level
};

struct Anatomy {
  std::vector<Capsule> bones;
  Fracture fracture;  // bone < 0: none
};

struct ViewPlan {
  std::string relative;  // "train/XR_.../imageN.png"
  int width = 0, height = 0;
  float rotation = 0, scale = 1, shift_x = 0, shift_y = 0;
  bool mirror = false;
  bool show_fracture = false;
  int format = 0;  // 0 gray 8-bit, 1 RGB, 2 gray 16-bit
  bool light_background = false;
  bool truncated = false;
  int study = 0;
};

struct StudyPlan {
  std::string key;  // relative study folder
  Subset subset = Subset::train;
  BodyPart part = BodyPart::elbow;
  int label = 0;
  Anatomy anatomy;
};

// ---------------------------------------------------------------------------------------------------
// Anatomy per body part, in a unit square (y down), with per-study jitter.

Anatomy make_anatomy(BodyPart part, engine::Generator& gen) {
  Anatomy an;
  auto j = [&](float v, float amount = 0.025f) { return v + gen.uniform(-amount, amount); };
  auto bone = [&](float ax, float ay, float bx, float by, float r) {
    an.bones.push_back({{j(ax), j(ay)}, {j(bx), j(by)}, r * gen.uniform(0.85f, 1.15f)});
  };
  auto blob = [&](float x, float y, float r) {
    const Vec c{j(x, 0.01f), j(y, 0.01f)};
    an.bones.push_back({c, c + Vec{gen.uniform(-0.01f, 0.01f), gen.uniform(-0.01f, 0.01f)}, r * gen.uniform(0.85f, 1.15f)});
  };
  switch (part) {
    case BodyPart::humerus:
      bone(0.5f, 0.14f, 0.5f, 0.86f, 0.065f);
      blob(0.5f, 0.12f, 0.13f);
      bone(0.42f, 0.9f, 0.58f, 0.9f, 0.05f);
      break;
    case BodyPart::forearm:
      bone(0.42f, 0.06f, 0.40f, 0.94f, 0.045f);
      bone(0.58f, 0.06f, 0.60f, 0.94f, 0.04f);
      break;
    case BodyPart::elbow:
      bone(0.5f, -0.05f, 0.5f, 0.42f, 0.07f);
      bone(0.40f, 0.46f, 0.60f, 0.46f, 0.05f);
      bone(0.43f, 0.57f, 0.40f, 1.05f, 0.04f);
      bone(0.58f, 0.55f, 0.60f, 1.05f, 0.045f);
      blob(0.62f, 0.52f, 0.04f);
      break;
    case BodyPart::wrist: {
      bone(0.40f, -0.05f, 0.42f, 0.40f, 0.06f);
      bone(0.60f, -0.05f, 0.58f, 0.38f, 0.04f);
      for (int i = 0; i < 4; ++i) blob(0.36f + 0.09f * i, 0.49f, 0.037f);
      for (int i = 0; i < 4; ++i) blob(0.34f + 0.1f * i, 0.59f, 0.035f);
      for (int i = 0; i < 4; ++i) bone(0.35f + 0.1f * i, 0.68f, 0.30f + 0.14f * i, 1.05f, 0.026f);
      break;
    }
    case BodyPart::hand: {
      for (int i = 0; i < 3; ++i) blob(0.42f + 0.08f * i, 0.88f, 0.035f);
      for (int i = 0; i < 4; ++i) {
        const float x0 = 0.40f + 0.06f * i, x1 = 0.26f + 0.16f * i;
        bone(x0, 0.80f, x1, 0.54f, 0.024f);                                   // metacarpal
        bone(x1, 0.51f, x1 + (x1 - 0.5f) * 0.25f, 0.33f, 0.02f);              // proximal phalanx
        bone(x1 + (x1 - 0.5f) * 0.27f, 0.30f, x1 + (x1 - 0.5f) * 0.4f, 0.20f, 0.017f);  // middle
        bone(x1 + (x1 - 0.5f) * 0.42f, 0.17f, x1 + (x1 - 0.5f) * 0.5f, 0.10f, 0.015f);  // distal
      }
      bone(0.36f, 0.82f, 0.22f, 0.66f, 0.026f);  // thumb
      bone(0.20f, 0.63f, 0.12f, 0.52f, 0.022f);
      break;
    }
    case BodyPart::finger: {
      const float x = 0.5f;
      bone(x, 1.05f, x, 0.73f, 0.06f);
      bone(x, 0.69f, x, 0.42f, 0.055f);
      bone(x, 0.38f, x, 0.22f, 0.05f);
      bone(x, 0.18f, x, 0.06f, 0.045f);
      break;
    }
    case BodyPart::shoulder:
      blob(0.45f, 0.45f, 0.13f);
      bone(0.45f, 0.52f, 0.40f, 1.05f, 0.07f);
      bone(0.05f, 0.15f, 0.85f, 0.25f, 0.04f);
      bone(0.66f, 0.30f, 0.72f, 0.78f, 0.05f);
      break;
  }
  return an;
}

void plan_fracture(Anatomy& an, engine::Generator& gen, float scale, float swelling) {
  std::vector<int> long_bones;
  for (size_t i = 0; i < an.bones.size(); ++i) {
    const Capsule& c = an.bones[i];
    if (length(c.b - c.a) >= 3.0f * c.r) long_bones.push_back(static_cast<int>(i));
  }
  ENGINE_CHECK(!long_bones.empty()) << "synthetic anatomy without a long bone";
  Fracture& f = an.fracture;
  f.bone = long_bones[gen.below(long_bones.size())];
  f.t = gen.uniform(0.3f, 0.7f);
  f.angle = gen.uniform(-0.6f, 0.6f);
  f.width = scale * gen.uniform(0.008f, 0.016f);
  f.shift = scale * gen.uniform(0.0f, 0.35f);
  for (float& v : f.jag) v = gen.uniform(-0.6f, 0.6f);
  f.swelling = swelling;
}

// ---------------------------------------------------------------------------------------------------
// Rendering one view

struct Pose {
  float cx, cy, unit, cos_r, sin_r, mirror;
  Vec map(Vec p) const {  // unit square -> image pixels
    float u = (p.x - 0.5f) * mirror, v = p.y - 0.5f;
    const float x = cos_r * u - sin_r * v, y = sin_r * u + cos_r * v;
    return {cx + unit * x, cy + unit * y};
  }
};

struct Canvas {
  int w, h;
  std::vector<float> tissue, bone;
};

// Max-composites a capsule into `layer`. bone=true: a cortex profile (brighter rim); false: soft tissue.
// For the fractured bone, `crack` (non-null) cuts a dark jagged gap and shifts the far fragment; the
// crack's pixels inside the bone extend `box`.
struct Crack {
  std::vector<Vec> line;  // image pixels
  float half_width = 1;
  Vec centre, axis, shift;  // the fragment beyond the crack (dot(p - centre, axis) > 0) is moved by shift
};

void draw_capsule(Canvas& canvas, std::vector<float>& layer, Vec a, Vec b, float r, float level, bool is_bone,
                  const Crack* crack, int box[4]) {
  const float reach = is_bone ? r + 1.5f : r * 1.35f + 2.0f;
  float lo_x = std::min(a.x, b.x) - reach, hi_x = std::max(a.x, b.x) + reach;
  float lo_y = std::min(a.y, b.y) - reach, hi_y = std::max(a.y, b.y) + reach;
  if (crack) {
    const float s = length(crack->shift) + 1;
    lo_x -= s, hi_x += s, lo_y -= s, hi_y += s;
  }
  const int x0 = std::max(0, static_cast<int>(std::floor(lo_x))), x1 = std::min(canvas.w - 1, static_cast<int>(std::ceil(hi_x)));
  const int y0 = std::max(0, static_cast<int>(std::floor(lo_y))), y1 = std::min(canvas.h - 1, static_cast<int>(std::ceil(hi_y)));
  for (int y = y0; y <= y1; ++y) {
    for (int x = x0; x <= x1; ++x) {
      Vec p{x + 0.5f, y + 0.5f};
      float cut = 1.0f;
      if (crack) {
        if (dot(p - crack->centre, crack->axis) > 0) p = p - crack->shift;
        float d_crack = 1e9f;
        for (size_t i = 0; i + 1 < crack->line.size(); ++i)
          d_crack = std::min(d_crack, segment_distance({x + 0.5f, y + 0.5f}, crack->line[i], crack->line[i + 1]));
        cut = 0.12f + 0.88f * smoothstep(crack->half_width - 0.5f, crack->half_width + 0.8f, d_crack);
      }
      const float d = segment_distance(p, a, b);
      float value;
      if (is_bone) {
        const float alpha = std::clamp(r - d + 0.5f, 0.0f, 1.0f);
        if (alpha <= 0) continue;
        const float q = d / r;
        value = level * alpha * (0.72f + 0.28f * smoothstep(0.5f, 0.92f, q)) * cut;
        if (crack && cut < 0.6f && alpha > 0.3f) {
          box[0] = std::min(box[0], x), box[1] = std::min(box[1], y);
          box[2] = std::max(box[2], x + 1), box[3] = std::max(box[3], y + 1);
        }
      } else {
        value = level * std::clamp((r * 1.35f - d) / (0.5f * r), 0.0f, 1.0f);
        if (value <= 0) continue;
      }
      float& dst = layer[static_cast<size_t>(y) * canvas.w + x];
      dst = std::max(dst, value);
    }
  }
}

// 3x5 bitmaps of the marker letters.
constexpr const char* kLetters[2][5] = {{"1..", "1..", "1..", "1..", "111"}, {"11.", "1.1", "11.", "1.1", "1.1"}};

struct Rendered {
  std::vector<float> pixels;  // [h, w] in [0, 255]
  bool has_box = false;
  DefectBox box;
};

Rendered render_view(const StudyPlan& study, const ViewPlan& view, uint64_t seed, uint64_t ordinal) {
  engine::Generator gen(seed, kImageStream + ordinal);
  const int w = view.width, h = view.height;
  Canvas canvas{w, h, std::vector<float>(static_cast<size_t>(w) * h, 0.0f),
                std::vector<float>(static_cast<size_t>(w) * h, 0.0f)};
  const float shorter = static_cast<float>(std::min(w, h));
  const Pose pose{w * 0.5f + view.shift_x * shorter, h * 0.5f + view.shift_y * shorter, view.scale * shorter,
                  std::cos(view.rotation), std::sin(view.rotation), view.mirror ? -1.0f : 1.0f};

  // Levels: dark film (bright bones) or, sometimes, a light background (still brighter bones).
  const float background = view.light_background ? gen.uniform(135.0f, 175.0f) : gen.uniform(5.0f, 40.0f);
  const float tissue_level = view.light_background ? gen.uniform(10.0f, 25.0f) : gen.uniform(25.0f, 60.0f);
  const float bone_level = view.light_background ? gen.uniform(50.0f, 78.0f) : gen.uniform(85.0f, 150.0f);

  const Anatomy& an = study.anatomy;
  for (const Capsule& c : an.bones)
    draw_capsule(canvas, canvas.tissue, pose.map(c.a), pose.map(c.b), c.r * pose.unit * 2.2f + 0.03f * pose.unit,
                 tissue_level, false, nullptr, nullptr);

  Rendered out;
  int box[4] = {w, h, 0, 0};
  for (size_t i = 0; i < an.bones.size(); ++i) {
    const Capsule& c = an.bones[i];
    const Vec a = pose.map(c.a), b = pose.map(c.b);
    const float r = c.r * pose.unit;
    const float level = bone_level * gen.uniform(0.85f, 1.1f);
    if (view.show_fracture && static_cast<int>(i) == an.fracture.bone) {
      const Fracture& f = an.fracture;
      Crack crack;
      const Vec axis_vec = b - a;
      const float axis_len = std::max(length(axis_vec), 1e-3f);
      crack.axis = (1.0f / axis_len) * axis_vec;
      crack.centre = a + f.t * axis_vec;
      const Vec normal{-crack.axis.y, crack.axis.x};
      const float ca = std::cos(f.angle), sa = std::sin(f.angle);
      const Vec across{ca * normal.x - sa * normal.y, sa * normal.x + ca * normal.y};
      const Vec along{-across.y, across.x};
      crack.half_width = std::max(0.8f, 0.5f * f.width * shorter);
      const int points = static_cast<int>(f.jag.size());
      for (int k = 0; k < points; ++k) {
        const float s = -1.4f * r + 2.8f * r * k / (points - 1);
        crack.line.push_back(crack.centre + s * across + (f.jag[k] * 2.0f * crack.half_width) * along);
      }
      crack.shift = (f.shift * r) * normal;
      draw_capsule(canvas, canvas.bone, a, b, r, level, true, &crack, box);
      if (f.swelling > 0) {  // a soft Gaussian bulge of the soft tissue, centred on the crack
        const float sigma = 2.0f * r, amplitude = f.swelling * tissue_level;
        const int reach = static_cast<int>(std::ceil(3 * sigma));
        for (int y = std::max(0, static_cast<int>(crack.centre.y) - reach);
             y <= std::min(h - 1, static_cast<int>(crack.centre.y) + reach); ++y)
          for (int x = std::max(0, static_cast<int>(crack.centre.x) - reach);
               x <= std::min(w - 1, static_cast<int>(crack.centre.x) + reach); ++x) {
            const float dx = x + 0.5f - crack.centre.x, dy = y + 0.5f - crack.centre.y;
            canvas.tissue[static_cast<size_t>(y) * w + x] += amplitude * std::exp(-(dx * dx + dy * dy) / (2 * sigma * sigma));
          }
      }
    } else {
      draw_capsule(canvas, canvas.bone, a, b, r, level, true, nullptr, nullptr);
    }
  }
  if (box[2] > box[0] && box[3] > box[1]) {
    out.has_box = true;
    out.box = {std::max(0, box[0] - 2), std::max(0, box[1] - 2), std::min(w, box[2] + 2), std::min(h, box[3] + 2)};
  }

  // Compose, then a brightness gradient, marker letters, noise.
  const float gx = gen.uniform(-15.0f, 15.0f), gy = gen.uniform(-15.0f, 15.0f);
  const float noise = gen.uniform(2.0f, 7.0f);
  out.pixels.resize(static_cast<size_t>(w) * h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const size_t i = static_cast<size_t>(y) * w + x;
      out.pixels[i] = background + gx * (x / float(w) - 0.5f) + gy * (y / float(h) - 0.5f) + canvas.tissue[i] +
                      canvas.bone[i];
    }
  if (gen.uniform() < 0.6f) {
    const int letter = static_cast<int>(gen.below(2));
    const int cell = std::max(2, static_cast<int>(shorter * gen.uniform(0.012f, 0.02f)));
    const int corner = static_cast<int>(gen.below(4));
    const int margin = static_cast<int>(shorter * 0.04f);
    const int left = corner % 2 ? w - margin - 3 * cell : margin;
    const int top = corner / 2 ? h - margin - 5 * cell : margin;
    const float ink = gen.uniform(190.0f, 250.0f);
    for (int r = 0; r < 5; ++r)
      for (int c = 0; c < 3; ++c) {
        if (kLetters[letter][r][c] != '1') continue;
        for (int y = top + r * cell; y < top + (r + 1) * cell; ++y)
          for (int x = left + c * cell; x < left + (c + 1) * cell; ++x)
            if (x >= 0 && y >= 0 && x < w && y < h) out.pixels[static_cast<size_t>(y) * w + x] = ink;
      }
  }
  for (float& v : out.pixels) v = std::clamp(v + noise * grain(gen), 0.0f, 255.0f);
  return out;
}

std::vector<uint8_t> encode_view(const Rendered& r, const ViewPlan& view, engine::Generator& gen) {
  PngImage png;
  png.width = view.width;
  png.height = view.height;
  const size_t n = r.pixels.size();
  if (view.format == 2) {  // 16-bit gray: the 8-bit value times 257 plus a little noise in the low bits
    png.bit_depth = 16;
    png.color = PngColor::gray;
    png.samples.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const int v = static_cast<int>(std::lround(r.pixels[i])) * 257 + static_cast<int>(gen.below(129)) - 64;
      png.samples[i] = static_cast<uint16_t>(std::clamp(v, 0, 65535));
    }
  } else if (view.format == 1) {  // gray saved as RGB
    png.color = PngColor::rgb;
    png.samples.resize(3 * n);
    for (size_t i = 0; i < n; ++i)
      png.samples[3 * i] = png.samples[3 * i + 1] = png.samples[3 * i + 2] =
          static_cast<uint16_t>(std::lround(r.pixels[i]));
  } else {
    png.color = PngColor::gray;
    png.samples.resize(n);
    for (size_t i = 0; i < n; ++i) png.samples[i] = static_cast<uint16_t>(std::lround(r.pixels[i]));
  }
  std::vector<uint8_t> bytes = encode_png(png);
  if (view.truncated) bytes.resize(bytes.size() * 55 / 100);
  return bytes;
}

// An AppleDouble header, as macOS leaves in `._name` files.
std::vector<uint8_t> apple_double_sidecar() {
  std::vector<uint8_t> bytes(4096, 0);
  const uint8_t head[] = {0x00, 0x05, 0x16, 0x07, 0x00, 0x02, 0x00, 0x00};
  std::copy(head, head + sizeof(head), bytes.begin());
  const char* text = "Mac OS X        ";
  std::copy(text, text + 16, bytes.begin() + 8);
  return bytes;
}

}  // namespace

SynthResult make_synthetic_mura(const std::string& out_dir, const SynthOptions& options) {
  ENGINE_CHECK(options.train_patients >= 1 && options.valid_patients >= 0)
      << "synthetic MURA needs at least one train patient";
  ENGINE_CHECK(options.min_side >= 32 && options.max_side >= options.min_side && options.max_side <= 4096)
      << "synthetic MURA sides must satisfy 32 <= min_side <= max_side <= 4096";
  ENGINE_CHECK(options.abnormal_fraction >= 0 && options.abnormal_fraction <= 1) << "abnormal_fraction in [0, 1]";
  ENGINE_CHECK(options.swelling >= 0 && options.swelling <= 10) << "swelling in [0, 10], got " << options.swelling;
  ENGINE_CHECK(options.fracture_scale > 0 && options.fracture_scale <= 10)
      << "fracture_scale in (0, 10], got " << options.fracture_scale;
  const std::string root = out_dir + "/MURA-v1.1";
  make_directories(root);
  engine::Generator plan(options.seed, kPlanStream);

  // Patients and studies.
  std::vector<StudyPlan> studies;
  std::vector<ViewPlan> views;
  struct Group {
    std::vector<int> studies;
  };
  std::array<std::array<Group, kBodyPartCount>, 2> groups;  // [subset][part]
  int patient_number = 0;
  for (Subset subset : {Subset::train, Subset::valid}) {
    const int patients = subset == Subset::train ? options.train_patients : options.valid_patients;
    for (int p = 0; p < patients; ++p) {
      ++patient_number;
      const BodyPart part = kAllBodyParts[p % kBodyPartCount];
      const int study_count = plan.uniform() < 0.3f ? 2 : 1;
      char patient[32];
      std::snprintf(patient, sizeof(patient), "patient%05d", patient_number);
      for (int s = 0; s < study_count; ++s) {
        StudyPlan study;
        study.subset = subset;
        study.part = part;
        study.key = std::string(subset_name(subset)) + "/" + body_part_folder(part) + "/" + patient + "/study" +
                    std::to_string(s + 1);  // the label suffix is added below
        groups[static_cast<int>(subset)][static_cast<int>(part)].studies.push_back(static_cast<int>(studies.size()));
        studies.push_back(std::move(study));
      }
    }
  }
  // Labels: round(fraction * n) abnormal studies per (subset, part), at random positions.
  for (auto& by_part : groups)
    for (Group& g : by_part) {
      std::vector<int> order = g.studies;
      for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[plan.below(i)]);
      const size_t abnormal = static_cast<size_t>(std::lround(options.abnormal_fraction * order.size()));
      for (size_t i = 0; i < order.size(); ++i) studies[order[i]].label = i < abnormal ? 1 : 0;
    }
  for (StudyPlan& study : studies) {
    study.key += study.label ? "_positive" : "_negative";
    study.anatomy = make_anatomy(study.part, plan);
    if (study.label)
      plan_fracture(study.anatomy, plan, static_cast<float>(options.fracture_scale), static_cast<float>(options.swelling));
  }
  // Views.
  for (size_t s = 0; s < studies.size(); ++s) {
    const float draw = plan.uniform();
    const int count = draw < 0.15f ? 1 : draw < 0.6f ? 2 : draw < 0.9f ? 3 : 4;
    const bool light = plan.uniform() < options.light_background_fraction;
    bool any_fracture = false;
    for (int v = 0; v < count; ++v) {
      ViewPlan view;
      view.study = static_cast<int>(s);
      view.relative = studies[s].key + "/image" + std::to_string(v + 1) + ".png";
      const int longest = options.min_side + static_cast<int>(plan.below(options.max_side - options.min_side + 1));
      const int shortest = std::max(32, static_cast<int>(longest * plan.uniform(0.65f, 1.0f)));
      const bool portrait = plan.uniform() < 0.7f;
      view.width = portrait ? shortest : longest;
      view.height = portrait ? longest : shortest;
      view.rotation = plan.uniform(-0.35f, 0.35f) + (plan.uniform() < 0.15f ? kPi / 2 : 0.0f);
      view.scale = plan.uniform(0.75f, 1.0f);
      view.shift_x = plan.uniform(-0.06f, 0.06f);
      view.shift_y = plan.uniform(-0.06f, 0.06f);
      view.mirror = plan.uniform() < 0.3f;
      view.light_background = light;
      const float format_draw = plan.uniform();
      view.format = format_draw < options.rgb_fraction                                  ? 1
                    : format_draw < options.rgb_fraction + options.sixteen_bit_fraction ? 2
                                                                                        : 0;
      view.show_fracture = studies[s].label && (plan.uniform() < 0.85f || (v == count - 1 && !any_fracture));
      any_fracture = any_fracture || view.show_fracture;
      views.push_back(std::move(view));
    }
  }
  // Truncated files: spread over the train images.
  {
    std::vector<size_t> train_views;
    for (size_t i = 0; i < views.size(); ++i)
      if (studies[views[i].study].subset == Subset::train) train_views.push_back(i);
    const size_t want = std::min<size_t>(std::max(0, options.truncated_images), train_views.size());
    for (size_t k = 0; k < want; ++k) views[train_views[(k * train_views.size()) / want + 0]].truncated = true;
  }

  // Render and write the images in parallel.
  for (const StudyPlan& study : studies) make_directories(root + "/" + study.key);
  std::vector<Rendered> boxes(views.size());  // only has_box/box are kept
  std::atomic<size_t> next{0};
  std::mutex error_mutex;
  std::exception_ptr error;
  auto work = [&]() {
    try {
      for (size_t i = next.fetch_add(1); i < views.size(); i = next.fetch_add(1)) {
        const ViewPlan& view = views[i];
        Rendered r = render_view(studies[view.study], view, options.seed, i);
        engine::Generator bits(options.seed, kImageStream + i + (uint64_t(1) << 40));
        write_bytes_file(root + "/" + view.relative, encode_view(r, view, bits), false);
        boxes[i].has_box = r.has_box && !view.truncated;
        boxes[i].box = r.box;
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      next.store(views.size());
    }
  };
  const int threads = std::max(1, std::min(options.threads, 16));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  if (error) std::rethrow_exception(error);

  // CSVs (MURA's: no header, paths from MURA-v1.1/), the defect boxes, the quirks.
  const std::string eol = options.quirks ? "\r\n" : "\n";
  auto row = [&](std::vector<std::string> fields) {
    std::string line = csv_line(fields);
    line.pop_back();
    return line + eol;
  };
  SynthResult result;
  result.root = root;
  for (Subset subset : {Subset::train, Subset::valid}) {
    std::string images_csv, studies_csv;
    for (const ViewPlan& view : views)
      if (studies[view.study].subset == subset) images_csv += row({"MURA-v1.1/" + view.relative});
    for (const StudyPlan& study : studies)
      if (study.subset == subset) studies_csv += row({"MURA-v1.1/" + study.key + "/", std::to_string(study.label)});
    write_file_atomic(root + "/" + subset_name(subset) + "_image_paths.csv", images_csv);
    write_file_atomic(root + "/" + subset_name(subset) + "_labeled_studies.csv", studies_csv);
  }
  std::string boxes_csv = row({"path", "x0", "y0", "x1", "y1"});
  for (size_t i = 0; i < views.size(); ++i) {
    if (!boxes[i].has_box) continue;
    const DefectBox& b = boxes[i].box;
    boxes_csv += row({"MURA-v1.1/" + views[i].relative, std::to_string(b.x0), std::to_string(b.y0),
                      std::to_string(b.x1), std::to_string(b.y1)});
    ++result.defect_boxes;
  }
  write_file_atomic(root + "/defect_boxes.csv", boxes_csv);
  if (options.quirks) {
    const std::vector<uint8_t> sidecar = apple_double_sidecar();
    for (size_t i = 0; i < views.size(); i += 4) {
      const std::string& rel = views[i].relative;
      const size_t slash = rel.rfind('/');
      write_bytes_file(root + "/" + rel.substr(0, slash) + "/._" + rel.substr(slash + 1), sidecar, false);
    }
    write_bytes_file(root + "/train/._XR_ELBOW", sidecar, false);
    write_bytes_file(root + "/train/XR_ELBOW/.DS_Store", std::vector<uint8_t>(64, 0), false);
  }

  result.images = static_cast<int64_t>(views.size());
  result.studies = static_cast<int64_t>(studies.size());
  result.patients = options.train_patients + options.valid_patients;
  for (const StudyPlan& study : studies) result.abnormal_studies += study.label;
  return result;
}

std::map<std::string, DefectBox> read_defect_boxes(const std::string& root) {
  const std::string path = root + "/defect_boxes.csv";
  std::map<std::string, DefectBox> boxes;
  const std::vector<CsvRow> rows = parse_csv(read_file_text(path), path);
  for (size_t r = 0; r < rows.size(); ++r) {
    const CsvRow& row = rows[r];
    if (r == 0 && row.fields[0] == "path") continue;
    ENGINE_CHECK(row.fields.size() == 5) << path << ": line " << row.line << ": expected path,x0,y0,x1,y1";
    const std::optional<MuraPath> parsed = parse_mura_path(row.fields[0]);
    ENGINE_CHECK(parsed && !parsed->file.empty()) << path << ": line " << row.line << ": not an image path";
    check_relative_image_path(parsed->relative(), path + ": line " + std::to_string(row.line));
    DefectBox box;
    int* values[4] = {&box.x0, &box.y0, &box.x1, &box.y1};
    for (int k = 0; k < 4; ++k) {
      char* end = nullptr;
      const long v = std::strtol(row.fields[k + 1].c_str(), &end, 10);
      ENGINE_CHECK(end && *end == '\0' && !row.fields[k + 1].empty() && v >= 0 && v <= 1 << 20)
          << path << ": line " << row.line << ": bad coordinate '" << row.fields[k + 1] << "'";
      *values[k] = static_cast<int>(v);
    }
    boxes[parsed->relative()] = box;
  }
  return boxes;
}

}  // namespace data
