"""Training throughput of fdae's FDAE presets on one GPU, beside the official code.

Prints a table (preset, batch, precision, compile, images/s, MFU, peak memory) and,
when the official FDAE code is prepared in `.anchors/` (see shared/anchors/README.md),
its images/s measured in the same run on the same card, and the ratio.

    PYTHONPATH=src python3 benchmarks/gpu_throughput.py --official \\
        --batches 32,max --variants bf16,bf16+cl,bf16+compile+cl,bf16+compile+cl+copt

A variant is '+'-joined flags of `fdae.train.fast_step.make_train_step`:
fp32 | bf16 (precision), compile (torch.compile of the loss, forward + backward),
cl (channels-last), copt (torch.compile of the optimizer step), cg (compile mode
"max-autotune-no-cudagraphs" is `mat`, CUDA graphs `cg` = mode "reduce-overhead"),
fradam (the official RAdam on one fused kernel, `fdae.train.fused_radam`, instead of
PyTorch's foreach RAdam), adamw (fused AdamW instead of the official RAdam). Batch `max` is the largest multiple
of 32 that the measured memory per image lets fit (at most --max-batch).

Each timed step includes rendering its batch on the GPU (`shapes3d-synth`, no loader).
MFU = images/s x FLOPs per training image over the bf16 matrix peak measured on this
card in the same run; FLOPs per image are the official code's count (707.5 G, from
.anchors/flops_official_fdae.py) and fdae's own count (torch's flop counter) is printed
beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fdae.config import load_config  # noqa: E402
from fdae.methods import build_method  # noqa: E402
from fdae.train.fast_step import make_train_step  # noqa: E402
from fdae.train.flops import training_flops_per_image  # noqa: E402
from fdae.train.fused_radam import FusedRAdam  # noqa: E402

OFFICIAL_GFLOP_PER_IMAGE = 707.5  # forward + backward, U-Net + CMFNet (official code, legacy attention)


def measured_bf16_peak(n: int = 8192, reps: int = 20) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (start.elapsed_time(end) / 1e3)


def flops_per_image(overrides: list[str]) -> float:
    """Forward + backward FLOPs of one training step, per image."""
    return training_flops_per_image(load_config(None, overrides))


class Batches:
    """Training images rendered on the device by the procedural Shapes3D (noise if absent)."""

    def __init__(self, batch: int, device: str = "cuda"):
        self.batch = batch
        self.device = device
        self.gen = torch.Generator(device=device).manual_seed(0)
        try:
            from fdae.data import get_dataset

            self.ds = get_dataset("shapes3d-synth")
            self.ds.sample_batch(batch, self.gen, device)
            self.source = f"shapes3d-synth ({device} render)"
        except Exception as err:  # the renderer is optional for a throughput figure
            print(f"(procedural data unavailable: {err!r}; timing on noise images)", flush=True)
            self.ds = None
            self.source = "noise"

    def __call__(self) -> torch.Tensor:
        if self.ds is None:
            return torch.rand(self.batch, 3, 64, 64, device=self.device, generator=self.gen) * 2 - 1
        return self.ds.sample_batch(self.batch, self.gen, self.device)[0]


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def parse_variant(variant: str) -> dict:
    parts = set(variant.split("+"))
    known = {"fp32", "bf16", "compile", "cl", "copt", "cg", "mat", "adamw", "fradam"}
    if parts - known:
        raise SystemExit(f"unknown variant flags {sorted(parts - known)} in {variant!r}")
    mode = "reduce-overhead" if "cg" in parts else "max-autotune-no-cudagraphs" if "mat" in parts else None
    return {"precision": "bf16" if "bf16" in parts else "fp32",
            "compile": bool(parts & {"compile", "cg", "mat"}), "compile_mode": mode,
            "channels_last": "cl" in parts, "compile_optimizer": "copt" in parts,
            "optimizer": "adamw" if "adamw" in parts else "fradam" if "fradam" in parts else "radam"}


def build(overrides: list[str], v: dict, device: str = "cuda"):
    torch.manual_seed(0)
    cfg = load_config(None, overrides)
    model = build_method(cfg).to(device)
    params = list(model.parameters())
    if v["optimizer"] == "radam":  # the official optimizer, PyTorch's foreach implementation
        opt = torch.optim.RAdam(params, lr=1e-4, weight_decay=0.0, foreach=True)
    elif v["optimizer"] == "fradam":  # the same algorithm on the fused Adam kernel
        opt = FusedRAdam(params, lr=1e-4, weight_decay=0.0)
    else:
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0, fused=True)
    step = make_train_step(model, opt, precision=v["precision"], compile=v["compile"],
                           compile_mode=v["compile_mode"], channels_last=v["channels_last"],
                           compile_optimizer=v["compile_optimizer"])
    return model, opt, step


def bench(overrides: list[str], batch: int, variant: str, steps: int, warmup: int,
          profile_path: str | None = None, device: str = "cuda") -> dict:
    """Images/s of `steps` training steps after `warmup` (on the CPU: the same code at
    small sizes, to check the script, not to time it)."""
    v = parse_variant(variant)
    model, opt, step = build(overrides, v, device)
    data = Batches(batch, device)
    gen = torch.Generator(device=device).manual_seed(1)
    synchronize(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(warmup):
        step(data(), gen)
    synchronize(device)
    warm_s = time.perf_counter() - t0
    total = torch.zeros((), device=device)
    t0 = time.perf_counter()
    for _ in range(steps):
        total += step(data(), gen)
    synchronize(device)
    sec = time.perf_counter() - t0
    # rendering alone, to see what the data costs inside the timed step
    t0 = time.perf_counter()
    for _ in range(steps):
        data()
    synchronize(device)
    render_s = (time.perf_counter() - t0) / steps
    result = {
        "variant": variant, "batch": batch, **v, "steps": steps, "s_per_step": sec / steps,
        "img_per_s": steps * batch / sec,
        "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
        "warmup_s": warm_s, "render_ms_per_step": render_s * 1e3, "data": data.source,
        "mean_loss": (total / steps).item(),
    }
    if profile_path:
        result["profile"] = profile(step, data, gen, profile_path)
    del model, opt, step, data
    torch._dynamo.reset()
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def kernel_category(name: str) -> str:
    n = name.lower()
    if "flash" in n or "fmha" in n or "attention" in n:
        return "attention (flash)"
    if any(k in n for k in ("nchwtonhwc", "nhwctonchw", "transpose")):
        return "layout transposes"
    if any(k in n for k in ("multi_tensor", "foreach")):
        return "optimizer (foreach)"
    if any(k in n for k in ("gemm", "xmma", "cutlass", "conv", "wgrad", "dgrad", "fprop", "cudnn",
                            "sm90", "sm80", "implicit", "nvjet", "cublas")):
        return "conv / matmul"
    if n.startswith("triton"):
        return "triton (fused pointwise / norm)"
    if any(k in n for k in ("group_norm", "groupnorm", "batch_norm", "bn_", "welford")):
        return "norm (eager)"
    return "other (eager pointwise, copies)"


def profile(step, data, gen, path: str, steps: int = 3) -> dict:
    from torch.profiler import ProfilerActivity, profile as tprofile

    with tprofile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step(data(), gen)
        torch.cuda.synchronize()
    events = prof.key_averages()
    table = events.table(sort_by="self_cuda_time_total", row_limit=40, max_name_column_width=90)
    cats: dict[str, float] = {}
    total = 0.0
    for e in events:
        t = getattr(e, "self_device_time_total", None)
        if t is None:
            t = getattr(e, "self_cuda_time_total", 0.0)
        if t <= 0 or e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        if "#" in e.key or e.key.startswith(("Optimizer.", "ProfilerStep", "Torch-Compiled", "CompiledFunction")):
            continue  # GPU-time annotations of a region: its kernels are counted on their own
        cats[kernel_category(e.key)] = cats.get(kernel_category(e.key), 0.0) + t
        total += t
    share = {k: round(v / total, 4) for k, v in sorted(cats.items(), key=lambda kv: -kv[1])}
    share["gpu_ms_per_step"] = round(total / 1e3 / steps, 2)
    Path(path).write_text(table + "\n\n" + json.dumps(share, indent=1) + "\n")
    return share


def run_official(batch: int, steps: int) -> dict | None:
    anchors = ROOT / ".anchors"
    if not (anchors / "bench_official_fdae.py").exists():
        print("(official code not prepared in .anchors/: see shared/anchors/README.md)")
        return None
    imgs = "/tmp/fdae_anchor_imgs"
    if not Path(imgs).exists():
        subprocess.run([sys.executable, "make_images.py", imgs, "4096"], cwd=anchors, check=True,
                       capture_output=True)
    out = subprocess.run([sys.executable, "bench_official_fdae.py", imgs, str(batch), str(steps)],
                         cwd=anchors, capture_output=True, text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        print("official run failed:\n", out.stdout[-2000:], out.stderr[-4000:])
        return None
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="paper", help="U-Net preset (paper = the official architecture)")
    ap.add_argument("--batches", default="32,max", help="comma list of batch sizes; 'max' = largest that fits")
    ap.add_argument("--variants", default="bf16+compile+cl+copt",
                    help="comma list of '+'-joined flags: fp32|bf16, compile, cl, copt, cg, mat, fradam, adamw")
    ap.add_argument("--max-variants", default=None,
                    help="variants for the 'max' batch (default: the last of --variants)")
    ap.add_argument("--max-batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=6)
    ap.add_argument("--profile", default=None, help="variant@batch to profile, e.g. bf16+compile+cl@32")
    ap.add_argument("--official", action="store_true", help="also time the official code (.anchors/)")
    ap.add_argument("--official-steps", type=int, default=220)
    ap.add_argument("--official-batch", type=int, default=32)
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides key=value")
    ap.add_argument("--out", default=os.environ.get("OUT", ".") + "/gpu_throughput.json")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu: run the same code at small sizes to check the script (no timing value, no MFU)")
    args = ap.parse_args()
    cuda = args.device == "cuda"
    if not cuda and (args.official or args.profile or "max" in args.batches.split(",")):
        raise SystemExit("--official, --profile and batch 'max' need --device cuda")

    overrides = [f"unet.preset={args.preset}", "method.num_concepts=6", f"train.device={args.device}", *args.set]
    info = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version(), "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(sys.argv),
            "gpu_mem_gb": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None}
    info["bf16_peak_tflops"] = measured_bf16_peak() / 1e12 if cuda else None
    info["fdae_gflop_per_image"] = flops_per_image(overrides) / 1e9
    info["official_gflop_per_image"] = OFFICIAL_GFLOP_PER_IMAGE
    with torch.device("meta"):
        info["params"] = sum(p.numel() for p in build_method(load_config(None, overrides)).parameters())
    print(json.dumps(info), flush=True)
    # the official code first (a subprocess, about a minute), so a cut-off run still has it
    official = run_official(args.official_batch, args.official_steps) if args.official else None
    info["official"] = official
    print(json.dumps({"official": official}), flush=True)
    peak = info["bf16_peak_tflops"] * 1e12 if cuda else float("nan")
    rows: list[dict] = []
    outdir = Path(args.out).parent
    outdir.mkdir(parents=True, exist_ok=True)

    def record(r: dict) -> None:
        r["preset"] = args.preset
        r["mfu"] = r["img_per_s"] * OFFICIAL_GFLOP_PER_IMAGE * 1e9 / peak
        r["mfu_fdae_count"] = r["img_per_s"] * info["fdae_gflop_per_image"] * 1e9 / peak
        rows.append(r)
        print(json.dumps(r), flush=True)
        Path(args.out).write_text(json.dumps({"info": info, "rows": rows}, indent=1))

    variants = args.variants.split(",")
    prof_variant, _, prof_batch = (args.profile or "").partition("@")
    for batch_s in args.batches.split(","):
        if batch_s == "max":
            want_compile = parse_variant((args.max_variants or variants[-1]).split(",")[0])["compile"]
            same = [r for r in rows if r["compile"] == want_compile] or rows
            # fp32 parameters, gradients and two optimizer moments do not grow with the batch
            static = 16 * info["params"] / 2**30
            per_img = max(((r["peak_mem_gb"] - static) / r["batch"] for r in same), default=None)
            budget = 0.85 * info["gpu_mem_gb"] - static
            batch = max(32, min(args.max_batch, int(budget / per_img) // 32 * 32)) if per_img else 128
            todo = (args.max_variants or variants[-1]).split(",")
        else:
            batch, todo = int(batch_s), variants
        for variant in todo:
            prof = None
            if variant == prof_variant and str(batch) == (prof_batch or str(batch)):
                prof = str(outdir / f"profile_{variant.replace('+', '_')}_b{batch}.txt")
            try:
                record(bench(overrides, batch, variant, args.steps, args.warmup, prof, args.device))
            except torch.OutOfMemoryError:
                print(f"batch {batch} {variant}: out of memory", flush=True)
                torch._dynamo.reset()
                torch.cuda.empty_cache()

    print(f"\n{info['device']}, torch {info['torch']}, bf16 peak {peak / 1e12:.0f} TFLOP/s "
          f"(measured), {OFFICIAL_GFLOP_PER_IMAGE} GFLOP/image (official count; fdae's counter: "
          f"{info['fdae_gflop_per_image']:.1f})")
    print("\n| code | preset | batch | precision | compile | flags | images/s | MFU | peak mem (GiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    if official:
        print(f"| official FDAE (train.sh, fp16 AMP, RAdam) | paper | {official['batch']} | fp16 | no | - "
              f"| {official['img_per_s']:.1f} | {official['img_per_s'] * OFFICIAL_GFLOP_PER_IMAGE * 1e9 / peak:.1%} | - |")
    for r in rows:
        flags = "+".join(f for f in ("cl", "copt", "fradam", "adamw") if f in r["variant"].split("+")) or "-"
        comp = (r["compile_mode"] or "default") if r["compile"] else "no"
        mem = f"{r['peak_mem_gb']:.1f}" if r["peak_mem_gb"] is not None else "-"
        print(f"| fdae | {r['preset']} | {r['batch']} | {r['precision']} | {comp} | {flags} "
              f"| {r['img_per_s']:.1f} | {r['mfu']:.1%} | {mem} |")
    if official and rows:
        base = official["img_per_s"]
        b32 = max((r["img_per_s"] for r in rows if r["batch"] == 32), default=None)
        best = max(rows, key=lambda r: r["img_per_s"])
        if b32:
            print(f"\nratio vs official batch {official['batch']}: fdae batch 32 {b32 / base:.2f}x; "
                  f"best (batch {best['batch']}) {best['img_per_s'] / base:.2f}x")


if __name__ == "__main__":
    main()
