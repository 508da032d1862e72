"""Golden data for the C++ parity tests, computed by the reference implementations themselves
(torchvision DenseNet, timm Inception-ResNet-v2, Keras DenseNet201 / InceptionResNetV2 on JAX) with
random weights and inputs (seeded), at small sizes so that CI stays fast.

  python -m weights_tools.export_golden --out build/golden [--cases a,b,...] [--list] [--verbose]

Cases (--list): torchvision densenet121/169/201 (ImageNet head, 64x64, batch 2), timm inception_resnet_v2
(ImageNet head, 107x107: the smallest size whose last grid is 2x2 rather than 1x1, where a training-mode
BN over 2 values per channel would have an identically zero gradient), Keras DenseNet201 with the study's
Flatten + Dense(1) head (64x64, nested in a Sequential as a study model would be), Keras
InceptionResNetV2 (ImageNet head, 107x107).

Per case, <out>/<case>/:
  weights.safetensors   the initial weights in our names and layouts, produced by weights_tools.convert
                        from the source file below (so the converters are exercised on every run)
  source file           model.pth (torchvision), model.safetensors (timm), model.h5 (Keras: the legacy
                        Keras 2 HDF5 layout, written with h5py; Keras 2 layer names)
  golden.safetensors    in our layout (activations NHWC, conv gradients OHWI, our names):
    input [N,H,W,3]           the batch (standard normal)
    target [N]                binary targets of the loss (1, 0, ...)
    logits [N,K]              eval mode
    logits_bf16_reference [N,K]
                              eval mode in the reference's own bf16 mixed precision: PyTorch's CPU autocast
                              (bfloat16) on the same model and input (for Keras, on the equal PyTorch model).
                              How far this is from `logits` is what bf16 does to this net and input in the
                              reference framework; the C++ bf16 parity test holds ours to a multiple of it
    act.<stage>               eval-mode activations, NHWC. DenseNet: stem (after pool0), block1..block4
                              (after each dense block, before its transition), features (after the final
                              BN + ReLU). Inception-ResNet-v2: stem (input of mixed_5b), mixed_5b, block35
                              (after the 10 Block35), mixed_6a, block17, mixed_7a, block8 (after the 10th,
                              activation-free Block8 = input of conv2d_7b), features (after conv2d_7b)
    loss [1]                  training mode, from the initial weights and BN state:
                              mean over the batch of BCEWithLogits(logits[:, 0], target)
    grad.<name>               d loss / d parameter, for every trainable parameter
    state.<name>              BN running mean / variance after that one training-mode forward
    adam_losses [3]           from the initial weights and BN state, 3 Adam steps (the framework's own Adam,
                              lr LEARNING_RATE) on the same batch and loss: adam_losses[k] is the
                              training-mode loss after k+1 steps (the loss before the first step is `loss`)
    noise.loss, noise.grad.<name>, noise.adam_losses
                              the reference's own float32 round-off: its float32 result against the same
                              computation in float64 (PyTorch; for Keras the equal PyTorch model with
                              Keras's eps and Adam rule), relative (gradients: max-norm relative). The C++
                              tests allow a few times this where it exceeds their fixed tolerance.
  __metadata__: case, arch, source, head, bn_flavor (keras|torch), adam (pytorch|keras), lr, adam_steps,
  input_size, batch, seed, loss, versions.

Weights are the framework's random initialisation with BN gammas (DenseNet only: Inception-ResNet-v2 has
no gamma, timm's stay ones), BN betas and biases randomised, and BN running statistics calibrated: the
batch statistics of two other random batches (cumulative average, in PyTorch; for Keras, its weights are
converted to the equal torchvision/timm model to compute them), so that eval-mode activations are of a
sensible size and differ from training mode. Then the few channels whose ReLU input in the training
forward pass comes within 1e-4 RMS of zero get their BN beta (or residual conv bias) shifted away from
the kink (avoid_relu_ties): without that, one flipped ReLU decision among 8 pixels per channel changes a
gradient by 10-30% in any two float32 implementations, including the reference's float32 and float64.

Learning rate: 1e-5 (the study's). With 1e-3 the float32 round-off of the reference alone moves its
second and third Adam-step losses by up to 14% (and the flatten head's loss collapses to 1e-6), which
leaves nothing to compare; at 1e-5 that round-off is below 0.2%.

Keras's gradients are computed segment by segment (SegmentedKerasTrainer), which keeps XLA's compile
time at 15-30 s per model instead of 1.5-2 minutes on 2 cores.
"""
import argparse
import copy
import json
import os
import shutil
import sys
import time
import zlib

import numpy as np

from weights_tools import archs, convert, keras_h5, safetensors_io

CASES = {
    # name: (framework, arch, head, input size, batch)
    "tv_densenet121": ("torchvision", "densenet121", "imagenet", 64, 2),
    "tv_densenet169": ("torchvision", "densenet169", "imagenet", 64, 2),
    "tv_densenet201": ("torchvision", "densenet201", "imagenet", 64, 2),
    "timm_irv2": ("timm", "inception_resnet_v2", "imagenet", 107, 2),
    "keras_densenet201_flatten": ("keras", "densenet201", "flatten", 64, 2),
    "keras_irv2": ("keras", "inception_resnet_v2", "imagenet", 107, 2),
}
LEARNING_RATE = 1e-5  # the study's; see the module comment
ADAM_STEPS = 3
BASE_SEED = 20240611
DENSENET_STAGES = ("stem", "block1", "block2", "block3", "block4", "features")
IRV2_STAGES = ("stem", "mixed_5b", "block35", "mixed_6a", "block17", "mixed_7a", "block8", "features")


