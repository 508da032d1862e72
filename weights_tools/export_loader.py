"""Rebuilds a model exported by `python -m weights_tools.export --to torchvision|timm`: torchvision's
DenseNet or timm's Inception-ResNet-v2 with the head of our checkpoint, ready for the exported state dict.

This file needs only torch and torchvision or timm: the export copies it next to the state dict (F.pt ->
F.py) with SETTINGS and WEIGHTS filled in, so that the model loads without this repository:

    import F                  # F.py, next to F.pt
    model = F.load()          # the model in eval mode, holding F.pt's weights
    logits = model(x)         # x: NCHW [N, 3, H, W], preprocessed as the checkpoint's metadata says

Heads (the model's last layers; parameter names are the framework's own):
  gap       global average pooling, Linear(C, 1)          (the framework's model with num_classes=1)
  flatten   Flatten of the NCHW feature map, Linear(C*H*W, 1)  (the study's Flatten + Dense(1); the
            exporter reorders our NHWC-ordered in-features to PyTorch's (c, h, w) order)
  imagenet  the framework's own ImageNet head
BN: eps and momentum of the checkpoint's flavour (keras: DenseNet eps 1.001e-5, momentum 0.01 in PyTorch's
convention = Keras's 0.99; torch: the framework's defaults). PyTorch's BN always updates its running
variance with the unbiased batch variance (Keras uses the biased one): only further training sees that.
"""
import os

import torch

SETTINGS = None  # {"framework", "arch", "head", "grid": [H, W] or None, "flavor"}: filled in by the export
WEIGHTS = None   # the state dict's file name, next to this file: filled in by the export

FEATURE_CHANNELS = {"densenet121": 1024, "densenet169": 1664, "densenet201": 1920, "inception_resnet_v2": 1536}
KERAS_DENSENET_EPS = 1.001e-5
KERAS_MOMENTUM = 0.01  # Keras's momentum 0.99 (moving = 0.99 moving + 0.01 batch) in PyTorch's convention


class DenseNetFlattenHead(torch.nn.Module):
    """torchvision DenseNet's features, its final ReLU, Flatten (NCHW order) and Linear(C*H*W, 1), under
    torchvision's parameter names (features.*, classifier.*)."""

    def __init__(self, features, in_features):
        super().__init__()
        self.features = features
        self.classifier = torch.nn.Linear(in_features, 1)

    def forward(self, x):
        return self.classifier(torch.flatten(torch.relu(self.features(x)), 1))


def build(framework, arch, head, grid=None, flavor="torch"):
    """The framework's model with `head` (randomly initialised; load the exported state dict into it)."""
    if head not in ("gap", "flatten", "imagenet"):
        raise ValueError(f"unknown head '{head}' (gap, flatten or imagenet)")
    classes = 1000 if head == "imagenet" else 1
    if framework == "torchvision":
        import torchvision
        model = getattr(torchvision.models, arch)(weights=None, num_classes=classes)
        if head == "flatten":
            model = DenseNetFlattenHead(model.features, FEATURE_CHANNELS[arch] * grid[0] * grid[1])
    elif framework == "timm":
        import timm
        model = timm.create_model(arch, pretrained=False, num_classes=classes)
        if head == "flatten":  # timm's forward_head: global_pool, head_drop, classif
            model.global_pool = torch.nn.Flatten(1)
            model.classif = torch.nn.Linear(FEATURE_CHANNELS[arch] * grid[0] * grid[1], 1)
    else:
        raise ValueError(f"unknown framework '{framework}' (torchvision or timm)")
    if flavor == "keras":
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.momentum = KERAS_MOMENTUM
                if framework == "torchvision":
                    module.eps = KERAS_DENSENET_EPS  # timm's Inception-ResNet-v2 has Keras's 1e-3 already
    return model


def load(path=None):
    """The exported model in eval mode, holding the weights of `path` (default: WEIGHTS next to this file)."""
    if SETTINGS is None:
        raise RuntimeError("this is the template; load the copy that the export wrote next to the .pt file")
    path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), WEIGHTS)
    model = build(**SETTINGS)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
