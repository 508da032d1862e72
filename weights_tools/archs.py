"""Our tensor names and shapes for each architecture and head: the contract between the converters and
the C++ nets (nets/).

Names: DenseNet uses torchvision's state-dict names, Inception-ResNet-v2 timm's, except that our
Inception-ResNet-v2 batch norms have no gamma (Keras scale=False), so `*.bn.weight` does not exist.
Layouts: conv weights OHWI [out, kh, kw, in]; linear weights [out, in]; everything f32.

Heads (the last layer's names: `classifier.*` for DenseNet, `classif.*` for Inception-ResNet-v2):
  imagenet  Linear(C, 1000) after global average pooling
  gap       Linear(C, 1) after global average pooling
  flatten   Linear(H*W*C, 1) after Flatten of the NHWC feature map (h, w, c order = Keras's Flatten)
  none      no head (a backbone; the nets add their own)

`spec(arch, head, flatten_features)` returns an ordered list of Entry(name, shape, trainable): the
order is the reference framework's (torchvision's / timm's state-dict order), which for
Inception-ResNet-v2 is also the order in which Keras creates the layers (see `irv2_units`).
"""
from collections import namedtuple

ARCHS = ("densenet121", "densenet169", "densenet201", "inception_resnet_v2")
HEADS = ("imagenet", "none", "flatten", "gap")

DENSENET_BLOCKS = {
    "densenet121": (6, 12, 24, 16),
    "densenet169": (6, 12, 32, 32),
    "densenet201": (6, 12, 48, 32),
}
DENSENET_GROWTH = 32
DENSENET_BOTTLENECK = 4 * DENSENET_GROWTH  # 128
IMAGENET_CLASSES = 1000

Entry = namedtuple("Entry", "name shape trainable")
# One conv + BN + ReLU unit of Inception-ResNet-v2 (or, with has_bias, a residual "up" conv with bias
# and no BN): our prefix, input and output channels, kernel size.
Unit = namedtuple("Unit", "prefix cin cout kh kw has_bias")


def check_arch(arch):
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture '{arch}'; expected one of {', '.join(ARCHS)}")


def head_prefix(arch):
    """Name prefix of the head's Linear: 'classifier' (DenseNet) or 'classif' (Inception-ResNet-v2)."""
    check_arch(arch)
    return "classif" if arch == "inception_resnet_v2" else "classifier"


def feature_channels(arch):
    """Channels of the final feature map (input of the head)."""
    check_arch(arch)
    if arch == "inception_resnet_v2":
        return 1536
    channels = 64
    blocks = DENSENET_BLOCKS[arch]
    for index, layers in enumerate(blocks):
        channels += layers * DENSENET_GROWTH
        if index + 1 < len(blocks):
            channels //= 2
    return channels


def _bn(prefix, channels, gamma=True):
    out = []
    if gamma:
        out.append(Entry(f"{prefix}.weight", (channels,), True))
    out += [Entry(f"{prefix}.bias", (channels,), True),
            Entry(f"{prefix}.running_mean", (channels,), False),
            Entry(f"{prefix}.running_var", (channels,), False)]
    return out


def _conv(prefix, cin, cout, kh, kw):
    return Entry(f"{prefix}.weight", (cout, kh, kw, cin), True)


