"""PyTorch's side of the CPU comparison (scripts/bench_cpu.sh): seconds per image of torchvision's
densenet201 and timm's inception_resnet_v2 on the CPU, forward (eval, no_grad) and forward + backward
(train mode, BCE on one logit, every parameter gradient), median of several timed batches after a
warm-up, with the same threads and batch as our bench_nets_cpu. Prints one line per case:
    torch <net> <input> <fwd s/img> <fwd+bwd s/img>
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


def bench(name, model, size, batch, reps):
    x = torch.rand(batch, 3, size, size)
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
    print(f"torch {name} {size} {fwd:.4f} {fwd_bwd:.4f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small inputs, one rep (a smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reps = 1 if args.quick else args.reps
    if args.quick:  # as bench_nets_cpu --quick: batch 1
        args.batch = 1
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads "
          f"(asked {args.threads}), batch {args.batch}", flush=True)
    import torchvision
    bench("densenet201", torchvision.models.densenet201(), 64 if args.quick else 224, args.batch, reps)
    try:
        import timm
    except ImportError:
        print("# timm not importable: inception_resnet_v2 skipped", file=sys.stderr)
        return
    irv2 = timm.create_model("inception_resnet_v2", pretrained=False)
    for size in ([107] if args.quick else [224, 299]):
        bench("inception_resnet_v2", irv2, size, args.batch, reps)


if __name__ == "__main__":
    main()