_VERBOSE = False
_T0 = [0.0]


def log(message):
    """Progress with the seconds since the case started (--verbose)."""
    if _VERBOSE:
        print(f"  [{time.time() - _T0[0]:6.1f} s] {message}", flush=True)


def case_seed(case):
    return (BASE_SEED + zlib.crc32(case.encode())) % (2 ** 31)


def make_batch(rng, batch, size):
    x = rng.standard_normal((batch, size, size, 3)).astype(np.float32)  # NHWC
    target = (np.arange(batch) % 2 == 0).astype(np.float32)  # 1, 0, 1, ...
    return x, target


# ---------------------------------------------------------------------------------------------------
# PyTorch: torchvision DenseNet and timm Inception-ResNet-v2
# ---------------------------------------------------------------------------------------------------

def _torch_model(framework, arch):
    if framework == "torchvision":
        import torchvision
        return getattr(torchvision.models, arch)(weights=None)
    import timm
    return timm.create_model("inception_resnet_v2", pretrained=False)


def _torch_bn_modules(model):
    import torch
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def randomise_torch(model, framework, generator):
    """BN gammas (torchvision only), betas and biases of the framework's init made non-trivial."""
    import torch
    with torch.no_grad():
        for m in _torch_bn_modules(model):
            if framework == "torchvision":
                m.weight.uniform_(0.5, 1.5, generator=generator)
            m.bias.normal_(0.0, 0.1, generator=generator)
        for name, p in model.named_parameters():
            if name.endswith(".bias") and not any(name.startswith(n) for n, _ in _bn_names(model)):
                p.normal_(0.0, 0.05, generator=generator)


def _bn_names(model):
    import torch
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def calibrate_torch_bn(model, batches):
    """Running statistics := the cumulative average of the batch statistics over `batches` (NCHW)."""
    import torch
    bns = _torch_bn_modules(model)
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
        m.num_batches_tracked.zero_()


def _relu_owner(model, relu_name):
    """(name of the parameter that shifts this ReLU's input per channel, d parameter / d input)."""
    import torch
    parent_name, _, leaf = relu_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if hasattr(parent, "conv2d") and hasattr(parent, "scale"):  # timm Block35/17/8: relu(x + scale * conv2d(.))
        return f"{parent_name}.conv2d.bias", 1.0 / parent.scale
    if leaf == "act" and isinstance(parent, torch.nn.modules.batchnorm._BatchNorm):  # timm BatchNormAct2d
        return f"{parent_name}.bias", 1.0
    norms = {"relu0": "norm0", "relu1": "norm1", "relu2": "norm2", "relu": "norm"}  # torchvision DenseNet
    if leaf in norms and hasattr(parent, norms[leaf]):
        return f"{parent_name}.{norms[leaf]}.bias", 1.0
    raise RuntimeError(f"no parameter known to shift the input of ReLU '{relu_name}'")


def avoid_relu_ties(model, x, relative_gap=1e-4):
    """Keeps every ReLU input of the training-mode forward pass on x at least relative_gap * RMS(input)
    away from zero, by shifting the BN beta (or residual conv bias) of the few channels that come closer.

    At ReLU's kink the gradient jumps: an input within float round-off of zero makes the gradient of
    its channel depend on the last bits of the forward pass (a flip at 8 pixels per channel moves the
    BN beta gradient by 10-30%), so no two float32 implementations can be compared there. The analysis
    runs in float64 on a copy; the shifts are applied to `model` in place. Returns the number of channels
    shifted. (tests/support/gradcheck.h keeps its inputs away from ReLU's kink for the same reason.)"""
    import torch
    work = copy.deepcopy(model).double().train()
    shifts = {}  # (owner parameter, factor) -> {channel: shift of the ReLU input}

    def fix(owner, v):
        gap = relative_gap * float(v.pow(2).mean().sqrt())
        near = (v.abs() < gap).flatten(2).any(2).any(0) if v.dim() == 4 else (v.abs() < gap).any(0)
        if not bool(near.any()):
            return v
        v = v.clone()
        for c in torch.nonzero(near).flatten().tolist():
            values = v[:, c]
            # The point z closest to zero with no value within gap of it; shifting by -z moves every
            # value at least gap away from zero (and moves them as little as possible).
            ordered = np.concatenate([[-np.inf], np.sort(values.flatten().numpy()), [np.inf]])
            best = None
            for low, high in zip(ordered[:-1], ordered[1:]):
                if high - low > 2.2 * gap:
                    z = float(np.clip(0.0, low + 1.1 * gap, high - 1.1 * gap))
                    if best is None or abs(z) < abs(best):
                        best = z
            shift = -best
            v[:, c] = values + shift
            channels = shifts.setdefault(owner, {})
            channels[c] = channels.get(c, 0.0) + shift
        return v

    hooks = []
    for name, module in work.named_modules():
        if isinstance(module, torch.nn.ReLU):
            owner = _relu_owner(work, name)
            hooks.append(module.register_forward_pre_hook(lambda _m, inputs, owner=owner: (fix(owner, inputs[0]),)))
    norm5 = dict(work.named_modules()).get("features.norm5")
    if norm5 is not None:  # torchvision applies the last ReLU functionally, after norm5
        hooks.append(norm5.register_forward_hook(lambda _m, _i, out: fix(("features.norm5.bias", 1.0), out)))
    with torch.no_grad():
        work(x.double())
    for h in hooks:
        h.remove()
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for (owner, factor), channels in shifts.items():
            for c, shift in channels.items():
                parameters[owner][c] += shift * factor
    return sum(len(c) for c in shifts.values())


