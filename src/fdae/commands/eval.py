"""`fdae eval REPR`: disentanglement metrics of a representation on a dataset.

REPR is one of
  oracle    the true factor indices scaled to [0, 1] plus N(0, 0.01^2) noise (one code
            per factor; it reads the sampled factors, not the images): the best case,
            every metric near its maximum;
  random    10 standard-normal codes independent of the image: the worst case;
  RUN_DIR   a trained run directory or checkpoint file (loaded by `load_run_encoder`),
            evaluated on its own dataset unless --dataset names another.

The result JSON records the dataset (name and whether it is procedural), the protocol,
every setting, the representation's groups, all scores and timings.

A trained run is evaluated with its own settings (the `eval:` section and seed of
RUN_DIR/config.yaml: protocol, metrics, sample and vote counts), so the numbers match its
eval.jsonl; flags override them. Progress is a bar over the images to encode, with an
estimate of the time left. Each metric's result is saved as soon as it finishes (to
--out, or for a run to RUN_DIR/eval_results/), marked incomplete until the last one; the
same command run again after an interruption computes only the metrics still missing.

Image folders (data.name=folder:PATH) have no factors. `--probe linear` reads their
labels.csv instead: a linear classifier per attribute on the PCA'd content codes, mean
held-out accuracy (`fdae.metrics.probe`). The metrics run on a folder only when its
labels form a full factor grid; otherwise the command says which labels it needs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable

import numpy as np

from fdae.errors import FdaeError
from fdae.train.distributed import resolve_device

REFERENCE_REPRESENTATIONS = ("oracle", "random")
DEFAULT_DATASET = "shapes3d-synth"


# ----------------------------------------------------------- reference representations
class OracleEncoder:
    """Codes = factor indices / (size - 1) + N(0, noise^2), one code per factor.

    It is called with the sampled factors (`uses_factors`), so it measures what the
    metrics give a perfectly disentangled representation. The noise comes from its own
    generator: the dataset's random stream is untouched."""

    uses_factors = True

    def __init__(self, factor_sizes, noise: float = 0.01, seed: int = 0):
        self.scale = np.maximum(np.asarray(factor_sizes, dtype=np.float64) - 1.0, 1.0)
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)

    def __call__(self, images, factors=None):
        if factors is None:
            raise FdaeError("the oracle representation needs the true factors; call it through fdae.metrics.")
        f = np.asarray(factors, dtype=np.float64) / self.scale
        return (f + self.noise * self.rng.standard_normal(f.shape)).astype(np.float32)


class RandomEncoder:
    """`dim` standard-normal codes per image, independent of the image."""

    def __init__(self, dim: int = 10, seed: int = 0):
        self.dim = int(dim)
        self.rng = np.random.default_rng(seed)

    def __call__(self, images):
        return self.rng.standard_normal((images.shape[0], self.dim)).astype(np.float32)