def densenet_backbone(arch):
    blocks = DENSENET_BLOCKS[arch]
    out = [_conv("features.conv0", 3, 64, 7, 7)] + _bn("features.norm0", 64)
    channels = 64
    for b, layers in enumerate(blocks, start=1):
        for layer in range(1, layers + 1):
            cin = channels + (layer - 1) * DENSENET_GROWTH
            p = f"features.denseblock{b}.denselayer{layer}"
            out += _bn(f"{p}.norm1", cin)
            out.append(_conv(f"{p}.conv1", cin, DENSENET_BOTTLENECK, 1, 1))
            out += _bn(f"{p}.norm2", DENSENET_BOTTLENECK)
            out.append(_conv(f"{p}.conv2", DENSENET_BOTTLENECK, DENSENET_GROWTH, 3, 3))
        channels += layers * DENSENET_GROWTH
        if b < len(blocks):
            p = f"features.transition{b}"
            out += _bn(f"{p}.norm", channels)
            out.append(_conv(f"{p}.conv", channels, channels // 2, 1, 1))
            channels //= 2
    out += _bn("features.norm5", channels)
    return out


def irv2_units():
    """Inception-ResNet-v2's convolutions in creation order: the order of timm's modules and of Keras's
    conv2d_bn() calls (keras/src/applications/inception_resnet_v2.py), so the k-th auto-named Keras
    `conv2d_N` (N sorted) is the k-th unit without bias here, excluding conv2d_7b (Keras `conv_7b`)."""
    units = []

    def unit(prefix, cin, cout, kh, kw=None):
        units.append(Unit(prefix, cin, cout, kh, kh if kw is None else kw, False))

    def up(prefix, cin, cout):
        units.append(Unit(prefix, cin, cout, 1, 1, True))

    unit("conv2d_1a", 3, 32, 3)
    unit("conv2d_2a", 32, 32, 3)
    unit("conv2d_2b", 32, 64, 3)
    unit("conv2d_3b", 64, 80, 1)
    unit("conv2d_4a", 80, 192, 3)
    unit("mixed_5b.branch0", 192, 96, 1)
    unit("mixed_5b.branch1.0", 192, 48, 1)
    unit("mixed_5b.branch1.1", 48, 64, 5)
    unit("mixed_5b.branch2.0", 192, 64, 1)
    unit("mixed_5b.branch2.1", 64, 96, 3)
    unit("mixed_5b.branch2.2", 96, 96, 3)
    unit("mixed_5b.branch3.1", 192, 64, 1)
    for i in range(10):
        p = f"repeat.{i}"
        unit(f"{p}.branch0", 320, 32, 1)
        unit(f"{p}.branch1.0", 320, 32, 1)
        unit(f"{p}.branch1.1", 32, 32, 3)
        unit(f"{p}.branch2.0", 320, 32, 1)
        unit(f"{p}.branch2.1", 32, 48, 3)
        unit(f"{p}.branch2.2", 48, 64, 3)
        up(f"{p}.conv2d", 128, 320)
    unit("mixed_6a.branch0", 320, 384, 3)
    unit("mixed_6a.branch1.0", 320, 256, 1)
    unit("mixed_6a.branch1.1", 256, 256, 3)
    unit("mixed_6a.branch1.2", 256, 384, 3)
    for i in range(20):
        p = f"repeat_1.{i}"
        unit(f"{p}.branch0", 1088, 192, 1)
        unit(f"{p}.branch1.0", 1088, 128, 1)
        unit(f"{p}.branch1.1", 128, 160, 1, 7)
        unit(f"{p}.branch1.2", 160, 192, 7, 1)
        up(f"{p}.conv2d", 384, 1088)
    unit("mixed_7a.branch0.0", 1088, 256, 1)
    unit("mixed_7a.branch0.1", 256, 384, 3)
    unit("mixed_7a.branch1.0", 1088, 256, 1)
    unit("mixed_7a.branch1.1", 256, 288, 3)
    unit("mixed_7a.branch2.0", 1088, 256, 1)
    unit("mixed_7a.branch2.1", 256, 288, 3)
    unit("mixed_7a.branch2.2", 288, 320, 3)
    for p in [f"repeat_2.{i}" for i in range(9)] + ["block8"]:
        unit(f"{p}.branch0", 2080, 192, 1)
        unit(f"{p}.branch1.0", 2080, 192, 1)
        unit(f"{p}.branch1.1", 192, 224, 1, 3)
        unit(f"{p}.branch1.2", 224, 256, 3, 1)
        up(f"{p}.conv2d", 448, 2080)
    unit("conv2d_7b", 2080, 1536, 1)
    return units


def irv2_backbone():
    out = []
    for u in irv2_units():
        if u.has_bias:
            out.append(_conv(u.prefix, u.cin, u.cout, u.kh, u.kw))
            out.append(Entry(f"{u.prefix}.bias", (u.cout,), True))
        else:
            out.append(_conv(f"{u.prefix}.conv", u.cin, u.cout, u.kh, u.kw))
            out += _bn(f"{u.prefix}.bn", u.cout, gamma=False)
    return out


def head_entries(arch, head, flatten_features=None):
    """The head's entries. For 'flatten', flatten_features (= H*W*C) fixes the Linear's in-features;
    None leaves that dimension as -1 (any positive multiple of C is accepted by `check`)."""
    if head not in HEADS:
        raise ValueError(f"unknown head '{head}'; expected one of {', '.join(HEADS)}")
    channels = feature_channels(arch)
    prefix = head_prefix(arch)
    if head == "none":
        return []
    if head == "imagenet":
        shape = (IMAGENET_CLASSES, channels)
    elif head == "gap":
        shape = (1, channels)
    else:
        shape = (1, -1 if flatten_features is None else int(flatten_features))
    return [Entry(f"{prefix}.weight", shape, True), Entry(f"{prefix}.bias", (shape[0],), True)]


def spec(arch, head, flatten_features=None):
    """Ordered [Entry] of every tensor of `arch` with `head`."""
    check_arch(arch)
    backbone = irv2_backbone() if arch == "inception_resnet_v2" else densenet_backbone(arch)
    return backbone + head_entries(arch, head, flatten_features)


def count(entries):
    """(all elements, trainable elements) of a spec."""
    total = trainable = 0
    for e in entries:
        n = 1
        for d in e.shape:
            n *= d
        total += n
        trainable += n if e.trainable else 0
    return total, trainable
