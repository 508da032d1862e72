"""PyTorch's side of the CPU comparison (scripts/bench_cpu.sh): seconds per image of torchvision's
densenet201 and timm's inception_resnet_v2 on the CPU, forward (eval, no_grad) and forward + backward
(train mode, BCE on one logit, every parameter gradient), median of several timed batches after a
warm-up, with the same threads and batch as our bench_nets_cpu. Prints one line per case:
    <tag> <net> <input> <fwd s/img> <fwd+bwd s/img>
with tag "torch" unless --tag says otherwise. --channels-last puts the weights and the inputs in
channels-last memory format, the layout PyTorch 2.x's oneDNN convolutions run fastest in on the CPU (and
the layout our engine uses throughout).
"""
import argparse
import statistics
import sys
import time

import torch


def seconds_per_image(step, batch, reps):
    step()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / batch


def bench(tag, name, model, size, batch, reps, channels_last):
    x = torch.rand(batch, 3, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 2, (batch,)).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def forward():
        with torch.no_grad():
            model(x)

    def forward_backward():
        model.zero_grad(set_to_none=True)
        loss_fn(model(x)[:, 0], target).backward()

    model.eval()
    fwd = seconds_per_image(forward, batch, reps)
    model.train()
    fwd_bwd = seconds_per_image(forward_backward, batch, reps)
    print(f"{tag} {name} {size} {fwd:.4f} {fwd_bwd:.4f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small inputs, one rep (a smoke run)")
    parser.add_argument("--channels-last", action="store_true",
                        help="weights and inputs in channels-last memory format")
    parser.add_argument("--tag", default="torch", help="first word of each result line")
    parser.add_argument("--only", choices=["densenet201", "inception_resnet_v2"],
                        help="one net (as bench_nets_cpu --only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reps = 1 if args.quick else args.reps
    if args.quick:  # as bench_nets_cpu --quick: batch 1
        args.batch = 1
    layout = "channels-last" if args.channels_last else "contiguous (NCHW)"
    print(f"# {args.tag}: torch {torch.__version__}, {torch.get_num_threads()} threads "
          f"(asked {args.threads}), batch {args.batch}, {layout}", flush=True)
    if args.only in (None, "densenet201"):
        import torchvision
        bench(args.tag, "densenet201", torchvision.models.densenet201(), 64 if args.quick else 224, args.batch,
              reps, args.channels_last)
    if args.only == "densenet201":
        return
    try:
        import timm
    except ImportError:
        print("# timm not importable: inception_resnet_v2 skipped", file=sys.stderr)
        return
    irv2 = timm.create_model("inception_resnet_v2", pretrained=False)
    for size in ([107] if args.quick else [224, 299]):
        bench(args.tag, "inception_resnet_v2", irv2, size, args.batch, reps, args.channels_last)


if __name__ == "__main__":
    main()
