"""End-to-end check of weights_tools.export (run by tests/cpu/test_experiment_export.cpp):

  python -m weights_tools.export_check --work DIR CHECKPOINT... [--targets torchvision,timm,keras-h5,onnx]

Each CHECKPOINT (ours, X.safetensors) has X.expected.safetensors beside it: "input" (NHWC [N, S, S, 3]) and
"logits" (our eval logits on it). For each target that the checkpoint's net has (torchvision or timm by
architecture, keras-h5, onnx) the checkpoint is exported into DIR, loaded by the framework itself (the
emitted loader module: torchvision / timm load_state_dict, Keras model.load_weights; an onnxruntime
session), run on the
input (NCHW for PyTorch and ONNX), and its logits compared with ours: relative L2 error
||theirs - ours|| / ||ours|| within TOLERANCE. The written torchvision / timm / Keras files are also
converted back with weights_tools.convert: the checkpoint's weights must come back bit for bit. Prints one
line per export; exits 1 if any fails.
"""
import argparse
import importlib.util
import os
import sys
import time

import numpy as np

# LLVM optimisation level 0 roughly halves XLA's compile time of the Keras forward pass; same arithmetic.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
os.environ.setdefault("KERAS_BACKEND", "jax")

from weights_tools import convert, export, safetensors_io  # noqa: E402

TOLERANCE = {"torchvision": 1e-5, "timm": 1e-5, "keras-h5": 1e-5, "onnx": 1e-4}
SUFFIX = {"torchvision": ".pt", "timm": ".pt", "keras-h5": ".h5", "onnx": ".onnx"}


def relative_l2(theirs, ours):
    theirs, ours = np.asarray(theirs, np.float64), np.asarray(ours, np.float64)
    return float(np.linalg.norm(theirs - ours) / max(np.linalg.norm(ours), 1e-30))


def load_module(path):
    """The loader module that the export wrote next to the weights, imported as a user would."""
    spec = importlib.util.spec_from_file_location(f"exported_{os.getpid()}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_torch(files, x_nhwc):
    import torch
    model = load_module(files[1]).load()
    with torch.no_grad():
        return model(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy())).numpy()


def torch_float64(files, x_nhwc):
    """The exported PyTorch model's logits in float64: the truth that both float32 results are judged by."""
    import torch
    model = load_module(files[1]).load().double()
    with torch.no_grad():
        return model(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).astype(np.float64))).numpy()


def run_keras(files, x_nhwc):
    import jax
    import keras
    model = load_module(files[1]).load()
    dense = model.layers[-1]
    if dense.activation is not keras.activations.sigmoid:
        raise AssertionError(f"the Keras model ends in {dense.activation}, not the study's sigmoid")
    dense.activation = keras.activations.linear  # its logits, to compare with ours
    forward = jax.jit(lambda trainable, other, x: model.stateless_call(trainable, other, x, training=False)[0])
    return np.asarray(forward([v.value for v in model.trainable_variables],
                              [v.value for v in model.non_trainable_variables], x_nhwc))


def run_onnx(files, x_nhwc):
    import onnxruntime
    session = onnxruntime.InferenceSession(files[0], providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x_nhwc.transpose(0, 3, 1, 2).copy()})[0]


def converted_back(target, files, settings):
    """The written weights converted to ours by weights_tools.convert (None for ONNX)."""
    if target == "onnx":
        return None
    tensors, _ = convert.convert_file(target, settings["arch"], files[0], settings["head"],
                                      flatten_grid=settings["grid"])
    return tensors


def check(checkpoint, work, targets):
    """Exports `checkpoint` to each target and compares; returns the number of failures."""
    tensors, settings = export.read_checkpoint(checkpoint)
    expected, _ = safetensors_io.read(os.path.splitext(checkpoint)[0] + ".expected.safetensors")
    x, ours = expected["input"], expected["logits"]
    case = os.path.splitext(os.path.basename(checkpoint))[0]
    failures = 0
    for target in targets:
        if target in ("torchvision", "timm") and target != export.framework_of(settings["arch"]):
            continue
        start = time.time()
        output = os.path.join(work, case + SUFFIX[target])
        files = export.export(checkpoint, target, output)
        run = {"keras-h5": run_keras, "onnx": run_onnx}.get(target, run_torch)
        theirs = run(files, x)
        error = relative_l2(theirs, ours)
        problems = []
        if theirs.shape != ours.shape:
            problems.append(f"logits of shape {theirs.shape}, ours {ours.shape}")
        elif not error <= TOLERANCE[target]:
            problems.append(f"relative L2 error {error:.2e} > {TOLERANCE[target]:.0e}")
        back = converted_back(target, files, settings)
        if back is not None:
            differ = sorted(set(back) ^ set(tensors)) + [
                n for n in tensors if n in back and not np.array_equal(back[n], tensors[n])]
            if differ:
                problems.append(f"converted back, {len(differ)} tensors differ: {differ[:3]}")
        note = ", weights back bit for bit" if back is not None and not problems else ""
        if target in ("torchvision", "timm"):  # how far each float32 result is from the float64 truth
            truth = torch_float64(files, x)
            note += (f"; from float64: ours {relative_l2(ours, truth):.1e}, {target}'s "
                     f"{relative_l2(theirs, truth):.1e}")
        failures += bool(problems)
        print(f"{'FAIL' if problems else 'ok  '} {case:28s} -> {target:11s} relative L2 {error:.2e} "
              f"(<= {TOLERANCE[target]:.0e}){note}  {time.time() - start:5.1f} s"
              f"{'  ' + '; '.join(problems) if problems else ''}", flush=True)
    return failures


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m weights_tools.export_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoints X.safetensors with X.expected.safetensors")
    parser.add_argument("--work", required=True, help="folder for the exported files")
    parser.add_argument("--targets", default=",".join(export.TARGETS))
    args = parser.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    targets = [t for t in args.targets.split(",") if t]
    failures = sum(check(path, args.work, targets) for path in args.checkpoints)
    print(f"export check: {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