def _torch_stage_modules(model, arch):
    f = getattr(model, "features", None)
    if arch == "inception_resnet_v2":
        return {"stem": model.maxpool_5a, "mixed_5b": model.mixed_5b, "block35": model.repeat,
                "mixed_6a": model.mixed_6a, "block17": model.repeat_1, "mixed_7a": model.mixed_7a,
                "block8": model.block8, "features": model.conv2d_7b}
    return {"stem": f.pool0, "block1": f.denseblock1, "block2": f.denseblock2, "block3": f.denseblock3,
            "block4": f.denseblock4, "features": f.norm5}


def _nchw_to_nhwc(t):
    return np.ascontiguousarray(t.detach().cpu().numpy().transpose(0, 2, 3, 1), dtype=np.float32)


def _frozen(framework, name):
    """timm's BN gammas stay fixed at one: our BN, like Keras's scale=False, has none."""
    return framework == "timm" and name.endswith(".bn.weight")


def _keras_adam_step(parameters, state, step, lr, beta1=0.9, beta2=0.999, eps=1e-7):
    """keras.optimizers.Adam's update (epsilon added to the uncorrected sqrt(v)), for PyTorch tensors."""
    import torch
    alpha = lr * (1 - beta2 ** step) ** 0.5 / (1 - beta1 ** step)
    with torch.no_grad():
        for p in parameters:
            m, v = state.setdefault(p, (torch.zeros_like(p), torch.zeros_like(p)))
            m.add_((p.grad - m) * (1 - beta1))
            v.add_((p.grad * p.grad - v) * (1 - beta2))
            p.sub_(alpha * m / (v.sqrt() + eps))


def torch_training_run(model, framework, arch, head, x, y, dtype, adam="pytorch"):
    """Training-mode loss, gradients and BN statistics after one step, and the losses of ADAM_STEPS Adam
    steps, of a copy of `model` in `dtype` (x, y: NCHW input and targets). Gradients and statistics are
    returned in our names and layouts. adam: 'pytorch' (torch.optim.Adam) or 'keras' (its update rule)."""
    import torch
    import torch.nn.functional as F
    model = copy.deepcopy(model).to(dtype)
    x, y = x.to(dtype), y.to(dtype)
    initial_state = copy.deepcopy(model.state_dict())
    for name, p in model.named_parameters():
        p.requires_grad_(not _frozen(framework, name))
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    model.train()
    model.zero_grad(set_to_none=True)
    loss = F.binary_cross_entropy_with_logits(model(x)[:, 0], y)
    loss.backward()
    source = "timm" if arch == "inception_resnet_v2" else "torchvision"
    grads = {n: p.grad.detach().double().numpy().copy() for n, p in trainable}
    head_grads = {}
    if head == "flatten":  # the NHWC flatten head (torch_equivalent): already in our order
        head_grads = {n: grads.pop(n) for n in list(grads) if n.startswith("classifier.")}
    grads, _, _ = convert.torch_state_to_ours(grads, arch, source, "none" if head == "flatten" else head,
                                              what="grads")
    grads.update(head_grads)
    convert.check(grads, arch, head, require="trainable")
    state = {n: b.detach().double().numpy().copy() for n, b in model.state_dict().items() if "running_" in n}
    state, _, _ = convert.torch_state_to_ours(state, arch, source, head="none")
    convert.check(state, arch, "none", require="buffers")

    model.load_state_dict(initial_state)
    optimizer = torch.optim.Adam([p for _, p in trainable], lr=LEARNING_RATE) if adam == "pytorch" else None
    keras_state = {}
    losses = []
    for step in range(ADAM_STEPS + 1):
        model.zero_grad(set_to_none=True)
        loss_k = F.binary_cross_entropy_with_logits(model(x)[:, 0], y)
        if step > 0:
            losses.append(loss_k.item())
        if step < ADAM_STEPS:
            loss_k.backward()
            if optimizer is not None:
                optimizer.step()
            else:
                _keras_adam_step([p for _, p in trainable], keras_state, step + 1, LEARNING_RATE)
    return {"loss": loss.item(), "grads": grads, "state": state, "adam_losses": losses}


