"""Converts DenseNet and Inception-ResNet-v2 weights to our safetensors (names and layouts of archs.py).

Command line:
  python -m weights_tools.convert --from keras-h5|torchvision|timm --arch ARCH --input FILE \
      [--output OUT.safetensors] [--head auto|imagenet|none|flatten|gap] [--preprocess torch|tf|study]
      [--flatten-grid HxW]

Sources:
  keras-h5     Keras legacy .h5 (the Keras applications files, with or without top, or a model of the study:
               backbone + Flatten + Dense(1)). DenseNet layers by name (conv1/conv, conv1/bn,
               conv{B}_block{L}_{0_bn,1_conv,1_bn,2_conv}, pool{T}_{bn,conv}, bn, fc1000; Keras 3 spells
               conv1_conv, conv1_bn, predictions). Inception-ResNet-v2: block35_i_conv, block17_i_conv,
               block8_i_conv, conv_7b, conv_7b_bn, predictions by name; every other conv/BN is auto-named
               conv2d_N / batch_normalization_N and is matched by creation order, i.e. by the rank of N
               (not its value: it depends on what the session had built before), to archs.irv2_units().
               Conv kernels HWIO -> OHWI, Dense kernels (in, out) -> [out, in].
  torchvision  DenseNet state dicts (.pth loaded with torch.load(weights_only=True), or .safetensors);
               old keys 'norm.1'/'conv.1'/... renamed as torchvision does; 'module.' prefixes stripped.
  timm         inception_resnet_v2 (.pth or .safetensors). timm's BN gammas must all be exactly 1 (the
               TF-slim/Keras model has none): they are checked and dropped.
Every expected tensor must be present with its shape and no unknown tensor may remain; all problems are
reported together. The output's __metadata__: arch, source, head, preprocess, bn_flavor, bn_eps, bn_momentum
(metadata()). Without --output the file is named <arch>_<keras|torchvision|timm>[_notop].safetensors
(default_output_name()), beside the input.

The function API (used by export_golden and the tests): convert_file(), keras_entries_to_ours(),
torch_state_to_ours(), check(), write().
"""
import argparse
import os
import re
import sys

import numpy as np

from weights_tools import archs, keras_h5, safetensors_io

SOURCES = ("keras-h5", "torchvision", "timm")
PREPROCESS = ("torch", "tf", "study")


class ConversionError(ValueError):
    """A problem with the input file or the request, worded for the user."""


# ---------------------------------------------------------------------------------------------------
# Layouts (each with its inverse, for weights_tools.export)
# ---------------------------------------------------------------------------------------------------

def hwio_to_ohwi(kernel):
    return np.ascontiguousarray(np.transpose(kernel, (3, 0, 1, 2)), dtype=np.float32)


def ohwi_to_hwio(weight):
    return np.ascontiguousarray(np.transpose(weight, (1, 2, 3, 0)), dtype=np.float32)


def oihw_to_ohwi(weight):
    return np.ascontiguousarray(np.transpose(weight, (0, 2, 3, 1)), dtype=np.float32)


def ohwi_to_oihw(weight):
    return np.ascontiguousarray(np.transpose(weight, (0, 3, 1, 2)), dtype=np.float32)


def _flatten_dims(weight, grid):
    """(K, C, H, W) of a flatten head's Linear weight [K, C*H*W] over a feature grid H x W."""
    h, w = grid
    k, features = weight.shape
    if features % (h * w):
        raise ConversionError(f"flatten head: {features} in-features are not a multiple of the grid {h}x{w}")
    return k, features // (h * w), h, w


def chw_flatten_to_hwc(weight, grid):
    """A Linear after a PyTorch flatten of NCHW features ([K, C*H*W], index c*H*W + h*W + w) to ours
    ([K, H*W*C], index (h*W + w)*C + c)."""
    k, c, h, w = _flatten_dims(weight, grid)
    return np.ascontiguousarray(weight.reshape(k, c, h, w).transpose(0, 2, 3, 1).reshape(k, c * h * w))


def hwc_flatten_to_chw(weight, grid):
    """The inverse of chw_flatten_to_hwc: our flatten head's Linear ([K, H*W*C]) for a PyTorch flatten of
    NCHW features ([K, C*H*W])."""
    k, c, h, w = _flatten_dims(weight, grid)
    return np.ascontiguousarray(weight.reshape(k, h, w, c).transpose(0, 3, 1, 2).reshape(k, c * h * w))


