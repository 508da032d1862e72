"""Rebuilds a model exported by `python -m weights_tools.export`: torchvision's DenseNet, timm's
Inception-ResNet-v2 or the study's Keras model (keras.applications' DenseNet / InceptionResNetV2 without
top, then Flatten or GlobalAveragePooling2D, then Dense(1, sigmoid)), with the head of our checkpoint, ready
for the exported weights.

This file needs only its framework (torch with torchvision or timm; or keras): the export copies it next to
the weights (F.pt or F.h5 -> F.py) with SETTINGS and WEIGHTS filled in, so that the model loads without
this repository:

    import F                  # F.py, next to the weights
    model = F.load()          # PyTorch: in eval mode; Keras: model.load_weights(F.h5) done
    y = model(x)              # PyTorch: logits, x NCHW [N, 3, H, W]; Keras: probabilities, x NHWC [N, H, W, 3]

(x preprocessed as PREPROCESS says: docs/weights.md.)

Heads (the model's last layers; PyTorch parameter names are the framework's own):
  gap       global average pooling, Linear(C, 1) / Dense(1)   (PyTorch: the framework's model, num_classes=1)
  flatten   the study's Flatten + Dense(1): PyTorch flattens NCHW (Linear(C*H*W, 1) in (c, h, w) order: the
            exporter reorders our NHWC-ordered in-features), Keras NHWC (our order)
  imagenet  the framework's own ImageNet head
BN: eps and momentum of the checkpoint's flavour (keras: DenseNet eps 1.001e-5, momentum 0.99 in Keras's
convention = 0.01 in PyTorch's; torch: eps 1e-5 (DenseNet), momentum 0.1 in PyTorch's = 0.9 in Keras's;
Inception-ResNet-v2's eps is 1e-3 in both). Each framework updates its running variance its own way
(PyTorch unbiased, Keras biased): only further training sees that.
"""
import os

SETTINGS = None    # {"framework", "arch", "head", "grid", "flavor", "input_size"}: filled in by the export
WEIGHTS = None     # the weights' file name, next to this file: filled in by the export
PREPROCESS = None  # the input preprocessing the net was trained with (docs/weights.md): filled in by the export

# archs.feature_channels (this file stands alone; weights_tools/tests/test_export_tools.py keeps them equal)
FEATURE_CHANNELS = {"densenet121": 1024, "densenet169": 1664, "densenet201": 1920, "inception_resnet_v2": 1536}
KERAS_DENSENET_EPS = 1.001e-5
TORCH_DENSENET_EPS = 1e-5
TORCH_KERAS_MOMENTUM = 0.01  # Keras's momentum 0.99 (moving = 0.99 moving + 0.01 batch) in PyTorch's convention
KERAS_TORCH_MOMENTUM = 0.9   # PyTorch's momentum 0.1 in Keras's convention
KERAS_APPLICATIONS = {"densenet121": "DenseNet121", "densenet169": "DenseNet169", "densenet201": "DenseNet201",
                      "inception_resnet_v2": "InceptionResNetV2"}


def _densenet_flatten_head(features, in_features):
    """torchvision DenseNet's features, its final ReLU, Flatten (NCHW order) and Linear(C*H*W, 1), under
    torchvision's parameter names (features.*, classifier.*)."""
    import torch

    class DenseNetFlattenHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = features
            self.classifier = torch.nn.Linear(in_features, 1)

        def forward(self, x):
            return self.classifier(torch.flatten(torch.relu(self.features(x)), 1))
    return DenseNetFlattenHead()


def build_keras(arch, head, flavor="keras", input_size=None):
    """The study's Keras model: Sequential([application without top, Flatten() | GlobalAveragePooling2D(),
    Dense(1, sigmoid)]); for the imagenet head, the application with its top."""
    import keras
    make = getattr(keras.applications, KERAS_APPLICATIONS[arch])
    shape = (input_size, input_size, 3)
    if head == "imagenet":
        model = base = make(weights=None, include_top=True, input_shape=shape)
    else:
        base = make(weights=None, include_top=False, input_shape=shape)
        pool = keras.layers.Flatten() if head == "flatten" else keras.layers.GlobalAveragePooling2D()
        model = keras.Sequential([base, pool, keras.layers.Dense(1, activation="sigmoid")], name=f"{arch}_{head}")
    if flavor == "torch":
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = KERAS_TORCH_MOMENTUM
                if arch != "inception_resnet_v2":
                    layer.epsilon = TORCH_DENSENET_EPS
    return model


def build(framework, arch, head, grid=None, flavor="torch", input_size=None):
    """The framework's model with `head`, randomly initialised (load the exported weights into it)."""
    if head not in ("gap", "flatten", "imagenet"):
        raise ValueError(f"unknown head '{head}' (gap, flatten or imagenet)")
    if framework == "keras":
        return build_keras(arch, head, flavor, input_size)
    import torch
    classes = 1000 if head == "imagenet" else 1
    if framework == "torchvision":
        import torchvision
        model = getattr(torchvision.models, arch)(weights=None, num_classes=classes)
        if head == "flatten":
            model = _densenet_flatten_head(model.features, FEATURE_CHANNELS[arch] * grid[0] * grid[1])
    elif framework == "timm":
        import timm
        model = timm.create_model(arch, pretrained=False, num_classes=classes)
        if head == "flatten":  # timm's forward_head: global_pool, head_drop, classif
            model.global_pool = torch.nn.Flatten(1)
            model.classif = torch.nn.Linear(FEATURE_CHANNELS[arch] * grid[0] * grid[1], 1)
    else:
        raise ValueError(f"unknown framework '{framework}' (torchvision, timm or keras)")
    if flavor == "keras":
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.momentum = TORCH_KERAS_MOMENTUM
                if framework == "torchvision":
                    module.eps = KERAS_DENSENET_EPS  # timm's Inception-ResNet-v2 has Keras's 1e-3 already
    return model


def load(path=None):
    """The exported model holding the weights of `path` (default: WEIGHTS next to this file); a PyTorch
    model in eval mode."""
    if SETTINGS is None:
        raise RuntimeError("this is the template; load the copy that the export wrote next to the weights")
    path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), WEIGHTS)
    model = build(**SETTINGS)
    if SETTINGS["framework"] == "keras":
        model.load_weights(path)  # Keras's legacy HDF5 weights: layer by layer, in order
        return model
    import torch
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
