// Where the trainer's tests start: the tiny DenseNet (GAP head) on a synthetic MURA, batch 16, lr 1e-3,
// quiet. Each test sets what it is about on top (flavour, epochs, images, device, out, ...).
#pragma once
#include <cstdint>
#include <string>

#include "experiment/run_files.h"

namespace test_support {

inline experiment::TrainOptions tiny_train_options(const std::string& synthetic_dir, int64_t input_size) {
  experiment::TrainOptions o;
  o.arch = "densenet_tiny";
  o.head = "gap";
  o.input_size = input_size;
  o.lr = 1e-3;
  o.batch_size = 16;
  o.synthetic_dir = synthetic_dir;
  o.quiet = true;
  return o;
}

}  // namespace test_support
