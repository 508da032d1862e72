"""Exports a checkpoint of ours back to the frameworks the weights came from, and to ONNX.

  python -m weights_tools.export --checkpoint C --to torchvision|timm|keras-h5|onnx --output F
      [--input-size S]

C: a training checkpoint (checkpoints/*.safetensors of train_densenet / train_irv2: tensors "model.<name>",
metadata arch, head, flavor, input_size, preprocess) or a weights file of ours (weights_tools.convert's
output: our names, metadata arch, head, bn_flavor; give --input-size where Keras or ONNX needs one).

Targets (docs/weights.md, "Export"):
  torchvision  DenseNet: F (a state dict, torch.save; loads with weights_only=True) and F's .py sibling, a
               self-contained loader (weights_tools/export_loader.py with the model's settings) that
               rebuilds torchvision's DenseNet with our head and loads F: `import F; model = F.load()`.
  timm         Inception-ResNet-v2: the same for timm's inception_resnet_v2.
  keras-h5     Keras 3: F.h5, the weights in Keras's legacy HDF5 layout (that of the study's published
               files), and F.py, the loader that builds the study's model (keras.applications' DenseNet /
               InceptionResNetV2 without top in Sequential([base, Flatten() | GlobalAveragePooling2D(),
               Dense(1, sigmoid)])) and calls model.load_weights(F.h5). Not a whole-model file: Keras 3
               cannot load InceptionResNetV2 from one (its CustomScaleLayer is not registered for
               deserialisation). The Keras model outputs the probability (sigmoid of our logit).
  onnx         the torchvision / timm model through torch.onnx.export (TorchScript exporter, opset 17),
               input "input" NCHW [N, 3, S, S] (N dynamic), output "logits" [N, 1]; metadata_props carry
               arch, head, flavor, input_size, preprocess.
Inputs are preprocessed as the checkpoint's `preprocess` says (docs/weights.md); PyTorch and ONNX take NCHW,
Keras NHWC.

One name map serves both directions: torchvision's and timm's names are ours (the exporter starts from the
framework model's own state dict and fills it in), Keras's come from convert.keras_names, the converter's
own table. Every export is checked by converting its result back with weights_tools.convert's functions:
the weights must come back bit for bit.
"""
import argparse
import math
import os
import sys

import numpy as np

from weights_tools import archs, convert, export_loader, keras_h5, safetensors_io

TARGETS = ("torchvision", "timm", "keras-h5", "onnx")
CHECKPOINT_FORMAT = "mura-engine-checkpoint-v1"
ONNX_OPSET = 17  # the newest that torch 1.13's TorchScript-based exporter writes


class ExportError(ValueError):
    """A problem with the checkpoint or the request, worded for the user."""


def framework_of(arch):
    """The PyTorch framework whose model and names `arch` uses: timm for Inception-ResNet-v2, else torchvision."""
    return "timm" if arch == "inception_resnet_v2" else "torchvision"


# ---------------------------------------------------------------------------------------------------
# Reading a checkpoint
# ---------------------------------------------------------------------------------------------------

def read_checkpoint(path, input_size=None):
    """({our name: float32 array}, settings) of a training checkpoint or a weights file of ours.
    settings: arch, head, flavor, input_size (None if unknown), preprocess, grid ((H, W) of a flatten head's
    feature map, else None)."""
    try:
        tensors, meta = safetensors_io.read(path, to_float32=True)
    except safetensors_io.SafetensorsError as e:
        raise ExportError(str(e)) from None
    if meta.get("format") == CHECKPOINT_FORMAT:
        tensors = {name[len("model."):]: value for name, value in tensors.items() if name.startswith("model.")}
        flavor = meta.get("flavor")
    elif "format" in meta:
        raise ExportError(f"{path}: unknown format '{meta['format']}' (expected {CHECKPOINT_FORMAT} or a weights "
                          "file of weights_tools.convert)")
    else:
        flavor = meta.get("bn_flavor")
    arch, head = meta.get("arch"), meta.get("head")
    if arch not in archs.ARCHS:
        raise ExportError(f"{path}: arch '{arch}' cannot be exported: the frameworks have "
                          f"{', '.join(archs.ARCHS)}")
    if head not in ("flatten", "gap", "imagenet"):
        raise ExportError(f"{path}: head '{head}' cannot be exported (flatten, gap or imagenet)")
    if flavor not in ("keras", "torch"):
        raise ExportError(f"{path}: BN flavor '{flavor}' is not keras or torch")
    if input_size is None and meta.get("input_size"):
        input_size = int(meta["input_size"])
    try:
        convert.check(tensors, arch, head)
    except convert.ConversionError as e:
        raise ExportError(f"{path}: {e}") from None
    grid = None
    if head == "flatten":
        cells = tensors[f"{archs.head_prefix(arch)}.weight"].shape[1] // archs.feature_channels(arch)
        side = math.isqrt(cells)
        if side * side != cells:
            raise ExportError(f"{path}: the flatten head covers {cells} feature cells, not a square grid")
        grid = (side, side)
    settings = {"arch": arch, "head": head, "flavor": flavor, "input_size": input_size,
                "preprocess": meta.get("preprocess", convert.default_preprocess(arch, head)), "grid": grid}
    return tensors, settings