# ---------------------------------------------------------------------------------------------------
# Keras
# ---------------------------------------------------------------------------------------------------

_KERAS_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
_KERAS_TOPS = ("fc1000", "predictions")


def _keras_densenet_layer(arch, layer):
    """Our module prefix for a Keras DenseNet layer name, or None."""
    fixed = {"conv1/conv": "features.conv0", "conv1_conv": "features.conv0",
             "conv1/bn": "features.norm0", "conv1_bn": "features.norm0", "bn": "features.norm5"}
    if layer in fixed:
        return fixed[layer]
    m = re.fullmatch(r"conv(\d)_block(\d+)_(0_bn|1_conv|1_bn|2_conv)", layer)
    if m:
        part = {"0_bn": "norm1", "1_conv": "conv1", "1_bn": "norm2", "2_conv": "conv2"}[m.group(3)]
        return f"features.denseblock{int(m.group(1)) - 1}.denselayer{int(m.group(2))}.{part}"
    m = re.fullmatch(r"pool(\d)_(bn|conv)", layer)
    if m:
        return f"features.transition{int(m.group(1)) - 1}.{'norm' if m.group(2) == 'bn' else 'conv'}"
    return None


def _auto_number(layer, base):
    m = re.fullmatch(base + r"(?:_(\d+))?", layer)
    if not m:
        return None
    return int(m.group(1)) if m.group(1) else 0


def _keras_irv2_layer_map(layers):
    """{keras layer: our module prefix} for Inception-ResNet-v2, given every layer name with weights."""
    units = archs.irv2_units()
    plain = [u for u in units if not u.has_bias and u.prefix != "conv2d_7b"]
    mapping = {}
    convs = sorted((n, layer) for layer in layers if (n := _auto_number(layer, "conv2d")) is not None)
    norms = sorted((n, layer) for layer in layers
                   if (n := _auto_number(layer, "batch_normalization")) is not None)
    for what, found in (("conv2d_N", convs), ("batch_normalization_N", norms)):
        if found and len(found) != len(plain):
            raise ConversionError(
                f"the file has {len(found)} auto-named {what} layers; Inception-ResNet-v2 has {len(plain)} "
                "(every conv/BN except the named block*_conv and conv_7b): wrong architecture or a "
                "truncated file?")
    for unit, (_, layer) in zip(plain, convs):
        mapping[layer] = f"{unit.prefix}.conv"
    for unit, (_, layer) in zip(plain, norms):
        mapping[layer] = f"{unit.prefix}.bn"
    blocks = {"block35": "repeat", "block17": "repeat_1", "block8": "repeat_2"}
    for layer in layers:
        m = re.fullmatch(r"(block35|block17|block8)_(\d+)_conv", layer)
        if m:
            index = int(m.group(2))
            if m.group(1) == "block8" and index == 10:
                mapping[layer] = "block8.conv2d"
            else:
                mapping[layer] = f"{blocks[m.group(1)]}.{index - 1}.conv2d"
    mapping["conv_7b"] = "conv2d_7b.conv"
    mapping["conv_7b_bn"] = "conv2d_7b.bn"
    return mapping


def detect_keras_arch(layers):
    """A guess of the architecture of a Keras file from its layer names (for error hints), or None."""
    layers = set(layers)
    if any(layer.startswith("block35_") for layer in layers):
        return "inception_resnet_v2"
    counts = [sum(1 for layer in layers if re.fullmatch(rf"conv{b}_block\d+_1_conv", layer)) for b in range(2, 6)]
    for arch, blocks in archs.DENSENET_BLOCKS.items():
        if tuple(counts) == blocks:
            return arch
    return None


def _keras_resolver(arch, layer_names):
    """A function (layer, kind) -> (our name, kind of value) or None for layers outside the backbone."""
    archs.check_arch(arch)
    if arch == "inception_resnet_v2":
        irv2_map = _keras_irv2_layer_map(set(layer_names))
        prefix_of = irv2_map.get
    else:
        def prefix_of(layer):
            return _keras_densenet_layer(arch, layer)

    def resolve(layer, kind):
        prefix = prefix_of(layer)
        if prefix is None:
            return None
        if kind == "kernel":
            return f"{prefix}.weight"
        if kind == "bias":
            return f"{prefix}.bias"
        if kind in _KERAS_BN:
            return f"{prefix}.{_KERAS_BN[kind]}"
        return f"{prefix}.<unknown weight '{kind}'>"
    return resolve


