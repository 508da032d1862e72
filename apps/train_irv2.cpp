// train_irv2: trains Inception-ResNet-v2 on MURA or the synthetic set, as the study did, and evaluates it
// on the test split. All of the work is the shared trainer (experiment/trainer.h); `train_irv2 --help`
// lists the flags and their defaults, which reproduce the study.
#include "experiment/trainer.h"

int main(int argc, char** argv) {
  return experiment::train_main(
      argc, argv, "train_irv2",
      "Trains Inception-ResNet-v2 on MURA-v1.1 (--data) or the synthetic MURA, then evaluates it on the test\n"
      "split (image and study level: accuracy, AUROC, Cohen's kappa, ...).",
      "inception_resnet_v2", {"inception_resnet_v2"});
}