def reference_bf16_logits(model, x):
    """Eval-mode logits of `model` (a PyTorch module, float32) on `x` (NCHW) under PyTorch's CPU autocast
    in bfloat16, the reference's own mixed precision (convolutions and linear layers on bf16 operands,
    their outputs and what follows them bf16), as float32. The model is left in eval mode, unchanged."""
    import torch
    model.eval()
    with torch.no_grad(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        logits = model(x)
    if logits.dtype != torch.bfloat16:
        raise RuntimeError(f"autocast gave {logits.dtype} logits, not bfloat16: this PyTorch does not run the "
                           "net in bf16 on the CPU")
    return logits.float().numpy().astype(np.float32)


def add_training(golden, run, arch, head):
    golden["loss"] = np.array([run["loss"]], dtype=np.float32)
    for name, value in convert.ordered(run["grads"], arch, head).items():
        golden[f"grad.{name}"] = value.astype(np.float32)
    for name, value in convert.ordered(run["state"], arch, "none").items():
        golden[f"state.{name}"] = value.astype(np.float32)
    golden["adam_losses"] = np.array(run["adam_losses"], dtype=np.float32)


def add_noise(golden, run64, case):
    """The reference's own float32 round-off, per quantity: its float32 result against the same
    computation in float64, relative (gradients: max |g32 - g64| / max |g64|). The parity tests allow
    our result a few times this, as the problem's conditioning (deep BN nets in training mode amplify
    round-off in their gradients) bounds what any float32 implementation can reach."""
    def relative(a, b):
        return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / max(np.max(np.abs(b)), 1e-30))

    golden["noise.loss"] = np.array([relative(golden["loss"], run64["loss"])], dtype=np.float32)
    if golden["noise.loss"][0] > 1e-4:
        raise RuntimeError(f"{case}: the float64 reference's loss {run64['loss']} disagrees with the golden "
                           f"loss {golden['loss'][0]}: the reference models are not equal")
    for name, g64 in run64["grads"].items():
        golden[f"noise.grad.{name}"] = np.array([relative(golden[f"grad.{name}"], g64)], dtype=np.float32)
    golden["noise.adam_losses"] = np.array(
        [abs(float(a) - b) / abs(b) for a, b in zip(golden["adam_losses"], run64["adam_losses"])], dtype=np.float32)


def export_torch(case, out_dir, framework, arch, head, size, batch, seed):
    import torch
    import torch.nn.functional as F
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = _torch_model(framework, arch)
    assert head == "imagenet", "PyTorch golden cases use the ImageNet head"
    randomise_torch(model, framework, generator)
    calibrate_torch_bn(model, [torch.randn(batch, 3, size, size, generator=generator) for _ in range(2)])
    x_nhwc, target = make_batch(rng, batch, size)
    x = torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(target)
    shifted = avoid_relu_ties(model, x)
    log(f"{shifted} channels moved away from ReLU's kink")

    # The source file, converted by our converter: that is what the C++ side loads.
    if framework == "torchvision":
        source_path = os.path.join(out_dir, "model.pth")
        torch.save(model.state_dict(), source_path)
    else:
        source_path = os.path.join(out_dir, "model.safetensors")
        safetensors_io.write(source_path, {k: v.detach().numpy() for k, v in model.state_dict().items()})
    weights, meta = convert.convert_file(framework, arch, source_path, head)
    convert.write(os.path.join(out_dir, "weights.safetensors"), weights, meta)
    golden = {"input": x_nhwc, "target": target}

    # Eval: logits and stage activations.
    captured = {}
    hooks = [module.register_forward_hook(
        lambda _m, _i, output, stage=stage: captured.__setitem__(stage, output.detach().clone()))
        for stage, module in _torch_stage_modules(model, arch).items()]
    model.eval()
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    if arch != "inception_resnet_v2":
        captured["features"] = F.relu(captured["features"])  # torchvision applies ReLU after norm5 in forward()
    golden["logits"] = logits.numpy().astype(np.float32)
    golden["logits_bf16_reference"] = reference_bf16_logits(model, x)
    stages = IRV2_STAGES if arch == "inception_resnet_v2" else DENSENET_STAGES
    for stage in stages:
        golden[f"act.{stage}"] = _nchw_to_nhwc(captured[stage])
    log("eval")

    # Training step and Adam steps, in float32 (the golden values) and float64 (the round-off reference).
    add_training(golden, torch_training_run(model, framework, arch, head, x, y, torch.float32), arch, head)
    log("training (float32)")
    add_noise(golden, torch_training_run(model, framework, arch, head, x, y, torch.float64), case)
    log("training (float64)")
    versions = {"torch": torch.__version__}
    if framework == "timm":
        import timm
        versions["timm"] = timm.__version__
    else:
        import torchvision
        versions["torchvision"] = torchvision.__version__
    return golden, meta, "pytorch", versions


# ---------------------------------------------------------------------------------------------------
# Keras 3 (JAX backend)
# ---------------------------------------------------------------------------------------------------

_KERAS2_NAMES = {"conv1_conv": "conv1/conv", "conv1_bn": "conv1/bn", "conv1_relu": "conv1/relu"}


def _keras2_layer_name(arch, name):
    """Keras 2's name of a Keras 3 application layer (the names of the published .h5 files)."""
    if arch.startswith("densenet"):
        if name == "predictions":
            return "fc1000"
        return _KERAS2_NAMES.get(name, name)
    return name