def _require_input_size(settings, target):
    if not settings["input_size"]:
        raise ExportError(f"--to {target} needs the input size: give --input-size (a checkpoint records it)")
    return settings["input_size"]


def _same(back, tensors, what):
    """Raises unless `back` (the export converted back to ours) equals `tensors` bit for bit."""
    problems = sorted(set(back) ^ set(tensors))
    problems += [name for name in tensors if name in back and not np.array_equal(back[name], tensors[name])]
    if problems:
        raise RuntimeError(f"the {what} export does not convert back to the checkpoint: {problems[:5]}")


# ---------------------------------------------------------------------------------------------------
# torchvision / timm
# ---------------------------------------------------------------------------------------------------

def _loader_settings(settings, framework):
    grid = settings["grid"]
    return {"framework": framework, "arch": settings["arch"], "head": settings["head"],
            "grid": list(grid) if grid else None, "flavor": settings["flavor"], "input_size": settings["input_size"]}


def torch_model(tensors, settings):
    """The torchvision / timm model (export_loader.build) holding our weights, in eval mode."""
    import torch
    arch, head = settings["arch"], settings["head"]
    framework = framework_of(arch)
    model = export_loader.build(**_loader_settings(settings, framework))
    state = model.state_dict()
    head_weight = f"{archs.head_prefix(arch)}.weight"
    missing = []
    for key, reference in state.items():
        if key in tensors:
            value = tensors[key]
            if value.ndim == 4:
                value = convert.ohwi_to_oihw(value)
            elif key == head_weight and head == "flatten":
                value = convert.hwc_flatten_to_chw(value, settings["grid"])
        elif key.endswith("num_batches_tracked"):
            continue
        elif framework == "timm" and key.endswith(".bn.weight"):
            value = np.ones(tuple(reference.shape), np.float32)  # TF-slim's BN has no scale: gamma = 1
        else:
            missing.append(key)
            continue
        if tuple(value.shape) != tuple(reference.shape):
            raise RuntimeError(f"'{key}': ours {value.shape}, {framework}'s {tuple(reference.shape)}")
        state[key] = torch.from_numpy(np.ascontiguousarray(value))
    unused = sorted(set(tensors) - set(state))
    if missing or unused:
        raise RuntimeError(f"{framework} {arch}: no value for {missing[:5]}, unused {unused[:5]}")
    model.load_state_dict(state)
    back, _, _ = convert.torch_state_to_ours({k: v.numpy() for k, v in state.items()}, arch, framework, head,
                                             flatten_grid=settings["grid"])
    _same(back, tensors, framework)
    return model.eval()


def loader_module_path(output):
    """The loader module written next to the weights: F.pt or F.h5 -> F.py."""
    return os.path.splitext(output)[0] + ".py"


def write_loader_module(output, settings, framework, source):
    """export_loader.py with SETTINGS, WEIGHTS and PREPROCESS filled in, at loader_module_path(output)."""
    with open(export_loader.__file__, encoding="utf-8") as f:
        template = f.read()
    module = (f"{template}\n\n# Filled in by python -m weights_tools.export from {os.path.basename(source)}\n"
              f"SETTINGS = {_loader_settings(settings, framework)!r}\n"
              f"WEIGHTS = {os.path.basename(output)!r}\n"
              f"PREPROCESS = {settings['preprocess']!r}\n")
    _atomic(loader_module_path(output), lambda path: _write_text(path, module))
    return loader_module_path(output)


def export_torch(tensors, settings, output, target, source=""):
    """Writes the state dict `output` and its loader module (loader_module_path)."""
    import torch
    framework = framework_of(settings["arch"])
    if target != framework:
        raise ExportError(f"{settings['arch']} exports to {framework}, not {target} (torchvision has the "
                          "DenseNets, timm Inception-ResNet-v2)")
    if not output.endswith((".pt", ".pth")):
        raise ExportError(f"{output}: name the state dict F.pt (its loader module is written to F.py)")
    model = torch_model(tensors, settings)
    _atomic(output, lambda path: torch.save(model.state_dict(), path))
    return [output, write_loader_module(output, settings, framework, source)]


def export_onnx(tensors, settings, output):
    import torch
    size = _require_input_size(settings, "onnx")
    model = torch_model(tensors, settings)
    example = torch.zeros(1, 3, size, size)

    def write(path):
        with torch.no_grad():
            torch.onnx.export(model, example, path, opset_version=ONNX_OPSET, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                              do_constant_folding=True)
        try:
            import onnx
        except ImportError:
            return
        graph = onnx.load(path)
        for key in ("arch", "head", "flavor", "input_size", "preprocess"):
            graph.metadata_props.add(key=key, value=str(settings[key]))
        graph.metadata_props.add(key="input_layout", value="NCHW")
        onnx.checker.check_model(graph)
        onnx.save(graph, path)
    _atomic(output, write)
    return [output]


