"""PyTorch's side of the GPU comparison (scripts/bench_gpu.sh), and the table that puts both sides together.

    bench_torch.py [--cases A@S,...] [--batch-sizes 32,128,max] [--variants V,...] [--compile-batches B,...]
                   [--mode train|infer|both] [--warmup N] [--iters N] [--device auto|cpu|cuda] [--threads N]
                   [--max-batch-cap N] [--json FILE]
    bench_torch.py --combine OURS.json TORCH.json [--out TABLE.md]

The nets are ours (apps/bench.cpp): torchvision's densenet121/169/201 and timm's inception_resnet_v2 as
backbones, each under the study's flatten head, which our bench uses too: Flatten of the final feature map
(DenseNet: features + ReLU; Inception-ResNet-v2: forward_features, i.e. up to conv2d_7b) + Linear(h*w*C, 1).
Loss: BCEWithLogits on that one logit; optimizer: torch.optim.Adam, lr 1e-5, PyTorch's default
implementation. Synthetic data made on the device once per case: images uniform in [0, 1), labels
alternately 0 and 1.

Variants:
  eager-f32       eager, float32; TF32 allowed for convolutions (PyTorch's default) and matrix products (as
                  ours); cudnn.benchmark on (autotuned algorithms: PyTorch at its usual best)
  eager-bf16-cl   eager, bf16 autocast, channels-last weights and inputs
  compile-f32     torch.compile (default mode) of eager-f32
  compile-bf16    torch.compile (default mode) of eager-bf16-cl
torch.compile needs PyTorch 2: on older versions those rows are "skipped" with a note. A compiled case
starts from torch._dynamo.reset(), so every batch size compiles afresh with static shapes (a minute or two
per net, mode and batch on an H100: --compile-batches limits the batches compiled).

Protocol, the same as ours: --warmup untimed iterations (a compiled case compiles in them), then --iters
timed ones, each ended by a device synchronisation (torch.cuda.synchronize); the median, p10, p90 (linear
interpolation) of the per-iteration times. A training iteration: zero_grad(set_to_none), forward, loss,
backward, optimizer step, loss.item(). Peak memory: CUDA: torch.cuda.max_memory_allocated after
reset_peak_memory_stats, minus what was allocated before the case (so: parameters, gradients, Adam's
state, activations, workspaces); CPU: growth of the process's peak resident set (VmHWM reset through
/proc/self/clear_refs) over its resident set before the net was built. Batch "max" (CUDA only): doubling
from 16 until out of memory, then bisection to a multiple of 8, with the eager model of the variant's
precision; a compiled variant runs at the batch its eager twin found.

Output: a table on stdout and, with --json, the rows in the schema apps/bench.cpp writes ("mura-bench-v1"),
rewritten after every row, so that a run cut short by a time limit leaves its rows.

--combine reads our JSON and PyTorch's and prints one Markdown table (and writes it to --out): per row of
ours, PyTorch's eager f32, eager bf16 channels-last and best torch.compile figures, the ratios (ours /
theirs: above 1 we are faster), peak memory ours / PyTorch eager's of the same precision, and the issue's
targets, met or missed.
"""
import argparse
import ctypes
import datetime
import gc
import json
import math
import os
import platform
import sys
import time

MURA_TRAIN_IMAGES = 36808
MURA_VALID_IMAGES = 3197
PROJECTED_EPOCHS = 10
STUDY_LR = 1e-5
VARIANTS = ("eager-f32", "eager-bf16-cl", "compile-f32", "compile-bf16")
DEFAULT_CASES = ("densenet201@224", "inception_resnet_v2@299", "inception_resnet_v2@224")


# --------------------------------------------------------------------------------------------------------
# Measuring


def quantile(values, q):
    """Quantile q, linear interpolation between order statistics (as apps/bench.cpp)."""
    v = sorted(values)
    position = q * (len(v) - 1)
    below = math.floor(position)
    above = min(below + 1, len(v) - 1)
    return v[below] + (position - below) * (v[above] - v[below])