def _keras_variable_key(variable):
    """(layer, kind) of a Keras 3 variable, from its path '[model/]layer/kind'."""
    parts = variable.path.split("/")
    return parts[-2], parts[-1]


def _keras_model(arch, head, size):
    import keras
    shape = (size, size, 3)
    make = {"densenet121": keras.applications.DenseNet121, "densenet169": keras.applications.DenseNet169,
            "densenet201": keras.applications.DenseNet201,
            "inception_resnet_v2": keras.applications.InceptionResNetV2}[arch]
    if head == "imagenet":
        model = make(weights=None, include_top=True, input_shape=shape, classifier_activation=None)
        return model, model
    assert head == "flatten"
    # The study's model: the ImageNet backbone nested in a Sequential, then Flatten and Dense(1).
    base = make(weights=None, include_top=False, input_shape=shape)
    model = keras.Sequential([base, keras.layers.Flatten(), keras.layers.Dense(1)])
    return model, base


def _keras_stage_tensors(arch, base):
    import keras
    if arch.startswith("densenet"):
        blocks = archs.DENSENET_BLOCKS[arch]
        out = {"stem": base.get_layer("pool1").output}
        for b, layers in enumerate(blocks, start=1):
            out[f"block{b}"] = base.get_layer(f"conv{b + 1}_block{layers}_concat").output
        out["features"] = base.get_layer("relu").output
        return out
    pools = [layer for layer in base.layers if isinstance(layer, keras.layers.AveragePooling2D)]
    assert len(pools) == 1, "Inception-ResNet-v2 has one average pool (mixed_5b's branch)"
    return {"stem": pools[0].input, "mixed_5b": base.get_layer("mixed_5b").output,
            "block35": base.get_layer("block35_10_ac").output, "mixed_6a": base.get_layer("mixed_6a").output,
            "block17": base.get_layer("block17_20_ac").output, "mixed_7a": base.get_layer("mixed_7a").output,
            "block8": base.get_layer("conv_7b").input, "features": base.get_layer("conv_7b_ac").output}


def _keras_entries(model):
    return [(*_keras_variable_key(v), np.asarray(v.value, dtype=np.float32)) for v in model.weights]


def _write_keras2_h5(path, arch, model, base):
    """The model's weights in Keras 2's legacy layout (weights_tools.keras_h5.write), with Keras 2's layer
    names and weight names '<layer>/<kind>:0'; a nested backbone is one layer group, as Keras 2 saved it."""
    import keras

    def weights_of(layer):
        return [(f"{_keras2_layer_name(arch, _keras_variable_key(v)[0])}/{v.name}:0",
                 np.asarray(v.value, dtype=np.float32)) for v in layer.weights]

    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # nested backbone: all its weights in one group
            layers.append((layer.name, weights_of(layer)))
        else:
            layers.append((_keras2_layer_name(arch, layer.name), weights_of(layer)))
    keras_h5.write(path, layers, backend="jax", keras_version=f"{keras.__version__} (Keras 2 legacy layout)")


def torch_equivalent(arch, head, ours):
    """The PyTorch model equal to Keras's (torchvision DenseNet with Keras's BN eps 1.001e-5, or timm
    Inception-ResNet-v2 whose eps 1e-3 is Keras's), holding our weights `ours`; for the study's flatten
    head, a Linear over the NHWC-flattened features (Keras's Flatten order)."""
    import torch
    framework = "timm" if arch == "inception_resnet_v2" else "torchvision"
    model = _torch_model(framework, arch)
    if arch != "inception_resnet_v2":
        for m in _torch_bn_modules(model):
            m.eps = 1.001e-5
    if head == "flatten":
        if arch == "inception_resnet_v2":
            raise NotImplementedError("a flatten head on the PyTorch Inception-ResNet-v2")
        model = _nhwc_flatten_net(model.features, ours["classifier.weight"].shape[1])
    elif head != "imagenet":
        raise NotImplementedError(f"head {head}")
    state = model.state_dict()
    for name, value in ours.items():
        state[name] = torch.from_numpy(value.transpose(0, 3, 1, 2).copy() if value.ndim == 4 else value.copy())
    model.load_state_dict(state)
    return model


def _nhwc_flatten_net(features, in_features):
    """torchvision DenseNet features, ReLU, Flatten in NHWC order, Linear(in_features, 1): the Keras
    study model as a PyTorch module (parameter names features.*, classifier.*)."""
    import torch

    class NhwcFlattenNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = features
            self.classifier = torch.nn.Linear(in_features, 1)

        def forward(self, x):
            f = torch.nn.functional.relu(self.features(x))
            return self.classifier(f.permute(0, 2, 3, 1).flatten(1))
    return NhwcFlattenNet()


