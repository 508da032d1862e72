// train_densenet: trains DenseNet-201 (or 121/169) on MURA or the synthetic set, as the study did, and
// evaluates it on the test split. All of the work is the shared trainer (experiment/trainer.h);
// `train_densenet --help` lists the flags and their defaults, which reproduce the study.
#include "experiment/trainer.h"

int main(int argc, char** argv) {
  return experiment::train_main(
      argc, argv, "train_densenet",
      "Trains DenseNet (default DenseNet-201, the study's) on MURA-v1.1 (--data) or the synthetic MURA, then\n"
      "evaluates it on the test split (image and study level: accuracy, AUROC, Cohen's kappa, ...).",
      "densenet201", {"densenet201", "densenet169", "densenet121", "densenet_tiny"});
}