def keras_names(arch, keys):
    """Our names of Keras (layer, kind) keys of the backbone (all keys of one model, so that
    Inception-ResNet-v2's auto-named layers can be ranked)."""
    resolve = _keras_resolver(arch, [layer for layer, _ in keys])
    names = [resolve(layer, kind) for layer, kind in keys]
    unknown = [key for key, name in zip(keys, names) if name is None]
    if unknown:
        raise ConversionError(f"not backbone layers of {arch}: {unknown[:10]}")
    return names


def keras_entries_to_ours(entries, arch, head="auto"):
    """Maps Keras (layer, kind, array) entries to ({our name: array} in entry order, head used, origin).

    head: 'auto' picks what the file holds (imagenet if fc1000/predictions is there, flatten or gap for
    another Dense layer, none without). Completeness is checked by check()."""
    layer_names = [layer for layer, _, _ in entries]
    is_irv2 = arch == "inception_resnet_v2"
    resolve = _keras_resolver(arch, layer_names)
    out, origin, problems, head_layers = {}, {}, [], {}
    for layer, kind, array in entries:
        name = resolve(layer, kind)
        if name is None:
            if kind in ("kernel", "bias") and (layer in _KERAS_TOPS or array.ndim in (1, 2)):
                head_layers.setdefault(layer, {})[kind] = array
                continue
            problems.append(f"unknown layer '{layer}' (weight '{kind}') for {arch}")
            continue
        if kind == "kernel":
            if array.ndim != 4:
                problems.append(f"layer '{layer}': kernel of shape {array.shape} is not a 4-D conv kernel")
                continue
            value = hwio_to_ohwi(array)
        elif kind == "bias" or kind in _KERAS_BN:
            if is_irv2 and kind == "gamma":
                if not np.all(array == 1.0):
                    problems.append(f"layer '{layer}': gamma is not all ones (max |gamma - 1| = "
                                    f"{float(np.max(np.abs(array - 1))):.3g}); our Inception-ResNet-v2 BN has "
                                    "no scale (Keras scale=False)")
                continue
            value = array
        else:
            problems.append(f"layer '{layer}': unknown weight '{kind}'")
            continue
        if name in out:
            problems.append(f"'{name}' comes from two layers: {origin[name]} and Keras layer '{layer}' {kind}")
            continue
        out[name] = np.ascontiguousarray(value, dtype=np.float32)
        origin[name] = f"Keras layer '{layer}' {kind}"
    used_head = _keras_head(arch, head, head_layers, out, origin, problems)
    if problems:
        raise ConversionError(_problem_report(problems, arch, detect_keras_arch(layer_names)))
    return out, used_head, origin


def _keras_head(arch, head, head_layers, out, origin, problems):
    channels = archs.feature_channels(arch)
    tops = [layer for layer in head_layers if layer in _KERAS_TOPS]
    others = [layer for layer in head_layers if layer not in _KERAS_TOPS]
    if len(others) > 1:
        problems.append(f"several Dense layers that could be the head: {', '.join(others)}")
        return head
    if head == "auto":
        if tops:
            head = "imagenet"
        elif others:
            kernel = head_layers[others[0]].get("kernel")
            head = "gap" if kernel is not None and kernel.shape[0] == channels else "flatten"
        else:
            head = "none"
    if head == "none":
        return head
    candidates = tops if head == "imagenet" else others
    if not candidates:
        problems.append(f"head '{head}' requested but the file has no such layer "
                        f"({'fc1000/predictions' if head == 'imagenet' else 'a Dense layer after the backbone'}); "
                        "use --head none for a file without top")
        return head
    layer = candidates[0]
    weights = head_layers[layer]
    if set(weights) != {"kernel", "bias"}:
        problems.append(f"head layer '{layer}' must have kernel and bias, has {sorted(weights)}")
        return head
    kernel = weights["kernel"]
    if kernel.ndim != 2:
        problems.append(f"head layer '{layer}': kernel of shape {kernel.shape} is not 2-D")
        return head
    prefix = archs.head_prefix(arch)
    out[f"{prefix}.weight"] = np.ascontiguousarray(kernel.T, dtype=np.float32)
    out[f"{prefix}.bias"] = np.ascontiguousarray(weights["bias"], dtype=np.float32)
    origin[f"{prefix}.weight"] = f"Keras layer '{layer}' kernel (transposed)"
    origin[f"{prefix}.bias"] = f"Keras layer '{layer}' bias"
    return head