def randomise_and_calibrate_keras(model, arch, head, size, batch, rng):
    """Randomises BN gammas (DenseNet) / betas and biases, then sets the moving statistics to the batch
    statistics of two random batches, computed by the equal torchvision/timm model (Keras would need a
    separate XLA compilation for this)."""
    import torch
    for v in model.weights:
        layer, kind = _keras_variable_key(v)
        value = np.asarray(v.value)
        if kind == "gamma":
            v.assign(rng.uniform(0.5, 1.5, value.shape).astype(np.float32))
        elif kind == "beta":
            v.assign(rng.normal(0.0, 0.1, value.shape).astype(np.float32))
        elif kind == "bias":
            v.assign(rng.normal(0.0, 0.05, value.shape).astype(np.float32))
    ours, _, _ = convert.keras_entries_to_ours(_keras_entries(model), arch, head)
    reference = torch_equivalent(arch, head, ours)
    generator = torch.Generator().manual_seed(int(rng.integers(2 ** 31)))
    calibrate_torch_bn(reference, [torch.randn(batch, 3, size, size, generator=generator) for _ in range(2)])
    stats = {n: b.numpy().copy() for n, b in reference.state_dict().items() if "running_" in n}
    variables = [v for v in model.weights if _keras_variable_key(v)[1] in ("moving_mean", "moving_variance")]
    names = convert.keras_names(arch, [_keras_variable_key(v) for v in variables])
    for variable, name in zip(variables, names):
        variable.assign(stats[name].astype(np.float32))