# ---------------------------------------------------------------------------------------------------
# Keras
# ---------------------------------------------------------------------------------------------------

def _keras_key(variable):
    """(layer, kind) of a Keras 3 variable, from its path '[model/]layer/kind'."""
    parts = variable.path.split("/")
    return parts[-2], parts[-1]


def keras_model(tensors, settings):
    """The study's Keras model (export_loader.build_keras) holding our weights."""
    arch, head, size = settings["arch"], settings["head"], _require_input_size(settings, "keras-h5")
    model = export_loader.build(**_loader_settings(settings, "keras"))
    base = model if head == "imagenet" else model.layers[0]
    if head == "flatten" and tuple(base.output.shape[1:3]) != tuple(settings["grid"]):
        raise ExportError(f"the flatten head was trained on a {settings['grid']} feature grid, but {arch} at "
                          f"{size}x{size} has {tuple(base.output.shape[1:3])}: check --input-size")
    dense = model.layers[-1]
    head_ids = {id(v) for v in dense.weights}
    backbone = [v for v in model.weights if id(v) not in head_ids]
    names = convert.keras_names(arch, [_keras_key(v) for v in backbone])  # the converter's own table
    for variable, name in zip(backbone, names):
        value = tensors[name]
        variable.assign(convert.ohwi_to_hwio(value) if value.ndim == 4 else value)
    prefix = archs.head_prefix(arch)
    dense.kernel.assign(np.ascontiguousarray(tensors[f"{prefix}.weight"].T))  # [out, in] -> (in, out)
    dense.bias.assign(tensors[f"{prefix}.bias"])
    back, _, _ = convert.keras_entries_to_ours(keras_entries(model), arch, head)
    _same(back, tensors, "Keras")
    return model


def keras_entries(model):
    """(layer, kind, array) of every variable of a Keras model, in file order."""
    return [(*_keras_key(v), np.asarray(v.value, dtype=np.float32)) for v in model.weights]


def write_keras_weights(path, model):
    """The model's weights in Keras's legacy HDF5 layout (weights_tools.keras_h5.write), which Keras 3's
    model.load_weights("F.h5") reads layer by layer in order, whatever the layers are named: a group per
    layer with weights (a nested application is one group), its variables in Keras's legacy order
    (trainable, then non-trainable), named '<inner layer>/<kind>:0'."""
    import keras
    layers = []
    for layer in model.layers:
        variables = layer.trainable_weights + layer.non_trainable_weights
        if variables:
            layers.append((layer.name, [(f"{'/'.join(_keras_key(v))}:0", np.asarray(v.value, dtype=np.float32))
                                        for v in variables]))
    keras_h5.write(path, layers, backend=keras.backend.backend(), keras_version=keras.__version__)


def export_keras(tensors, settings, output, source=""):
    """Writes the weights `output` (F.h5) and its loader module (F.py)."""
    if not output.endswith(".h5") or output.endswith(".weights.h5"):
        raise ExportError(f"{output}: name the Keras weights F.h5 (legacy HDF5 layout; its loader module is "
                          "written to F.py)")
    model = keras_model(tensors, settings)
    _atomic(output, lambda path: write_keras_weights(path, model))
    return [output, write_loader_module(output, settings, "keras", source)]


# ---------------------------------------------------------------------------------------------------

def _write_text(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _atomic(path, write):
    """write(temporary path), then renamed over `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def export(checkpoint, target, output, input_size=None):
    """Exports `checkpoint` to `target`; returns the files written. Raises ExportError for a user's mistake."""
    if target not in TARGETS:
        raise ExportError(f"unknown target '{target}'; expected one of {', '.join(TARGETS)}")
    tensors, settings = read_checkpoint(checkpoint, input_size)
    if target in ("torchvision", "timm"):
        return export_torch(tensors, settings, output, target, checkpoint)
    if target == "onnx":
        return export_onnx(tensors, settings, output)
    return export_keras(tensors, settings, output, checkpoint)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m weights_tools.export",
        description="Export a checkpoint of ours to torchvision / timm (state dict) or Keras 3 (legacy HDF5 "
                    "weights), each with a loader module, or to ONNX.")
    parser.add_argument("--checkpoint", required=True, help="a training checkpoint or a weights file of ours")
    parser.add_argument("--to", dest="target", required=True, choices=TARGETS)
    parser.add_argument("--output", required=True,
                        help="F.pt (torchvision/timm) or F.h5 (Keras), each with its loader F.py beside it; F.onnx")
    parser.add_argument("--input-size", type=int, help="input size for Keras / ONNX (default: the checkpoint's)")
    args = parser.parse_args(argv)
    if args.target == "keras-h5":
        os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        written = export(args.checkpoint, args.target, args.output, args.input_size)
    except (ExportError, convert.ConversionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