# ------------------------------------------------------------------- trained runs
def load_run_encoder(run_dir: str, device, dataset=None) -> tuple[Callable, list | None, str]:
    """Hook for trained runs: (encode, groups, description) of the model in `run_dir`.

    Loading is `fdae.train.checkpoint`'s job (`load_run(run_dir, device=..., dataset=...)`
    returning the method in eval mode; the method has `encode(images) -> (n, d)` and
    `groups`). The returned `encode` carries the run's dataset as `encode.dataset`, so a
    run is evaluated on what it was trained on unless --dataset says otherwise."""
    try:
        checkpoint = importlib.import_module("fdae.train.checkpoint")
    except ModuleNotFoundError as err:
        if err.name in ("fdae.train.checkpoint", "fdae.train"):
            raise FdaeError(
                f"{run_dir!r} looks like a run directory, but evaluating a trained run needs "
                "fdae.train.checkpoint, which this version of fdae does not have; "
                "evaluate 'oracle' or 'random' instead."
            ) from None
        raise
    if hasattr(checkpoint, "load_run"):
        loaded = checkpoint.load_run(run_dir, device=device, dataset=dataset)
        model, run_dataset = loaded.method, loaded.dataset
        what = f"trained run {loaded.run_dir} (step {loaded.step}, {type(model).__name__}" + (
            ", EMA weights)" if loaded.used_ema else ")")
    elif hasattr(checkpoint, "load_model"):
        model, run_dataset = checkpoint.load_model(run_dir, device=device), dataset
        what = f"trained run {run_dir} ({type(model).__name__})"
    else:
        raise FdaeError(
            "fdae.train.checkpoint has neither load_run nor load_model; trained-run evaluation is not wired yet."
        )
    if hasattr(model, "eval"):
        model.eval()

    def encode(images):
        out = model.encode(images.to(device) if device is not None else images)
        return getattr(out, "codes", out)

    encode.dataset = run_dataset
    encode.paper_concepts = getattr(model, "paper_concepts", None)  # the paper protocol's N
    groups = getattr(model, "groups", None)
    if callable(groups):
        groups = groups()
    return encode, ([tuple(g) for g in groups] if groups is not None else None), what


def resolve_representation(spec: str, dataset, device) -> tuple[Callable, list | None, str]:
    """REPR string -> (encode, groups, description)."""
    if spec == "oracle":
        names = list(getattr(dataset, "factor_names", [f"factor{i}" for i in range(len(dataset.factor_sizes))]))
        groups = [(n, 1) for n in names]
        return OracleEncoder(dataset.factor_sizes), groups, (
            "oracle: factor indices scaled to [0, 1] + N(0, 0.01^2) noise, one code per factor (reads the true factors)"
        )
    if spec == "random":
        enc = RandomEncoder(10)
        groups = [(f"random{i}", 2) for i in range(5)]
        return enc, groups, "random: 10 standard-normal codes independent of the image (5 groups of 2)"
    if os.path.exists(spec):
        return load_run_encoder(spec, device, dataset)
    raise FdaeError(
        f"unknown representation {spec!r}: give 'oracle', 'random', or the directory of a trained run "
        "(no such file or directory)."
    )


# ---------------------------------------------------------------------- datasets
def load_dataset(name: str, data_root: str | None, run_spec: str | None = None):
    """The dataset `name`; an image folder is read at the resolution of the run `run_spec`."""
    try:
        data = importlib.import_module("fdae.data")
        get_dataset = data.get_dataset
    except (ModuleNotFoundError, AttributeError):
        raise FdaeError("fdae.data.get_dataset is not available in this installation; datasets are needed to evaluate.") from None
    if name.startswith("folder:"):
        return get_dataset(name, root=data_root, image_size=_run_image_size(run_spec))
    return get_dataset(name, root=data_root)


def _run_image_size(run_spec: str | None) -> int | None:
    if run_spec is None or run_spec in REFERENCE_REPRESENTATIONS or not os.path.exists(run_spec):
        return None
    from fdae.train.checkpoint import resolve_checkpoint, run_config

    run_dir, _ = resolve_checkpoint(run_spec)
    return getattr(run_config(run_dir).data, "image_size", None)


def with_factors(dataset):
    """A dataset the metrics can sample: itself, a labelled folder's factor grid, or one
    FdaeError saying which labels a folder needs (and that --probe linear exists)."""
    from fdae.data.folder import as_ground_truth

    return as_ground_truth(dataset)


# ------------------------------------------------------------------------ output
def format_table(result: dict) -> str:
    from fdae.metrics.protocol import summary

    rows = summary(result)
    width = max([len(k) for k in rows] + [6])
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  ------"]
    for k, v in rows.items():
        val = f"{v:d}" if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else f"{v:.4f}"
        lines.append(f"{k.ljust(width)}  {val}")
    return "\n".join(lines)