def proc_status_kib(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


class CaseMemory:
    """The memory of one case: construct before the net is built, read peak_bytes() at the end."""

    def __init__(self, torch, device):
        self.torch, self.device = torch, device
        gc.collect()
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.baseline = torch.cuda.memory_allocated()
            return
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self.reset_ok = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset_ok = True
        except OSError:
            pass
        self.baseline = proc_status_kib("VmRSS") * 1024
        self.reset_ok = self.reset_ok and self.baseline >= 0 and \
            proc_status_kib("VmHWM") * 1024 <= self.baseline + (1 << 20)

    def peak_bytes(self):
        if self.device.type == "cuda":
            return self.torch.cuda.max_memory_allocated() - self.baseline
        return proc_status_kib("VmHWM") * 1024 - self.baseline if self.reset_ok else None

    @staticmethod
    def kind(device):
        if device.type == "cuda":
            return "torch.cuda.max_memory_allocated during the case, minus the bytes allocated before it"
        return ("growth of the process's peak resident set (VmHWM) over its resident set before the net was "
                "built (Linux /proc)")


def build_net(torch, arch, size, device, channels_last):
    """Backbone + the study's flatten head (Flatten + Linear(h*w*C, 1)), on the device."""
    nn = torch.nn
    if arch.startswith("densenet"):
        import torchvision
        backbone = nn.Sequential(getattr(torchvision.models, arch)().features, nn.ReLU(inplace=True))
    elif arch == "inception_resnet_v2":
        import timm
        net = timm.create_model("inception_resnet_v2", pretrained=False, num_classes=0)

        class Features(nn.Module):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, x):
                return self.net.forward_features(x)

        backbone = Features(net)
    else:
        raise ValueError(f"unknown arch {arch!r}: densenet121, densenet169, densenet201, inception_resnet_v2")
    backbone.eval()
    with torch.no_grad():
        features = backbone(torch.zeros(1, 3, size, size)).numel()

    class FlattenHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone
            self.classifier = nn.Linear(features, 1)

        def forward(self, x):
            return self.classifier(torch.flatten(self.backbone(x), 1))

    model = FlattenHead().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


class Bench:
    """One net of a variant with its optimizer, loss and synthetic batch."""

    def __init__(self, torch, arch, size, device, variant, train):
        self.torch, self.device, self.size, self.train = torch, device, size, train
        self.bf16 = "bf16" in variant
        self.channels_last = self.bf16
        self.model = build_net(torch, arch, size, device, self.channels_last)
        self.model.train(train)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=STUDY_LR) if train else None
        self.loss_fn = torch.nn.BCEWithLogitsLoss()
        self.forward = self.model
        if variant.startswith("compile"):
            torch._dynamo.reset()
            self.forward = torch.compile(self.model)
        self.images = self.labels = None

    def set_batch(self, batch):
        torch = self.torch
        self.images = self.labels = None
        gen = torch.Generator().manual_seed(2)
        images = torch.rand(batch, 3, self.size, self.size, generator=gen).to(self.device)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        self.images = images
        self.labels = (torch.arange(batch) % 2).float().to(self.device)

    def iteration(self):
        torch = self.torch
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)
        if self.train:
            self.optimizer.zero_grad(set_to_none=True)
            with autocast:
                logits = self.forward(self.images)
                loss = self.loss_fn(logits[:, 0].float(), self.labels)
            loss.backward()
            self.optimizer.step()
            value = loss.item()
            if not math.isfinite(value):
                raise RuntimeError(f"the training loss became {value}")
        else:
            with torch.no_grad(), autocast:
                self.forward(self.images)
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def is_out_of_memory(error):
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text.lower() or "ALLOC_FAILED" in text)