# ---------------------------------------------------------------------------------------------------
# PyTorch (torchvision, timm)
# ---------------------------------------------------------------------------------------------------

_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def detect_torch_arch(names):
    names = set(names)
    if any(n.startswith("repeat_1.") for n in names):
        return "inception_resnet_v2"
    counts = []
    for b in range(1, 5):
        layers = {m.group(1) for n in names if (m := re.match(rf"features\.denseblock{b}\.denselayer(\d+)\.", n))}
        counts.append(len(layers))
    for arch, blocks in archs.DENSENET_BLOCKS.items():
        if tuple(counts) == blocks:
            return arch
    return None


def torch_state_to_ours(state, arch, source, head="auto", flatten_grid=None, what="weights"):
    """Maps a torchvision/timm state dict ({name: numpy array}) to ({our name: array}, head used, origin).

    what='weights' checks timm's BN gammas are ones and drops them; what='grads' drops their gradients
    (a gamma that is not trained has none to compare)."""
    archs.check_arch(arch)
    if source not in ("torchvision", "timm"):
        raise ConversionError(f"unknown PyTorch source '{source}'")
    if (arch == "inception_resnet_v2") != (source == "timm"):
        raise ConversionError(f"source '{source}' does not provide {arch}: use torchvision for DenseNet, "
                              "timm for inception_resnet_v2")
    out, origin, problems = {}, {}, []
    prefix = archs.head_prefix(arch)
    for key, array in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if name.endswith("num_batches_tracked"):
            continue
        if source == "torchvision":
            m = _OLD_DENSENET_KEY.match(name)
            if m:
                name = m.group(1) + m.group(2)
        if source == "timm" and name.endswith(".bn.weight"):
            if what == "weights" and not np.all(array == 1.0):
                problems.append(f"'{key}': BN gamma is not all ones (max |gamma - 1| = "
                                f"{float(np.max(np.abs(array - 1))):.3g}); our Inception-ResNet-v2 BN has no "
                                "scale (TF-slim/Keras scale=False), so this model cannot be represented")
            continue
        array = np.asarray(array, dtype=np.float32)
        if array.ndim == 4:
            array = oihw_to_ohwi(array)
            origin_note = f"'{key}' (OIHW -> OHWI)"
        else:
            origin_note = f"'{key}'"
        out[name] = np.ascontiguousarray(array)
        origin[name] = origin_note
    channels = archs.feature_channels(arch)
    weight = out.get(f"{prefix}.weight")
    if head == "auto":
        if weight is None:
            head = "none"
        elif weight.shape[0] == archs.IMAGENET_CLASSES and weight.shape[1] == channels:
            head = "imagenet"
        elif weight.shape[1] == channels:
            head = "gap"
        else:
            head = "flatten"
    if head == "none":
        out.pop(f"{prefix}.weight", None)
        out.pop(f"{prefix}.bias", None)
    elif head == "flatten" and weight is not None and weight.ndim == 2:
        if flatten_grid is None:
            problems.append(f"'{prefix}.weight' is a flatten head ({weight.shape[1]} in-features): PyTorch "
                            "flattens NCHW, so give its grid (--flatten-grid HxW) to reorder it to NHWC")
        else:
            out[f"{prefix}.weight"] = chw_flatten_to_hwc(weight, flatten_grid)
    if problems:
        raise ConversionError(_problem_report(problems, arch, detect_torch_arch(state)))
    return out, head, origin


