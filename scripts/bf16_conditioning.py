"""How far PyTorch's own bf16 mixed precision moves the logits of DenseNet-201 and Inception-ResNet-v2 from
their f32 logits: the yardstick of our bf16 parity (docs/precision.md, "The reference's own bf16").

For each net and input size, torchvision / timm at random initialisation (seeded), BN running statistics
calibrated on two batches of the same kind, then on a third batch of 2 images, eval mode: the relative L2
of the 1,000 logits of CPU autocast (bfloat16) against f32, and of the f32 net on bf16-rounded weights and
input (the values bf16 storage starts from). Inputs: standard-normal noise, and smooth images (noise at
1/16 of the size, upsampled bicubically, standardised).

Run with a PyTorch 2.x (scripts/lib/torch2_env.sh), e.g.
    source scripts/lib/torch2_env.sh && engine_torch2_env && "$ENGINE_TORCH2_PYTHON" scripts/bf16_conditioning.py
About 3 minutes on 2 cores.
"""
import copy

import timm
import torch
import torchvision


def smooth_images(batch, size, generator):
    x = torch.randn(batch, 3, size // 16, size // 16, generator=generator)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    return (x - x.mean()) / x.std()


def noise_images(batch, size, generator):
    return torch.randn(batch, 3, size, size, generator=generator)


def calibrate(model, batches):
    """BN running statistics: the cumulative average of the batches' statistics."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        for b in batches:
            model(b)
    model.eval()


def relative_l2(a, b):
    return ((a - b).norm() / b.norm()).item()


def measure(name, model, size, make_images, batch=2):
    generator = torch.Generator().manual_seed(1)
    calibrate(model, [make_images(batch, size, generator) for _ in range(2)])
    x = make_images(batch, size, generator)
    with torch.no_grad():
        f32 = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(x).float()
        rounded = copy.deepcopy(model)
        for p in rounded.parameters():
            p.data = p.data.bfloat16().float()
        rounded_logits = rounded(x.bfloat16().float())
    print(f"{name} @ {size} {make_images.__name__.split('_')[0]}: autocast bf16 {relative_l2(bf16, f32):.3f}, "
          f"f32 on rounded weights and input {relative_l2(rounded_logits, f32):.3f}", flush=True)


def main():
    torch.manual_seed(0)
    print(f"# torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}")
    for size in (64, 224):
        for make_images in (noise_images, smooth_images):
            measure("densenet201", torchvision.models.densenet201(), size, make_images)
    for size in (107, 299):
        for make_images in (noise_images, smooth_images):
            measure("inception_resnet_v2", timm.create_model("inception_resnet_v2"), size, make_images)


if __name__ == "__main__":
    main()
