"""A study file: methods x datasets x seeds (x override grids), each cell one run.

    name: cpu-small                      # the study's name (default: the file's stem)
    out: runs/studies/cpu-small          # where cells go (default: runs/studies/NAME)
    seeds: [0, 1, 2]
    methods:                             # row label -> preset, optional ablation row, overrides
      fdae: {preset: shapes3d-demo}
      fdae-eg: {preset: shapes3d-demo, ablation: eg}
      beta-vae: {preset: beta-vae-dsprites-synth, grid: {method.beta: [1, 4]}}
    datasets:                            # column label -> overrides
      dsprites-synth: [data.name=dsprites-synth, data.image_size=32]
    grid: {}                             # key -> values for every method (each value its own cells)
    overrides: [train.steps=400]         # every cell
    eval:                                # how every cell is scored once trained
      protocol: dlib                     # dlib | paper
      metrics: [dci, factor_vae, mig]
      dci: exact                         # exact (disentanglement_lib's trees) | fast (histogram trees)
      num_train: 10000
      num_test: 5000
    launcher:                            # how `fdae study FILE` runs the cells
      kind: local                        # local | slurm
      jobs: 2                            # local: runs at a time (default: one per GPU, else 1)
      threads: 1                         # local: torch threads per run
      partition: null                    # slurm (through submitit): partition, time_min,
      time_min: 60                       #   gpus_per_job, cpus_per_task, mem_gb, slurm_extra
      gpus_per_job: 1                    #   (more sbatch options); cluster: local runs the
                                         #   jobs as local processes

Every cell's config is `preset + ablation row + dataset + method overrides + study
overrides + grid point + seed=S`; a typo surfaces when the file is read, not hours
into the study, because every cell's config is built before anything runs.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fdae.errors import FdaeError

EVAL_KEYS = {"protocol", "metrics", "dci", "num_train", "num_test", "num_votes_train", "num_votes_eval"}
LAUNCHER_KEYS = {"kind", "jobs", "threads", "partition", "time_min", "gpus_per_job", "cpus_per_task", "mem_gb",
                 "slurm_extra", "cluster"}
TOP_KEYS = {"name", "out", "seeds", "methods", "datasets", "grid", "overrides", "eval", "launcher"}


@dataclass
class Cell:
    """One run of the study: where it lives and the config overrides that make it."""

    key: str
    method: str
    dataset: str
    seed: int
    grid: dict[str, Any]
    preset: str
    overrides: list[str]
    ablation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "method": self.method, "dataset": self.dataset, "seed": self.seed,
                "grid": self.grid, "preset": self.preset, "overrides": self.overrides, "ablation": self.ablation}


@dataclass
class Study:
    name: str
    path: Path
    out: Path
    seeds: list[int]
    methods: dict[str, dict[str, Any]]
    datasets: dict[str, list[str]]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    eval: dict[str, Any] = field(default_factory=dict)
    launcher: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> list[Cell]:
        out = []
        for (label, spec), (data_label, data_over) in itertools.product(self.methods.items(), self.datasets.items()):
            grid = {**self.grid, **spec.get("grid", {})}
            keys = list(grid)
            for values in itertools.product(*(grid[k] for k in keys)):
                point = dict(zip(keys, values))
                for seed in self.seeds:
                    tag = "".join(f"__{_slug(k.split('.')[-1])}={_slug(str(v))}" for k, v in point.items())
                    over = [*data_over, *spec.get("overrides", []), *self.overrides,
                            *(f"{k}={_yaml_value(v)}" for k, v in point.items()), f"seed={seed}"]
                    out.append(Cell(f"{label}__{data_label}{tag}__seed{seed}", label, data_label, int(seed), point,
                                    spec["preset"], over, spec.get("ablation")))
        return out

    def cell_dir(self, cell: Cell) -> Path:
        return self.out / "cells" / cell.key


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "x"


def _yaml_value(v: Any) -> str:
    if isinstance(v, (list, dict, bool)) or v is None:
        return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()
    return str(v)


def _fail(path: Path, what: str, fix: str) -> FdaeError:
    return FdaeError(f"study {path}: {what}; {fix}")


def load_study(path: str | Path, out: str | Path | None = None) -> Study:
    """Read and check a study file; every cell's config is built once here."""
    path = Path(path)
    if not path.is_file():
        raise FdaeError(f"study file {path} not found; give the path of a study YAML (e.g. studies/cpu-small.yaml)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise _fail(path, f"not valid YAML ({str(err).splitlines()[0]})", "fix the syntax") from None
    if not isinstance(raw, dict):
        raise _fail(path, "expected a mapping at the top", "see `fdae study --help` for the keys")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise _fail(path, f"unknown key(s) {sorted(unknown)}", f"the keys are {sorted(TOP_KEYS)}")
    for key in ("methods", "datasets", "seeds"):
        if not raw.get(key):
            raise _fail(path, f"'{key}' is missing or empty", "name at least one")
    for key in ("methods", "datasets"):
        if not isinstance(raw[key], dict):
            raise _fail(path, f"'{key}' must be a mapping of label -> settings, got a {type(raw[key]).__name__}",
                        f"write `{key}:` then one `LABEL: ...` line each")
    methods = {}
    for label, spec in raw["methods"].items():
        spec = {"preset": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or "preset" not in spec:
            raise _fail(path, f"method '{label}' needs a preset", "write `LABEL: {preset: NAME}`")
        bad = set(spec) - {"preset", "ablation", "overrides", "grid"}
        if bad:
            raise _fail(path, f"method '{label}' has unknown key(s) {sorted(bad)}", "use preset, ablation, overrides, grid")
        methods[str(label)] = {**spec, "overrides": list(spec.get("overrides") or [])}
    datasets = {}
    for label, over in raw["datasets"].items():
        if not isinstance(over, list) and over is not None:
            raise _fail(path, f"dataset '{label}' must list overrides, got {over!r}",
                        f"write `{label}: [data.name={label}]`")
        datasets[str(label)] = list(over or [])
    for label in (*methods, *datasets):
        if _slug(label) != label:
            raise _fail(path, f"label '{label}' has characters that cannot name a folder",
                        "use letters, digits, '.', '+' and '-'")
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
        raise _fail(path, f"seeds must be a list of integers, got {seeds!r}", "e.g. seeds: [0, 1, 2]")
    ev = dict(raw.get("eval") or {})
    if set(ev) - EVAL_KEYS:
        raise _fail(path, f"unknown eval key(s) {sorted(set(ev) - EVAL_KEYS)}", f"the keys are {sorted(EVAL_KEYS)}")
    ev.setdefault("protocol", "dlib")
    ev.setdefault("dci", "exact")
    if ev["dci"] not in ("exact", "fast"):
        raise _fail(path, f"eval.dci is {ev['dci']!r}", "use exact or fast")
    from fdae.metrics.protocol import PROTOCOLS, parse_metrics

    if ev["protocol"] not in PROTOCOLS:
        raise _fail(path, f"eval.protocol is {ev['protocol']!r}", f"use one of {', '.join(PROTOCOLS)}")
    try:
        parse_metrics(ev.get("metrics"), ev["protocol"])
    except FdaeError as err:
        raise _fail(path, f"eval.metrics: {err}", "fix the metric names") from None
    for key in ("num_train", "num_test", "num_votes_train", "num_votes_eval"):
        if key in ev and (not isinstance(ev[key], int) or ev[key] < 2):
            raise _fail(path, f"eval.{key} is {ev[key]!r}", "give an integer of at least 2")
    launcher = dict(raw.get("launcher") or {})
    if set(launcher) - LAUNCHER_KEYS:
        raise _fail(path, f"unknown launcher key(s) {sorted(set(launcher) - LAUNCHER_KEYS)}",
                    f"the keys are {sorted(LAUNCHER_KEYS)}")
    launcher.setdefault("kind", "local")
    if not isinstance(launcher.get("slurm_extra") or {}, dict):
        raise _fail(path, "launcher.slurm_extra must be a mapping of sbatch options",
                    "e.g. slurm_extra: {account: myproject, qos: normal}")
    if launcher["kind"] not in ("local", "slurm"):
        raise _fail(path, f"launcher.kind is {launcher['kind']!r}", "use local or slurm")
    name = str(raw.get("name") or path.stem)
    study = Study(name=name, path=path.resolve(), out=Path(out or raw.get("out") or Path("runs/studies") / name),
                  seeds=seeds, methods=methods, datasets=datasets, grid=dict(raw.get("grid") or {}),
                  overrides=list(raw.get("overrides") or []), eval=ev, launcher=launcher)
    check_cells(study)
    return study


def cell_config(cell: Cell):
    """The cell's full config (preset + ablation row + overrides)."""
    from fdae.config import load_config
    from fdae.methods.ablations import ablation_overrides

    rows = ablation_overrides(cell.ablation) if cell.ablation else []
    cfg = load_config(cell.preset, [*rows, *cell.overrides])
    if cell.ablation:
        cfg.name = f"{cfg.name}-{cell.ablation}"
    return cfg


def check_cells(study: Study) -> None:
    """Build every cell's config now, so a bad key fails before the first run starts."""
    seen = set()
    for cell in study.cells():
        if cell.key in seen:
            raise _fail(study.path, f"two cells share the key {cell.key}",
                        "give methods and datasets distinct labels, and grid keys distinct last components")
        seen.add(cell.key)
        try:
            cell_config(cell)
        except FdaeError as err:
            raise FdaeError(f"study {study.path}, cell {cell.key}: {err}") from None