def load_torch_file(path):
    """A state dict {name: numpy array} from a .pth/.pt/.bin (torch.load with weights_only=True, never
    arbitrary unpickling) or a .safetensors file."""
    if not os.path.exists(path):
        raise ConversionError(f"{path}: no such file")
    if path.endswith(".safetensors"):
        try:
            tensors, _ = safetensors_io.read(path, to_float32=False)
        except safetensors_io.SafetensorsError as e:
            raise ConversionError(str(e)) from None
        return tensors
    try:
        import torch
    except ImportError:
        raise ConversionError("reading .pth files needs torch: apt-get install python3-torch (or use a "
                              ".safetensors file)") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, pickle errors, EOFError, ... for bad files
        raise ConversionError(f"{path}: cannot load as a PyTorch state dict (truncated or corrupt file, or not "
                              f"a state dict of tensors): {type(e).__name__}: {e}") from None
    for wrapper in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict):
        raise ConversionError(f"{path}: holds a {type(state).__name__}, not a state dict")
    out = {}
    for key, value in state.items():
        if not hasattr(value, "detach"):
            raise ConversionError(f"{path}: entry '{key}' is a {type(value).__name__}, not a tensor")
        out[key] = value.detach().cpu().numpy()
    return out


# ---------------------------------------------------------------------------------------------------
# Checking, metadata, writing
# ---------------------------------------------------------------------------------------------------

def _problem_report(problems, arch, detected, limit=12):
    lines = problems[:limit]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more")
    hint = ""
    if detected and detected != arch:
        hint = f"the file looks like {detected}, not {arch}: check --arch. "
    elif detected is None:
        hint = f"the file does not look like any of {', '.join(archs.ARCHS)}. "
    return f"{hint}{len(problems)} problem(s) converting to {arch}:\n  " + "\n  ".join(lines)


def check(tensors, arch, head, require="all", origin=None, detected=None):
    """Checks {our name: array} against archs.spec: every required name present with its shape, nothing
    unknown. require: 'all', 'trainable' or 'buffers'. Raises ConversionError listing every problem."""
    origin = origin or {}
    entries = archs.spec(arch, head)
    if require == "trainable":
        entries = [e for e in entries if e.trainable]
    elif require == "buffers":
        entries = [e for e in entries if not e.trainable]
    elif require != "all":
        raise ValueError(f"require must be all, trainable or buffers, not {require}")
    problems = []
    expected = {e.name: e.shape for e in entries}
    channels = archs.feature_channels(arch)
    for e in entries:
        if e.name not in tensors:
            problems.append(f"missing '{e.name}' {tuple(e.shape)}")
            continue
        shape = tuple(tensors[e.name].shape)
        want = tuple(e.shape)
        if -1 in want:  # flatten head: in-features must be a positive multiple of the channels
            ok = len(shape) == 2 and shape[0] == want[0] and shape[1] > 0 and shape[1] % channels == 0
            want = (want[0], f"k*{channels}")
        else:
            ok = shape == want
        if not ok:
            problems.append(f"'{e.name}' has shape {shape}, expected {want}"
                            + (f" (from {origin[e.name]})" if e.name in origin else ""))
    for name in tensors:
        if name not in expected:
            problems.append(f"unexpected '{name}' {tuple(tensors[name].shape)}"
                            + (f" (from {origin[name]})" if name in origin else ""))
    if problems:
        raise ConversionError(_problem_report(problems, arch, detected))


def ordered(tensors, arch, head):
    """The tensors in archs.spec order (the reference framework's state-dict order)."""
    names = [e.name for e in archs.spec(arch, head)]
    return {name: tensors[name] for name in names if name in tensors}


def default_preprocess(arch, head):
    if head == "flatten":
        return "study"  # a Flatten + Dense(1) head is the study's model, trained on x/255 inputs
    return "tf" if arch == "inception_resnet_v2" else "torch"


# The batch norm the weights were trained with, in its framework's own spelling (docs/reference.md section 3):
# eps per architecture, and the momentum: Keras's is the share the running statistics keep (0.99), PyTorch's
# the share of each new batch (0.1). The trainer checks --flavor against bn_flavor (experiment/weights_check.h).
_BN_EPS = {("keras", "densenet"): 1.001e-5, ("keras", "inception_resnet_v2"): 1e-3,
           ("torch", "densenet"): 1e-5, ("torch", "inception_resnet_v2"): 1e-3}
_BN_MOMENTUM = {"keras": 0.99, "torch": 0.1}