def avoid_relu_ties_keras(model, base, arch, head, x):
    """avoid_relu_ties for a Keras model, through its equal PyTorch model: the shifted BN betas and
    residual conv biases are copied back into the Keras variables."""
    import keras
    import torch
    ours, _, _ = convert.keras_entries_to_ours(_keras_entries(model), arch, head)
    reference = torch_equivalent(arch, head, ours)
    shifted = avoid_relu_ties(reference, torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    dense_layers = {layer.name for layer in list(model.layers) + list(base.layers)
                    if isinstance(layer, keras.layers.Dense)}
    variables = [v for v in model.weights if _keras_variable_key(v)[1] in ("beta", "bias")
                 and _keras_variable_key(v)[0] not in dense_layers]
    state = reference.state_dict()
    for variable, name in zip(variables, convert.keras_names(arch, [_keras_variable_key(v) for v in variables])):
        variable.assign(state[name].numpy().astype(np.float32))
    return shifted


def _bce_with_logits_mean(logits, labels):
    import jax.numpy as jnp
    z = logits[:, 0]
    return jnp.mean(jnp.maximum(z, 0) - z * labels + jnp.log1p(jnp.exp(-jnp.abs(z))))


def _keras_cut_tensors(arch, base):
    """Tensors that cut the backbone's graph into a chain of closed segments (each segment's only input is
    the previous cut): every 4th dense layer and each transition of DenseNet, every block of
    Inception-ResNet-v2."""
    if arch.startswith("densenet"):
        names = ["pool1"]
        for b, layers in enumerate(archs.DENSENET_BLOCKS[arch], start=2):
            names += [f"conv{b}_block{layer}_concat" for layer in range(4, layers, 4)]
            if b < 5:
                names.append(f"pool{b}_pool")
        return [base.get_layer(n).output for n in names]
    stages = _keras_stage_tensors(arch, base)
    cuts = [stages["stem"], stages["mixed_5b"]]
    cuts += [base.get_layer(f"block35_{i}_ac").output for i in range(1, 11)]
    cuts += [stages["mixed_6a"]]
    cuts += [base.get_layer(f"block17_{i}_ac").output for i in range(1, 21)]
    cuts += [stages["mixed_7a"]]
    cuts += [base.get_layer(f"block8_{i}_ac").output for i in range(1, 10)]
    cuts += [stages["block8"]]
    return cuts


class SegmentedKerasTrainer:
    """d loss / d variables of a Keras functional model in training mode, by the chain rule over segments
    of its graph: each segment (a keras.Model between two cut tensors) is compiled by XLA on its own, a
    forward and a backward (jax.vjp, recomputing the segment's forward). The result is the gradient of
    the whole model, computed by Keras's layers and JAX's autodiff; compiling DenseNet-201's training step
    as one XLA program takes 1.5 to 2 minutes on 2 cores, these segments about 15 s."""

    def __init__(self, full, cuts):
        import jax
        import keras
        inputs = [full.input] + list(cuts)
        outputs = list(cuts) + [full.output]
        self.segments = [keras.Model(a, b) for a, b in zip(inputs, outputs)]
        trainable_index = {id(v): i for i, v in enumerate(full.trainable_variables)}
        non_trainable_index = {id(v): i for i, v in enumerate(full.non_trainable_variables)}
        self.trainable_indices, self.non_trainable_indices = [], []
        seen = set()
        for segment in self.segments:
            t = [trainable_index[id(v)] for v in segment.trainable_variables]
            n = [non_trainable_index[id(v)] for v in segment.non_trainable_variables]
            assert not seen.intersection(t), "a variable in two segments: the cuts are not a chain"
            seen.update(t)
            self.trainable_indices.append(t)
            self.non_trainable_indices.append(n)
        assert len(seen) == len(full.trainable_variables), "the segments miss variables"
        self.forwards = [jax.jit(self._forward(s)) for s in self.segments]
        self.backwards = [jax.jit(self._backward(s)) for s in self.segments]
        self.loss = jax.jit(jax.value_and_grad(_bce_with_logits_mean))

    @staticmethod
    def _forward(segment):
        def forward(trainable, non_trainable, x):
            return segment.stateless_call(trainable, non_trainable, x, training=True)
        return forward

    @staticmethod
    def _backward(segment):
        import jax

        def backward(trainable, non_trainable, x, dy):
            def f(trainable, x):
                return segment.stateless_call(trainable, non_trainable, x, training=True)[0]
            _, vjp = jax.vjp(f, trainable, x)
            return vjp(dy)
        return backward

    def value_and_grad(self, trainable, non_trainable, x, labels):
        """(loss, updated non-trainable variables, gradients), lists in the full model's orders."""
        new_non_trainable = list(non_trainable)
        saved = []
        h = x
        for forward, t_index, n_index in zip(self.forwards, self.trainable_indices, self.non_trainable_indices):
            tv = [trainable[i] for i in t_index]
            ntv = [non_trainable[i] for i in n_index]
            saved.append((tv, ntv, h))
            h, updated = forward(tv, ntv, h)
            for i, value in zip(n_index, updated):
                new_non_trainable[i] = value
        loss, dy = self.loss(h, labels)
        grads = [None] * len(trainable)
        for backward, t_index, (tv, ntv, h_in) in reversed(list(zip(self.backwards, self.trainable_indices, saved))):
            dtv, dy = backward(tv, ntv, h_in, dy)
            for i, g in zip(t_index, dtv):
                grads[i] = g
        return loss, new_non_trainable, grads


def export_keras(case, out_dir, arch, head, size, batch, seed):
    import jax
    import keras
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model, base = _keras_model(arch, head, size)
    log("keras model built")
    randomise_and_calibrate_keras(model, arch, head, size, batch, rng)
    log("randomised and calibrated")
    x, target = make_batch(rng, batch, size)
    shifted = avoid_relu_ties_keras(model, base, arch, head, x)
    log(f"{shifted} channels moved away from ReLU's kink")

    source_path = os.path.join(out_dir, "model.h5")
    _write_keras2_h5(source_path, arch, model, base)
    weights, meta = convert.convert_file("keras-h5", arch, source_path, head)
    convert.write(os.path.join(out_dir, "weights.safetensors"), weights, meta)
    golden = {"input": x, "target": target}
    log("h5 written and converted")

    # The model as one functional graph from the image to the logits (for the study's nested model: the
    # backbone's graph, then its Flatten and Dense layers applied to the backbone's output; the layers and
    # variables are the same objects).
    if model is base:
        full = model
    else:
        logits = base.output
        for layer in model.layers[1:]:
            logits = layer(logits)
        full = keras.Model(base.input, logits)

    # Eval: one probe model sharing the layers, outputs [logits, stages...].
    stage_tensors = _keras_stage_tensors(arch, base)
    stages = list(stage_tensors)
    probe = keras.Model(base.input, [full.output] + [stage_tensors[s] for s in stages])

    @jax.jit
    def evaluate(trainable, non_trainable, inputs):
        outputs, _ = probe.stateless_call(trainable, non_trainable, inputs, training=False)
        return outputs

    outputs = evaluate([v.value for v in probe.trainable_variables],
                       [v.value for v in probe.non_trainable_variables], x)
    log("eval forward (compiled)")
    golden["logits"] = np.asarray(outputs[0], dtype=np.float32)
    for stage, value in zip(stages, outputs[1:]):
        golden[f"act.{stage}"] = np.asarray(value, dtype=np.float32)

    # Train: value and gradient of the loss, and the updated BN statistics.
    trainer = SegmentedKerasTrainer(full, _keras_cut_tensors(arch, base))
    trainable0 = [v.value for v in full.trainable_variables]
    non_trainable0 = [v.value for v in full.non_trainable_variables]
    loss, non_trainable1, grads = trainer.value_and_grad(trainable0, non_trainable0, x, target)
    golden["loss"] = np.array([float(loss)], dtype=np.float32)
    log(f"training step ({len(trainer.segments)} segments compiled)")
    grad_entries = [(*_keras_variable_key(v), np.asarray(g, dtype=np.float32))
                    for v, g in zip(full.trainable_variables, grads)]
    grads_ours, _, _ = convert.keras_entries_to_ours(grad_entries, arch, head)
    convert.check(grads_ours, arch, head, require="trainable")
    for name, value in convert.ordered(grads_ours, arch, head).items():
        golden[f"grad.{name}"] = value
    state_entries = [(*_keras_variable_key(v), np.asarray(s, dtype=np.float32))
                     for v, s in zip(full.non_trainable_variables, non_trainable1)]
    state_ours, _, _ = convert.keras_entries_to_ours(state_entries, arch, "none")
    convert.check(state_ours, arch, "none", require="buffers")
    for name, value in convert.ordered(state_ours, arch, "none").items():
        golden[f"state.{name}"] = value

    # Adam (Keras's own, stateless): 3 steps from the initial state. It is applied to the concatenation of
    # all trainable variables: Adam is elementwise (no weight decay or clipping here), so this equals the
    # per-variable update, and XLA compiles one small update instead of one per variable (20 s).
    shapes = [np.shape(t) for t in trainable0]
    sizes = [int(np.prod(s)) for s in shapes]

    def flat(arrays):
        return np.concatenate([np.asarray(a, dtype=np.float32).ravel() for a in arrays])

    def unflat(vector):
        parts = np.split(np.asarray(vector), np.cumsum(sizes)[:-1])
        return [p.reshape(s) for p, s in zip(parts, shapes)]

    flat_variable = keras.Variable(np.zeros(sum(sizes), np.float32), name="all_trainable")
    optimizer = keras.optimizers.Adam(learning_rate=LEARNING_RATE)
    optimizer.build([flat_variable])
    optimizer_state = [v.value for v in optimizer.variables]
    apply = jax.jit(optimizer.stateless_apply)
    parameters, non_trainable = flat(trainable0), non_trainable0
    losses = []
    for step in range(ADAM_STEPS + 1):
        loss, non_trainable, grads = trainer.value_and_grad(unflat(parameters), non_trainable, x, target)
        if step > 0:
            losses.append(float(loss))
        if step < ADAM_STEPS:
            (parameters,), optimizer_state = apply(optimizer_state, [flat(grads)], [parameters])
    golden["adam_losses"] = np.array(losses, dtype=np.float32)
    log("adam steps")

    # The float64 reference: the equal PyTorch model with the same weights, Keras's Adam rule. It must
    # agree with Keras in eval (a check of this export), and gives the round-off reference of add_noise.
    import torch
    reference = torch_equivalent(arch, head, weights)
    x_nchw = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        logits64 = copy.deepcopy(reference).double().eval()(x_nchw.double()).numpy()
    difference = np.max(np.abs(logits64 - golden["logits"])) / np.max(np.abs(logits64))
    if difference > 1e-4:
        raise RuntimeError(f"{case}: Keras's eval logits differ from the equal PyTorch model's by {difference:.2g} "
                           "of their maximum: the models or the conversion disagree")
    golden["logits_bf16_reference"] = reference_bf16_logits(copy.deepcopy(reference), x_nchw)
    framework = "timm" if arch == "inception_resnet_v2" else "torchvision"
    run64 = torch_training_run(reference, framework, arch, head, x_nchw, torch.from_numpy(target),
                               torch.float64, adam="keras")
    add_noise(golden, run64, case)
    log(f"float64 reference (eval logits agree to {difference:.1e})")
    return golden, meta, "keras", {"keras": keras.__version__, "jax": jax.__version__}


# ---------------------------------------------------------------------------------------------------

def export_case(case, out_root):
    framework, arch, head, size, batch = CASES[case]
    seed = case_seed(case)
    out_dir = os.path.join(out_root, case)
    temporary = f"{out_dir}.tmp-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    os.makedirs(temporary)
    start = _T0[0] = time.time()
    try:
        if framework == "keras":
            golden, meta, adam, versions = export_keras(case, temporary, arch, head, size, batch, seed)
        else:
            golden, meta, adam, versions = export_torch(case, temporary, framework, arch, head, size, batch, seed)
        versions["numpy"] = np.__version__
        golden_meta = {
            "case": case, "arch": arch, "source": meta["source"], "head": meta["head"],
            "bn_flavor": meta["bn_flavor"], "adam": adam, "lr": repr(LEARNING_RATE),
            "adam_steps": str(ADAM_STEPS), "input_size": str(size), "batch": str(batch), "seed": str(seed),
            "loss": "mean over the batch of BCEWithLogits(logits[:, 0], target)",
            "versions": json.dumps(versions, sort_keys=True),
        }
        safetensors_io.write(os.path.join(temporary, "golden.safetensors"), golden, golden_meta)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(temporary, out_dir)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return time.time() - start


def _enable_jax_cache(path):
    """XLA's persistent compilation cache: identical segments (Inception-ResNet-v2's repeated blocks) are
    compiled once, and a re-export after a change elsewhere compiles nothing."""
    import jax
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m weights_tools.export_golden", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="build/golden", help="output folder (default build/golden)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated cases (default: all)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--verbose", action="store_true", help="print the time of each phase")
    args = parser.parse_args(argv)
    global _VERBOSE
    _VERBOSE = args.verbose
    if args.list:
        for case, (framework, arch, head, size, batch) in CASES.items():
            print(f"{case}: {framework} {arch} head={head} {batch}x{size}x{size}x3")
        return 0
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        print(f"error: unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}", file=sys.stderr)
        return 2
    if any(CASES[c][0] == "keras" for c in cases):
        os.environ.setdefault("KERAS_BACKEND", "jax")
        # LLVM optimisation level 0 roughly halves XLA's compile time of these graphs (most of the
        # export's time) and does not change the floating-point semantics.
        os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
    os.makedirs(args.out, exist_ok=True)
    if any(CASES[c][0] == "keras" for c in cases):
        _enable_jax_cache(os.path.join(args.out, ".jax-cache"))
    total = time.time()
    for case in cases:
        seconds = export_case(case, args.out)
        print(f"golden {case}: {seconds:.1f} s", flush=True)
    print(f"golden data for {len(cases)} case(s) in {args.out}: {time.time() - total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