def plot_importance(result: dict, path: str) -> None:
    """DCI importance matrix (codes x factors) as a heatmap PNG."""
    dci = result.get("metrics", {}).get("dci")
    if dci is None:
        raise FdaeError("--plot draws DCI's importance matrix: include dci in --metrics.")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = np.asarray(dci["importance_matrix"], dtype=np.float64)
    factor_names = result["dataset"].get("factor_names") or [f"f{j}" for j in range(r.shape[1])]
    code_labels = _code_labels(result, r.shape[0])
    fig_h = max(2.5, 0.28 * r.shape[0] + 1.5)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * r.shape[1] + 2.5), fig_h))
    im = ax.imshow(r, aspect="auto", cmap="viridis", vmin=0.0)
    ax.set_xticks(range(r.shape[1]), factor_names, rotation=45, ha="right")
    ax.set_yticks(range(r.shape[0]), code_labels)
    ax.set_xlabel("factor")
    ax.set_ylabel("code")
    ax.set_title(f"DCI importance (D={dci['disentanglement']:.3f}, C={dci['completeness']:.3f}; {result['protocol']})",
                 fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _code_labels(result: dict, n: int) -> list[str]:
    groups = result.get("groups")
    labels: list[str] = []
    if groups:
        if result["protocol"] == "paper":
            dims = result["settings"].get("paper", {}).get("reduced_dims") or [s for _, s in groups]
        elif result["protocol"] == "unit-pca":
            dims = [1] * len(groups)
        else:
            dims = [s for _, s in groups]
        for (name, _), d in zip(groups, dims):
            labels += [name] if d == 1 else [f"{name}[{i}]" for i in range(d)]
    return labels if len(labels) == n else [f"z{i}" for i in range(n)]


# --------------------------------------------------------------------------- command
def _check_outputs(args: argparse.Namespace) -> None:
    """Output paths and --plot's needs, checked before any evaluation work."""
    from fdae.errors import require_output_file

    if args.out:
        require_output_file(args.out, "--out", (".json",))
    if args.plot:
        require_output_file(args.plot, "--plot", (".png", ".pdf", ".svg"))
        from fdae.metrics.protocol import parse_metrics

        if "dci" not in parse_metrics(args.metrics, args.protocol):
            raise FdaeError("--plot draws DCI's importance matrix: include dci in --metrics.")
    if args.encode_batch_size < 1:
        raise FdaeError("--encode-batch-size must be at least 1")


REFERENCE_DEFAULTS = {"protocol": "dlib", "metrics": None, "num_train": 10000, "num_test": 5000,
                      "vote_batch_size": 64, "seed": 0}


def apply_run_settings(args: argparse.Namespace, say) -> str | None:
    """Fill the settings no flag gave: a trained run's own (its config's `eval:` section
    and seed), else the reference defaults. Returns the run directory, or None."""
    spec = args.representation
    run_dir = None
    defaults = dict(REFERENCE_DEFAULTS, votes_train=None, votes_eval=None)
    if spec not in REFERENCE_REPRESENTATIONS and os.path.exists(spec):
        from fdae.train.checkpoint import is_run_dir, resolve_checkpoint, run_config

        run_dir = str(resolve_checkpoint(spec)[0])
        if is_run_dir(run_dir):
            cfg = run_config(run_dir)
            e = cfg.eval
            protocol = args.protocol or e.protocol
            defaults = {"protocol": e.protocol, "metrics": ",".join(e.metrics) if protocol == e.protocol else None,
                        "num_train": e.num_train, "num_test": e.num_test, "votes_train": e.num_votes_train,
                        "votes_eval": e.num_votes_eval, "vote_batch_size": e.batch_size, "seed": cfg.seed}
            given = [f"--{k.replace('_', '-')}" for k in defaults if getattr(args, k) is not None]
            say(f"settings from {run_dir}/config.yaml (eval: section and seed)"
                + (f", overridden by {', '.join(given)}" if given else ""))
    # Votes follow an explicit --num-train/--num-test, as documented, before the run's own.
    if args.votes_train is None and args.num_train is not None:
        args.votes_train = args.num_train
    if args.votes_eval is None and args.num_test is not None:
        args.votes_eval = args.num_test
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return run_dir


def images_to_encode(names: list[str], args: argparse.Namespace) -> int:
    """How many images the metrics will encode (the progress bar's total)."""
    votes_train = args.num_train if args.votes_train is None else args.votes_train
    votes_eval = args.num_test if args.votes_eval is None else args.votes_eval
    total = 0
    if any(m in names for m in ("dci", "mig", "sap", "modularity")):
        total += args.num_train + (args.num_test if any(m in names for m in ("dci", "sap", "modularity")) else 0)
    if "factor_vae" in names:
        total += votes_train + (votes_train + votes_eval) * args.vote_batch_size
    if "beta_vae" in names:
        total += 2 * (votes_train + votes_eval) * args.vote_batch_size
    if getattr(args, "protocol", None) == "unit-pca":  # the per-unit PCA's own fit set
        total += args.num_train
    return total


class CountingEncoder:
    """`encode`, advancing a progress bar by the images it encodes."""

    def __init__(self, encode: Callable, bar):
        self.encode, self.bar = encode, bar
        self.uses_factors = bool(getattr(encode, "uses_factors", False))
        self.dataset = getattr(encode, "dataset", None)

    def __call__(self, images, **kwargs):
        out = self.encode(images, **kwargs)
        self.bar.update(int(images.shape[0]))
        return out


class PartialResults:
    """Each finished metric saved at once (atomically), marked incomplete until the end;
    an incomplete file from the same evaluation (same checkpoint and settings) supplies
    the metrics it already holds."""

    def __init__(self, path: str | None, key: dict, reusable: bool, explicit: bool, say):
        from pathlib import Path

        self.path = Path(path) if path else None
        self.key, self.explicit, self.say = key, explicit, say
        self.previous: dict = {}
        if self.path is not None and reusable and self.path.is_file():
            import json

            try:
                old = json.loads(self.path.read_text())
            except (OSError, ValueError):
                old = {}
            if isinstance(old, dict) and old.get("complete") is False and old.get("key") == key:
                self.previous = old

    def done(self) -> list[str]:
        return list((self.previous.get("metrics") or {}).keys())

    def merge(self, result: dict) -> dict:
        """`result` with the metrics (and their settings, seconds) of the earlier attempt."""
        if not self.previous:
            return result
        merged = dict(result)
        for part in ("metrics", "seconds", "settings"):
            merged[part] = {**(self.previous.get(part) or {}), **(result.get(part) or {})}
        if merged.get("groups") is None:
            merged["groups"] = self.previous.get("groups")
        return merged

    def save(self, result: dict, complete: bool) -> None:
        if self.path is None:
            return
        from fdae.errors import writing
        from fdae.metrics.utils import write_json

        out = dict(self.merge(result), complete=complete, key=self.key)
        try:
            with writing(self.path, "pass --out FILE.json somewhere writable"):
                write_json(out, self.path)
        except FdaeError as err:
            if self.explicit:
                raise
            self.say(f"results not saved as they finish: {err}")
            self.path = None


def run(args: argparse.Namespace) -> int:
    from fdae.metrics.protocol import evaluate, parse_metrics

    if getattr(args, "probe", None):
        return run_probe(args)
    quiet = getattr(args, "quiet", False)
    say = (lambda msg: None) if quiet else (lambda msg: _write(f"[eval] {msg}"))
    tracking, rest = split_content_tracking(args.metrics)
    tracked = None
    if tracking:
        tracked = run_content_tracking(args, say, alone=rest is None)
        if rest is None:
            return 0
        args.metrics = rest
    device = resolve_device(args.device, source="--device")
    run_dir = apply_run_settings(args, say)
    _check_outputs(args)
    names = parse_metrics(args.metrics, args.protocol)
    spec = args.representation
    name = args.dataset or (DEFAULT_DATASET if spec in REFERENCE_REPRESENTATIONS or not os.path.exists(spec) else None)
    if name is None and args.data_root:  # the run's own dataset, read from the root given here
        from fdae.train.checkpoint import resolve_checkpoint, run_config

        name = run_config(resolve_checkpoint(spec)[0]).data.name
    dataset = load_dataset(name, args.data_root, spec) if name else None  # None: the run's own dataset
    if dataset is not None and spec in REFERENCE_REPRESENTATIONS:
        dataset = with_factors(dataset)
    encode, groups, description = resolve_representation(spec, dataset, device)
    if dataset is None:
        dataset = encode.dataset
    dataset = with_factors(dataset)
    say(f"{description}")
    say(f"dataset {getattr(dataset, 'name', args.dataset)}, protocol {args.protocol}, seed {args.seed}, "
        f"{args.num_train} train / {args.num_test} test samples, votes {args.votes_train}/{args.votes_eval} "
        f"of {args.vote_batch_size} images")
    out = args.out
    if out is None and run_dir is not None:
        step = _step_of_description(description)
        out = os.path.join(run_dir, "eval_results", f"step_{step:08d}-{args.protocol}-seed{args.seed}.json")
    key = {"representation": description, "dataset": getattr(dataset, "name", None), "data_root": args.data_root,
           "protocol": args.protocol, "seed": args.seed, "num_train": args.num_train, "num_test": args.num_test,
           "votes_train": args.votes_train, "votes_eval": args.votes_eval, "vote_batch_size": args.vote_batch_size,
           "dci_mode": args.dci}
    partial = PartialResults(out, key, reusable=run_dir is not None, explicit=args.out is not None, say=say)
    todo = [m for m in names if m not in partial.done()]
    if partial.done():
        say(f"{', '.join(partial.done())} already computed in {partial.path} (an interrupted evaluation); "
            f"computing {', '.join(todo) or 'nothing more'}")
    from tqdm import tqdm

    bar = tqdm(total=images_to_encode(todo, args), unit="img", unit_scale=True, desc="images encoded",
               disable=quiet, file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
    try:
        result = evaluate(
            dataset, CountingEncoder(encode, bar), metrics=todo, protocol=args.protocol,
            random_state=args.seed, groups=groups, num_train=args.num_train, num_test=args.num_test,
            num_votes_train=args.votes_train, num_votes_eval=args.votes_eval, vote_batch_size=args.vote_batch_size,
            device=device, n_jobs=args.jobs, progress=say, encode_batch_size=args.encode_batch_size,
            dci_mode=args.dci,
            on_metric=lambda metric, so_far: partial.save(so_far, complete=False),
            concepts=getattr(encode, "paper_concepts", None),
        ) if todo else {k: v for k, v in partial.previous.items() if k not in ("complete", "key")}
    except KeyboardInterrupt:
        bar.close()
        if partial.path is not None and partial.path.is_file():
            _write(f"fdae: interrupted; the metrics finished so far are saved in {partial.path}: run the same "
                   f"command again to compute only the rest")
        raise
    finally:
        bar.close()
    result = partial.merge(result)
    result["metrics"] = {m: result["metrics"][m] for m in names if m in result["metrics"]}
    if tracked is not None:
        result["metrics"]["content_tracking"] = tracked
    result["representation"] = {"spec": args.representation, "description": description}
    result["dataset"]["data_root"] = args.data_root
    kind = result["dataset"].get("procedural")
    kind_txt = "" if kind is None else (" (procedural)" if kind else " (real files)")
    print(f"{args.representation} on {result['dataset'].get('name', name)}{kind_txt}, protocol {args.protocol}, "
          f"seed {args.seed}")
    print(format_table(result))
    partial.previous = {}
    partial.save(result, complete=True)
    if partial.path is not None:
        print(f"wrote {partial.path}")
    if args.plot:
        plot_importance(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _write(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def _step_of_description(description: str) -> int:
    import re

    found = re.search(r"\(step (\d+)", description)
    return int(found.group(1)) if found else 0


CONTENT_TRACKING = ("content_tracking", "content-tracking")


def split_content_tracking(metrics: str | None) -> tuple[bool, str | None]:
    """Whether --metrics asks for content tracking, and the other metrics it names (None: none)."""
    if not metrics:
        return False, metrics
    names = [m for m in metrics.replace(" ", "").split(",") if m]
    rest = [m for m in names if m not in CONTENT_TRACKING]
    if len(rest) == len(names):
        return False, metrics
    return True, (",".join(rest) or None)


def run_content_tracking(args: argparse.Namespace, say, alone: bool) -> dict:
    """`fdae eval RUN_DIR --metrics content_tracking`: the label-free score
    (`fdae.metrics.content_tracking`) of a trained run, on its own dataset or --dataset
    (any dataset, image folders without labels included). Printed, and saved (to --out
    when it is the only metric, else RUN_DIR/eval_results/) as it finishes."""
    from fdae.metrics.content_tracking import content_tracking
    from fdae.train.checkpoint import load_run

    spec = args.representation
    if spec in REFERENCE_REPRESENTATIONS or not os.path.exists(spec):
        raise FdaeError(f"content tracking decodes moved codes, so it needs a trained run directory; {spec!r} is "
                        "not one (give RUN_DIR)")
    if args.out and alone:
        from fdae.errors import require_output_file

        require_output_file(args.out, "--out", (".json",))
    device = resolve_device(args.device, source="--device")
    dataset = load_dataset(args.dataset, args.data_root, spec) if args.dataset else None
    loaded = load_run(spec, device=device, dataset=dataset)
    method = loaded.method.eval()
    dataset = dataset if dataset is not None else loaded.dataset
    axes, axes_note = None, "the method's traversal axes"
    if args.ct_axes == "navigation":
        from fdae.navigation import load_navigation

        navigator = load_navigation(loaded.run_dir, device)
        if navigator is None:
            raise FdaeError(f"--ct-axes navigation reads {loaded.run_dir}/navigation.pt, which does not exist; run "
                            f"`fdae navigate {loaded.run_dir}` first")
        gen = __import__("torch").Generator().manual_seed(args.seed or 0)
        sample = dataset.sample_batch(args.ct_images, gen)[0].to(device)
        axes, axes_note = navigator.axes(method.encode(sample)), "the navigation directions"
    seed = 0 if args.seed is None else args.seed
    say(f"content tracking of {loaded.run_dir} (step {loaded.step}) on {getattr(dataset, 'name', dataset)}: "
        f"{args.ct_images} images, {axes_note}, {args.ct_steps} sampling steps")
    result = content_tracking(method, dataset, num_images=args.ct_images, units=args.ct_units,
                              steps=args.ct_steps, seed=seed, axes=axes, device=device)
    result["axes_source"] = args.ct_axes
    print(f"{spec} on {getattr(dataset, 'name', dataset)}, content tracking (no labels), seed {seed}")
    print(f"tracking     {result['tracking']:.4f}\nconsistency  {result['consistency']:.4f}\n"
          f"active units {result['active_units']} of {result['units']}")
    out = args.out if (args.out and alone) else os.path.join(
        str(loaded.run_dir), "eval_results", f"step_{loaded.step:08d}-content_tracking-seed{seed}.json")
    from fdae.errors import writing
    from fdae.metrics.utils import write_json

    with writing(out, "pass --out FILE.json somewhere writable"):
        write_json({"representation": {"spec": spec, "step": loaded.step},
                    "dataset": {"name": getattr(dataset, "name", None)},
                    "metrics": {"content_tracking": result}}, out)
    print(f"wrote {out}")
    return result


def format_probe(result: dict) -> str:
    rows = result["attributes"]
    width = max([len(k) for k in rows] + [9])
    lines = [f"{'attribute'.ljust(width)}  classes  accuracy  majority", f"{'-' * width}  -------  --------  --------"]
    for name, r in rows.items():
        if "skipped" in r:
            lines.append(f"{name.ljust(width)}  {r['num_classes']:>7d}  skipped: {r['skipped']}")
        else:
            lines.append(f"{name.ljust(width)}  {r['num_classes']:>7d}  {r['accuracy']:8.4f}  {r['majority_baseline']:8.4f}")
    lines.append(f"{'mean'.ljust(width)}  {'':7s}  {result['mean_accuracy']:8.4f}")
    return "\n".join(lines)


def run_probe(args: argparse.Namespace) -> int:
    """`fdae eval REPR --probe linear`: linear probe of labels.csv attributes (image folders)."""
    from fdae.data.folder import ImageFolder
    from fdae.metrics.probe import probe_folder

    if args.probe != "linear":
        raise FdaeError(f"unknown probe {args.probe!r}; the one probe is 'linear'.")
    if args.plot:
        raise FdaeError("--plot draws DCI's importance matrix, which the linear probe does not compute; drop --plot.")
    _check_outputs(args)
    args.seed = 0 if args.seed is None else args.seed
    spec = args.representation
    if spec == "oracle":
        raise FdaeError("the oracle reads ground-truth factors, not images, so there is nothing to probe; "
                        "probe a trained run (RUN_DIR) or 'random'.")
    device = resolve_device(args.device, source="--device")
    if args.dataset is None and spec in REFERENCE_REPRESENTATIONS:
        raise FdaeError(f"--probe linear with {spec!r} needs --dataset folder:PATH (a labelled image folder).")
    dataset = load_dataset(args.dataset, args.data_root, spec) if args.dataset else None
    encode, groups, description = resolve_representation(spec, dataset, device)
    if dataset is None:
        dataset = encode.dataset
    if not isinstance(dataset, ImageFolder):
        raise FdaeError(
            f"--probe linear reads the labels.csv of an image folder, and {getattr(dataset, 'name', dataset)} is a "
            "ground-truth dataset: evaluate it without --probe (the metrics use its factors), or pass "
            "--dataset folder:PATH.")
    quiet = getattr(args, "quiet", False)
    say = (lambda msg: None) if quiet else (lambda msg: print(f"[eval] {msg}", file=sys.stderr, flush=True))
    say(description)
    say(f"linear probe on {dataset.describe()}")
    result = probe_folder(dataset, encode, groups, device=device, batch_size=args.encode_batch_size,
                          pca_dims=args.pca_dims, test_fraction=args.test_fraction, random_state=args.seed)
    result["representation"] = {"spec": spec, "description": description}
    d = result["dataset"]
    used = result["groups_used"]
    used_txt = f"{used[0]}..{used[-1]}" if len(used) > 2 else ", ".join(used)
    print(f"{spec} on {d['name']} ({d['num_labelled']} of {d['num_images']} images labelled), linear probe, seed {args.seed}")
    print(f"codes: {used_txt} ({result['code_dims_used']} dims) -> PCA {result['pca_dims']} dims; "
          f"{result['num_train']} training / {result['num_test']} held-out images")
    print(format_probe(result))
    if args.out:
        from fdae.metrics.utils import write_json

        write_json(result, args.out)
        print(f"wrote {args.out}")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval",
        help="disentanglement metrics of a representation (oracle, random, or a trained run)",
        description=(
            "Evaluate a representation with DCI, MIG, SAP, modularity/explicitness, FactorVAE and "
            "BetaVAE scores, drawing samples exactly as disentanglement_lib does (--protocol dlib) "
            "or with the FDAE paper's per-group PCA (--protocol paper: dci, factor_vae, mig)."
        ),
    )
    p.add_argument("representation", metavar="REPR", help="oracle | random | RUN_DIR (a trained run)")
    p.add_argument("--dataset", default=None,
                   help="dataset name (default: a run's own dataset; shapes3d-synth, procedural, for oracle/random)")
    p.add_argument("--data-root", default=None, help="folder with the real dataset files")
    p.add_argument("--protocol", choices=("dlib", "paper", "unit-pca"), default=None,
                   help="dlib: the standard disentanglement_lib protocol; paper: FDAE's published protocol; "
                        "unit-pca: DisDiff's and EncDiff's (each unit reduced to one PCA dimension, then dlib) "
                        "(default: a run's eval.protocol, else dlib)")
    p.add_argument("--metrics", default=None,
                   help="comma-separated subset of dci,mig,sap,modularity,factor_vae,beta_vae (default: a run's "
                        "eval.metrics under its own protocol, else all of the protocol); content_tracking, the "
                        "label-free score of a trained run, works on any dataset, image folders without labels too")
    p.add_argument("--num-train", type=int, default=None,
                   help="training samples / votes (default: a run's eval.num_train, else 10000)")
    p.add_argument("--num-test", type=int, default=None,
                   help="test samples / eval votes (default: a run's eval.num_test, else 5000)")
    p.add_argument("--votes-train", type=int, default=None,
                   help="FactorVAE/BetaVAE training votes and FactorVAE variance samples (default: --num-train if "
                        "given, else a run's eval.num_votes_train, else the number of training samples)")
    p.add_argument("--votes-eval", type=int, default=None,
                   help="FactorVAE/BetaVAE eval votes (default: --num-test if given, else a run's "
                        "eval.num_votes_eval, else the number of test samples)")
    p.add_argument("--vote-batch-size", type=int, default=None,
                   help="images per FactorVAE/BetaVAE vote (default: a run's eval.batch_size, else 64)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of every metric's RandomState (default: a run's seed, else 0)")
    p.add_argument("--device", default="auto", help="device of the encoder: cpu, cuda, cuda:N, auto (default)")
    p.add_argument("--encode-batch-size", type=int, default=512, help="images per encoder call (default 512)")
    p.add_argument("--jobs", type=int, default=None, help="parallel classifier fits (default: all CPU cores)")
    p.add_argument("--out", default=None, help="write the full result as JSON here")
    p.add_argument("--plot", default=None, help="write DCI's importance matrix as a heatmap PNG here")
    p.add_argument("--dci", choices=("exact", "fast"), default="exact",
                   help="DCI's classifiers: exact (disentanglement_lib's boosted trees, the default) or fast "
                        "(histogram boosting; for large sets, see BENCHMARKS.md 'Fast DCI'); recorded in the results")
    p.add_argument("--probe", choices=("linear",), default=None,
                   help="linear: probe the labels.csv attributes of an image folder with a linear classifier on "
                        "the PCA'd content codes (mean held-out accuracy) instead of the metrics")
    p.add_argument("--pca-dims", type=int, default=36, help="--probe: PCA dimensions of the content codes (default 36)")
    p.add_argument("--test-fraction", type=float, default=0.25,
                   help="--probe: fraction of the labelled images held out (default 0.25)")
    p.add_argument("--ct-images", type=int, default=64,
                   help="content_tracking: images whose codes are moved (default 64)")
    p.add_argument("--ct-units", type=int, default=10,
                   help="content_tracking: at most this many of the method's axes (default 10)")
    p.add_argument("--ct-steps", type=int, default=10,
                   help="content_tracking: sampling steps of a diffusion decoder (default 10)")
    p.add_argument("--ct-axes", choices=("units", "navigation"), default="units",
                   help="content_tracking: move the method's own units / principal directions (default), or the "
                        "directions `fdae navigate RUN_DIR` found")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=run)
    return p