def metadata(arch, source, head, preprocess=None):
    """The output's __metadata__: arch, source, head, preprocess (the inputs the weights expect), and the
    batch norm they were trained with: bn_flavor (keras | torch), bn_eps, bn_momentum."""
    if preprocess is not None and preprocess not in PREPROCESS:
        raise ConversionError(f"unknown preprocess '{preprocess}'; expected one of {', '.join(PREPROCESS)}")
    flavor = "keras" if source == "keras-h5" else "torch"
    family = "inception_resnet_v2" if arch == "inception_resnet_v2" else "densenet"
    return {"arch": arch, "source": source, "head": head,
            "preprocess": preprocess or default_preprocess(arch, head),
            "bn_flavor": flavor, "bn_eps": repr(_BN_EPS[(flavor, family)]),
            "bn_momentum": repr(_BN_MOMENTUM[flavor])}


_SOURCE_TAGS = {"keras-h5": "keras", "torchvision": "torchvision", "timm": "timm"}


def default_output_name(arch, source, head):
    """The converted file's name when --output is not given: <arch>_<source>[_<head>].safetensors, e.g.
    densenet201_keras_notop.safetensors, inception_resnet_v2_timm.safetensors (an ImageNet top adds
    nothing; a file without one says _notop, as Keras's files do)."""
    suffix = {"imagenet": "", "none": "_notop"}.get(head, f"_{head}")
    return f"{arch}_{_SOURCE_TAGS[source]}{suffix}.safetensors"


def convert_file(source, arch, path, head="auto", preprocess=None, flatten_grid=None):
    """Converts one file; returns (tensors in spec order, metadata). Raises ConversionError."""
    if source not in SOURCES:
        raise ConversionError(f"unknown source '{source}'; expected one of {', '.join(SOURCES)}")
    try:
        archs.check_arch(arch)
        if head != "auto":
            archs.head_entries(arch, head)
    except ValueError as e:
        raise ConversionError(str(e)) from None
    if source == "keras-h5":
        try:
            entries, _ = keras_h5.read(path)
        except keras_h5.KerasFileError as e:
            raise ConversionError(str(e)) from None
        tensors, head, origin = keras_entries_to_ours(entries, arch, head)
        detected = detect_keras_arch([layer for layer, _, _ in entries])
    else:
        state = load_torch_file(path)
        tensors, head, origin = torch_state_to_ours(state, arch, source, head, flatten_grid=flatten_grid)
        detected = detect_torch_arch(state)
    check(tensors, arch, head, origin=origin, detected=detected)
    return ordered(tensors, arch, head), metadata(arch, source, head, preprocess)


def write(path, tensors, meta):
    safetensors_io.write(path, tensors, meta)


def _parse_grid(text):
    m = re.fullmatch(r"(\d+)x(\d+)", text or "")
    if not m:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 7x7, got '{text}'")
    return int(m.group(1)), int(m.group(2))


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m weights_tools.convert",
        description="Convert Keras .h5 / torchvision / timm weights to our safetensors (NHWC, OHWI).")
    parser.add_argument("--from", dest="source", required=True, choices=SOURCES)
    parser.add_argument("--arch", required=True, choices=archs.ARCHS)
    parser.add_argument("--input", required=True, help="the source file (.h5, .pth or .safetensors)")
    parser.add_argument("--output",
                        help="the safetensors file to write (default: <arch>_<keras|torchvision|timm>[_notop]"
                             ".safetensors beside --input, e.g. densenet201_keras_notop.safetensors)")
    parser.add_argument("--head", default="auto", choices=("auto",) + archs.HEADS,
                        help="auto: what the file holds; none drops a head (backbone only)")
    parser.add_argument("--preprocess", choices=PREPROCESS,
                        help="input preprocessing recorded in the metadata (default: torch for DenseNet, tf "
                             "for Inception-ResNet-v2, study for a flatten head)")
    parser.add_argument("--flatten-grid", type=_parse_grid,
                        help="HxW of the feature map a PyTorch flatten head was trained on (NCHW order)")
    args = parser.parse_args(argv)
    try:
        tensors, meta = convert_file(args.source, args.arch, args.input, args.head, args.preprocess,
                                     args.flatten_grid)
        if args.output is None:
            args.output = os.path.join(os.path.dirname(args.input),
                                       default_output_name(args.arch, args.source, meta["head"]))
        write(args.output, tensors, meta)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    total = sum(a.size for a in tensors.values())
    print(f"wrote {args.output}: {len(tensors)} tensors, {total:,} values; "
          + ", ".join(f"{k}={v}" for k, v in meta.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