def free_device_memory(torch, device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def fits(bench, batch):
    """True when one iteration at `batch` runs; False on out-of-memory (anything else is raised)."""
    oom = False
    try:
        bench.set_batch(batch)
        bench.iteration()
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
        oom = True
    if oom:  # outside the except block: the traceback no longer holds the step's tensors
        bench.images = bench.labels = None
        if bench.optimizer is not None:
            bench.optimizer.zero_grad(set_to_none=True)
        free_device_memory(bench.torch, bench.device)
    return not oom


def find_max_batch(torch, arch, size, device, eager_variant, train, cap):
    bench = Bench(torch, arch, size, device, eager_variant, train)
    fit, fail, b = 0, 0, min(16, cap)
    while True:
        if not fits(bench, b):
            fail = b
            break
        fit = b
        if b == cap:
            break
        b = min(2 * b, cap)
    if fit == 0:
        b = 1
        while b < fail:
            if not fits(bench, b):
                fail = b
                break
            fit, b = b, 2 * b
        if fit == 0:
            raise RuntimeError(f"not even batch 1 fits on {device}")
    while fail and fail - fit > 8:
        mid = fit + (fail - fit) // 2
        if mid >= 16:
            mid -= mid % 8
        if mid <= fit:
            break
        if fits(bench, mid):
            fit = mid
        else:
            fail = mid
    del bench
    free_device_memory(torch, device)
    print(f"{arch}@{size} {'train' if train else 'infer'} {eager_variant}: largest batch {fit}"
          f"{' (the cap)' if not fail else ''}", file=sys.stderr, flush=True)
    return fit


def profiler_call(function):
    """Calls torch.cuda.profiler.start or stop; False (and nothing raised) when it fails."""
    try:
        function()
        return True
    except Exception:  # noqa: BLE001 - see measure()
        return False


def measure(torch, arch, size, device, variant, train, batch, warmup, iters):
    """Times one case on a fresh net: (status, note, times, peak bytes)."""
    memory = CaseMemory(torch, device)
    times, oom = [], None
    try:
        bench = Bench(torch, arch, size, device, variant, train)
        bench.set_batch(batch)
        for _ in range(warmup):
            bench.iteration()
        # The timed iterations are what a profiler attached to the process should see (cudaProfilerStart/
        # Stop, as our bench marks them; each iteration ends synchronised).
        # A profiler call that fails (no profiler attached may be an error on some drivers) only costs the
        # range, never the measurement.
        profiling = device.type == "cuda"
        if profiling:
            torch.cuda.synchronize()  # the range opens on an idle device
            profiling = profiler_call(torch.cuda.profiler.start)
        try:
            for _ in range(iters):
                start = time.perf_counter()
                bench.iteration()
                times.append(time.perf_counter() - start)
        finally:
            if profiling:
                profiler_call(torch.cuda.profiler.stop)
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
        oom = str(error).splitlines()[0][:300]
    bench = None
    peak = memory.peak_bytes()
    free_device_memory(torch, device)
    if oom:
        return "oom", oom, [], None
    return "ok", "", times, peak


def add_projections(rows):
    """Training rows: 10 epochs of MURA's training set + one pass over its validation set (as ours)."""
    for r in rows:
        r["projected_s"] = None
        if r["mode"] != "train" or r["status"] != "ok":
            continue
        evaluation = [i for i in rows if i["mode"] == "infer" and i["status"] == "ok" and i["variant"] == r["variant"]
                      and i["arch"] == r["arch"] and i["input_size"] == r["input_size"]
                      and i["batch_request"] == r["batch_request"]]
        eval_rate = evaluation[0]["images_per_s"] if evaluation else r["images_per_s"]
        r["projected_s"] = PROJECTED_EPOCHS * MURA_TRAIN_IMAGES / r["images_per_s"] + MURA_VALID_IMAGES / eval_rate


def write_json_atomic(path, document):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def versions(torch, device):
    v = {"torch": torch.__version__, "python": platform.python_version()}
    for name in ("torchvision", "timm"):
        try:
            v[name] = __import__(name).__version__
        except ImportError:
            v[name] = "not installed"
    if device.type == "cuda":
        v["cuda"] = str(torch.version.cuda)
        v["cudnn"] = str(torch.backends.cudnn.version())
    return v


def run(args):
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if device.type == "cpu":
            print("note: no CUDA device; running on the CPU", file=sys.stderr)
    else:
        device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    have_compile = hasattr(torch, "compile")
    device_text = (f"{torch.cuda.get_device_name(device)}" if device.type == "cuda"
                   else f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    document = {
        "format": "mura-bench-v1", "framework": "torch", "device": device_text,
        "versions": versions(torch, device),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "peak_memory_kind": CaseMemory.kind(device), "head": "flatten",
        "protocol": "synthetic data on the device; per-iteration wall time after a device synchronisation; "
                    "median, p10, p90 after warm-up", "rows": []}
    rows = document["rows"]
    print(f"bench_torch on {device_text}; torch {torch.__version__}; warm-up {args.warmup}, timed {args.iters}; "
          "flatten head; synthetic data on the device", flush=True)
    print(f"{'net':20} {'size':>5} {'req':>5} {'batch':>5} {'variant':14} {'mode':5} {'median s':>10} "
          f"{'p10 s':>10} {'p90 s':>10} {'img/s':>10} {'peak MiB':>10}", flush=True)
    modes = [m for m in ("train", "infer") if args.mode in (m, "both")]
    max_batches = {}
    errors = False
    for case in args.cases:
        arch, size = case.split("@")
        size = int(size)
        for request in args.batch_sizes:
            for mode in modes:
                train = mode == "train"
                for variant in args.variants:
                    row = {"variant": variant, "arch": arch, "input_size": size, "batch_request": request,
                           "batch": None, "precision": "bf16" if "bf16" in variant else "f32", "mode": mode,
                           "status": "ok", "note": "", "warmup": args.warmup, "iters": args.iters,
                           "median_s": None, "p10_s": None, "p90_s": None, "images_per_s": None,
                           "peak_bytes": None}
                    try:
                        if variant.startswith("compile") and not have_compile:
                            row["status"] = "skipped"
                            row["note"] = f"torch.compile needs PyTorch 2 (this is {torch.__version__})"
                        elif variant.startswith("compile") and args.compile_batches and \
                                request not in args.compile_batches:
                            row["status"] = "skipped"
                            row["note"] = f"torch.compile ran at batch {','.join(args.compile_batches)} only " \
                                          "(--compile-batches: each batch size compiles afresh)"
                        elif request == "max" and device.type != "cuda":
                            row["status"] = "skipped"
                            row["note"] = "batch max needs CUDA (the CPU has no out-of-memory signal to search by)"
                        else:
                            eager = "eager-bf16-cl" if row["precision"] == "bf16" else "eager-f32"
                            if request == "max":
                                key = (arch, size, mode, eager)
                                if key not in max_batches:
                                    max_batches[key] = find_max_batch(torch, arch, size, device, eager, train,
                                                                      args.max_batch_cap)
                                batch = max_batches[key]
                            else:
                                batch = int(request)
                            status, note, times, peak = measure(torch, arch, size, device, variant, train, batch,
                                                                args.warmup, args.iters)
                            for _ in range(3):  # a max batch that no longer fits: an eighth smaller
                                if status != "oom" or request != "max" or batch <= 8:
                                    break
                                batch -= max(1, batch // 8)
                                print(f"out of memory in the timed run; again at batch {batch}", file=sys.stderr)
                                status, note, times, peak = measure(torch, arch, size, device, variant, train, batch,
                                                                    args.warmup, args.iters)
                            row.update(batch=batch, status=status, note=note, peak_bytes=peak)
                            if status == "ok":
                                median = quantile(times, 0.5)
                                row.update(median_s=median, p10_s=quantile(times, 0.1), p90_s=quantile(times, 0.9),
                                           images_per_s=batch / median)
                    except Exception as error:  # noqa: BLE001 -- the other rows still run; the exit status says so
                        row["status"] = "error"
                        row["note"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
                        errors = True
                        free_device_memory(torch, device)
                    rows.append(row)
                    print_row(row)
                    if args.json:
                        add_projections(rows)
                        write_json_atomic(args.json, document)
    add_projections(rows)
    if args.json:
        write_json_atomic(args.json, document)
        print(f"wrote {args.json}")
    print(f"peak memory: {CaseMemory.kind(device)}")
    return 1 if errors else 0


def print_row(r):
    head = f"{r['arch']:20} {r['input_size']:5} {r['batch_request']:>5} {str(r['batch'] or '-'):>5} " \
           f"{r['variant']:14} {r['mode']:5}"
    if r["status"] == "ok":
        peak = f"{r['peak_bytes'] / 2**20:.0f}" if r["peak_bytes"] is not None else "n/a"
        print(f"{head} {r['median_s']:10.4f} {r['p10_s']:10.4f} {r['p90_s']:10.4f} {r['images_per_s']:10.1f} "
              f"{peak:>10}", flush=True)
    else:
        print(f"{head} {r['status']}{': ' + r['note'][:160] if r['note'] else ''}", flush=True)


# --------------------------------------------------------------------------------------------------------
# The combined table


def fmt_rate(value):
    return "-" if value is None else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def fmt_ratio(ours, theirs):
    return "-" if ours is None or not theirs else f"{ours / theirs:.2f}x"


def fmt_mib(value):
    return "n/a" if value is None else f"{value / 2**20:.0f}"


def combine(ours_path, torch_path):
    """The Markdown table (a string) and the list of target verdicts."""
    def load(path):
        if path and os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        return {"rows": [], "device": "not run", "versions": {}, "date": ""}

    ours, theirs = load(ours_path), load(torch_path)
    device_text = str(ours.get("device", ""))
    card = "H100" if "H100" in device_text else "H200" if "H200" in device_text else None  # absolute targets
    by_key = {}
    for r in theirs["rows"]:
        by_key[(r["arch"], r["input_size"], r["batch_request"], r["mode"], r["variant"])] = r

    def torch_row(r, variant):
        t = by_key.get((r["arch"], r["input_size"], r["batch_request"], r["mode"], variant))
        return t if t and t["status"] == "ok" else None

    def cell(t, r_variant=None):
        if t is None:
            return "-"
        return fmt_rate(t["images_per_s"]) + (f" ({r_variant})" if r_variant else "")

    lines = [
        "| net | size | batch | precision | mode | ours img/s | torch eager f32 | torch eager bf16 CL | torch compile "
        "| ours / eager f32 | ours / eager bf16 CL | ours / compile | peak MiB ours / torch eager (%) | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for r in ours["rows"]:
        rate = r["images_per_s"] if r["status"] == "ok" else None
        f32, bf16 = torch_row(r, "eager-f32"), torch_row(r, "eager-bf16-cl")
        compiled = [(t, v) for v in ("compile-f32", "compile-bf16") for t in [torch_row(r, v)] if t]
        best_compile, best_compile_variant = (max(compiled, key=lambda tv: tv[0]["images_per_s"]) if compiled
                                              else (None, None))
        same_eager = bf16 if r["precision"] == "bf16" else f32
        if r["batch_request"] == "max" and (r["batch"] or same_eager):
            batch = f"max: {r['batch'] or '-'} / {(same_eager or {}).get('batch') or '-'}"
        else:
            batch = r["batch_request"]
        if r["status"] == "ok" and same_eager and r["peak_bytes"] is not None and same_eager["peak_bytes"]:
            memory_share = r["peak_bytes"] / same_eager["peak_bytes"]
            memory = f"{fmt_mib(r['peak_bytes'])} / {fmt_mib(same_eager['peak_bytes'])} ({100 * memory_share:.0f}%)"
        else:
            memory_share = None
            memory = f"{fmt_mib(r['peak_bytes'])} / {fmt_mib(same_eager['peak_bytes']) if same_eager else '-'}"
        ours_cell = fmt_rate(rate) if rate is not None else r["status"]
        # A training row on the GPU says whether its steps were CUDA graph replays; eager ones are marked.
        if rate is not None and r["mode"] == "train" and str(r.get("note", "")).startswith("eager steps"):
            ours_cell += " (" + str(r["note"])[:90].replace("|", "/") + ")"

        # The targets that this row measures.
        targets = []

        def verdict(name, ratio, goal, text, figure=None):
            """goal: the least ratio (ours / PyTorch's) that meets the target; 0: ahead, i.e. above 1.
            figure: what to show instead of the ratio (an absolute target's rate)."""
            if r["status"] != "ok":
                label = f"not measured ({r['status']})"
            elif ratio is None:
                label = "not measured (no PyTorch figure)"
            else:
                label = "met" if (ratio >= goal if goal else ratio > 1) else "missed"
            shown = "" if ratio is None else figure or f"{ratio:.2f}x"
            targets.append(f"{text}: {label}{f' ({shown})' if shown else ''}")
            verdicts.append((name, f"{r['arch']}@{r['input_size']} batch {batch} {r['precision']} {r['mode']}",
                             label, shown))

        def ratio_to(t):
            return rate / t["images_per_s"] if rate is not None and t else None

        def rate_verdict(name, goal, text):
            """An absolute target of images/s (goal): this row's own rate against it."""
            verdict(name, None if rate is None else rate / goal, 1.0, text, f"{fmt_rate(rate)} img/s")

        # The GPU-speed issue (f32/TF32) and the bf16 issue, as they state them: the same run, the same card.
        arch, size, batch_request = r["arch"], r["input_size"], r["batch_request"]
        densenet = arch == "densenet201" and size == 224
        irv2 = arch == "inception_resnet_v2" and size == 299
        compile_same = torch_row(r, "compile-bf16" if r["precision"] == "bf16" else "compile-f32")
        if r["precision"] == "f32" and r["mode"] == "train":
            if densenet and batch_request == "32":
                verdict("DenseNet-201 f32 training at batch 32 >= 2.5x PyTorch eager f32", ratio_to(f32), 2.5,
                        ">= 2.5x eager f32")
                if card:
                    goal = 1100 if card == "H100" else 1400
                    rate_verdict(f"DenseNet-201 f32 training at batch 32 >= {goal:,} img/s ({card})", goal,
                                 f">= {goal:,} img/s")
            if densenet and batch_request == "128":
                verdict("DenseNet-201 f32 training at batch 128 >= 1.5x PyTorch eager f32", ratio_to(f32), 1.5,
                        ">= 1.5x eager f32")
            if irv2:
                verdict("Inception-ResNet-v2 f32 training >= 1.8x PyTorch eager f32", ratio_to(f32), 1.8,
                        ">= 1.8x eager f32")
                if card == "H100" and batch_request == "32":
                    rate_verdict("Inception-ResNet-v2 f32 training at batch 32 >= 800 img/s (H100)", 800,
                                 ">= 800 img/s")
        if r["precision"] == "f32" and r["mode"] == "infer" and (densenet or irv2) and batch_request == "128":
            verdict("Inference f32 at batch 128 >= 1.5x PyTorch eager f32", ratio_to(f32), 1.5, ">= 1.5x eager f32")
            verdict("Inference f32 at batch 128 ahead of torch.compile f32", ratio_to(compile_same), 0,
                    "> compile f32")
        if r["precision"] == "bf16" and r["mode"] == "train" and (densenet or irv2) and batch_request == "128":
            net, goal, ratio_goal = ("DenseNet-201", 2500, 1.5) if densenet else ("Inception-ResNet-v2", 1500, 1.3)
            if card == "H100":
                rate_verdict(f"{net} bf16 training at batch 128 >= {goal:,} img/s (H100)", goal, f">= {goal:,} img/s")
            verdict(f"{net} bf16 training at batch 128 >= {ratio_goal}x PyTorch eager bf16 channels-last",
                    ratio_to(bf16), ratio_goal, f">= {ratio_goal}x eager bf16 CL")
            verdict(f"{net} bf16 training at batch 128 ahead of torch.compile bf16", ratio_to(compile_same), 0,
                    "> compile bf16")
            if densenet:
                efficient = "memory-efficient" in str(r.get("note", ""))
                label = (f"not measured ({r['status']})" if r["status"] != "ok" else
                         "not measured (no PyTorch figure)" if memory_share is None else
                         "met" if memory_share <= 0.50 else "missed")
                shown = "" if memory_share is None else \
                    f"{100 * memory_share:.0f}%{' (memory-efficient)' if efficient else ''}"
                targets.append(f"memory <= 50% of eager bf16: {label}")
                verdicts.append(("DenseNet-201 bf16 peak training memory at batch 128 <= 50% of PyTorch eager bf16's",
                                 f"densenet201@224 batch 128 bf16 train", label, shown))
        if r["mode"] == "train" and r["arch"] in ("densenet201", "inception_resnet_v2") and \
                r.get("projected_s") is not None:
            minutes = r["projected_s"] / 60
            label = "met" if minutes < 10 else "missed"
            targets.append(f"10 epochs + eval < 10 min (projected, no data loading): {label} ({minutes:.1f} min)")
            verdicts.append(("MURA train set x 10 epochs + evaluation in under 10 minutes (projected from "
                             "throughput, data loading excluded)",
                             f"{r['arch']}@{r['input_size']} batch {batch} {r['precision']}", label,
                             f"{minutes:.1f} min"))
        lines.append(
            f"| {r['arch']} | {r['input_size']} | {batch} | {r['precision']} | {r['mode']} | {ours_cell} "
            f"| {cell(f32)} | {cell(bf16)} | {cell(best_compile, best_compile_variant and best_compile_variant[8:])} "
            f"| {fmt_ratio(rate, f32 and f32['images_per_s'])} | {fmt_ratio(rate, bf16 and bf16['images_per_s'])} "
            f"| {fmt_ratio(rate, best_compile and best_compile['images_per_s'])} | {memory} "
            f"| {'; '.join(targets) if targets else '-'} |")

    if not ours["rows"]:
        lines.append("| (no rows of ours: see its log) | | | | | | | | | | | | | |")
    header = [
        f"Date: {ours.get('date') or theirs.get('date')}. Ours on {ours['device']} "
        f"({', '.join(f'{k} {v}' for k, v in ours['versions'].items()) or 'no version details'}); " +
        (f"PyTorch on {theirs['device']} ({', '.join(f'{k} {v}' for k, v in theirs['versions'].items())})."
         if theirs["rows"] else "PyTorch: no figures (see its log)."),
        "",
        "images/s = batch / median of the timed iterations (device-synchronised, after warm-up); ratios are "
        "ours / PyTorch's (above 1: we are faster); torch compile = the faster of torch.compile f32 and bf16 "
        "(in brackets); peak memory: ours / PyTorch eager of the same precision; batch max: ours / PyTorch's "
        "largest. Rows without figures say why (not implemented, skipped, oom, error); a missing PyTorch figure "
        "is '-'.",
        "",
    ]
    # One summary line per target and row that measured it; targets no row measured say so once.
    summary = ["", "| target | measured on | result | figure |", "|---|---|---|---|"]
    names = list(dict.fromkeys(name for name, _, _, _ in verdicts))
    for name in names:
        measured = [v for v in verdicts if v[0] == name and not v[2].startswith("not measured")]
        if measured:
            summary += [f"| {name} | {where} | {label} | {figure} |" for _, where, label, figure in measured]
        else:
            reasons = sorted(set(label[len("not measured ("):-1] for n, _, label, _ in verdicts if n == name))
            summary.append(f"| {name} | - | not measured | {', '.join(reasons)} |")
    if not verdicts:
        summary.append("| (no row of DenseNet-201 or Inception-ResNet-v2 in this run) | - | - | - |")
    # Rows without figures, grouped by side and reason.
    reasons = {}
    for side, doc in (("ours", ours), ("PyTorch", theirs)):
        for r in doc["rows"]:
            if r["status"] != "ok":
                key = (side, r["status"], (r["note"] or "")[:200].replace("|", "/"))
                reasons.setdefault(key, []).append(f"{r['arch']}@{r['input_size']} {r.get('variant', '')} "
                                                   f"{r['batch_request']} {r['mode']}")
    note_lines = ["", "Rows without figures:", ""] if reasons else []
    for (side, status, note), where in sorted(reasons.items()):
        note_lines.append(f"- {side}, {status} ({len(where)} rows{', e.g. ' + where[0] if len(where) > 1 else ': ' + where[0]})"
                          f"{': ' + note if note else ''}")
    return "\n".join(header + lines + summary + note_lines) + "\n", verdicts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES), help="arch@size list")
    parser.add_argument("--batch-sizes", default="32,128", help="batch sizes and `max` (CUDA only)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma list of " + ", ".join(VARIANTS))
    parser.add_argument("--compile-batches", default="",
                        help="batch sizes (of --batch-sizes) the torch.compile variants run at; empty: all")
    parser.add_argument("--mode", default="both", choices=("train", "infer", "both"))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    parser.add_argument("--max-batch-cap", type=int, default=4096)
    parser.add_argument("--json", help="write the rows to this JSON file")
    parser.add_argument("--combine", nargs=2, metavar=("OURS", "TORCH"), help="print the combined table")
    parser.add_argument("--out", help="with --combine: also write the table to this Markdown file")
    args = parser.parse_args()
    if args.combine:
        table, _ = combine(*args.combine)
        print(table, end="")
        if args.out:
            tmp = f"{args.out}.tmp.{os.getpid()}"
            with open(tmp, "w") as f:
                f.write(table)
            os.replace(tmp, args.out)
        return 0
    args.cases = [c for c in args.cases.split(",") if c]
    args.batch_sizes = [b for b in args.batch_sizes.split(",") if b]
    args.variants = [v for v in args.variants.split(",") if v]
    args.compile_batches = [b for b in args.compile_batches.split(",") if b]
    for v in args.variants:
        if v not in VARIANTS:
            parser.error(f"--variants: {v!r} is not one of {', '.join(VARIANTS)}")
    for c in args.cases:
        if "@" not in c or not c.split("@")[1].isdigit():
            parser.error(f"--cases: {c!r} is not arch@size, e.g. densenet201@224")
    for b in args.batch_sizes:
        if b != "max" and not (b.isdigit() and int(b) > 0):
            parser.error(f"--batch-sizes: {b!r} is neither a positive number nor max")
    if args.warmup < 0 or args.iters < 1:
        parser.error("--warmup must be >= 0 and --iters >= 1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
