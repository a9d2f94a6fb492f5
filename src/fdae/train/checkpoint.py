"""Checkpoints: tensors and plain values only, written atomically, keep-last-k.

Layout of a run directory:
    RUN_DIR/config.yaml                 the resolved config
    RUN_DIR/checkpoints/step_XXXXXXXX.pt
    RUN_DIR/metrics.jsonl, eval.jsonl   logs (see fdae.train.logging)

A checkpoint is a `torch.save`d dict (loaded with `weights_only=True`, so loading never
runs code) holding: format/version, step, model state, EMA parameters (or None),
optimizer state, RNG states (per shard generators, per rank global RNGs), the config as
a dict and the trainer's counters. It is written to a temporary file in the same
folder, fsynced and renamed, so a crash never leaves a half-written `step_*.pt`.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fdae.config import Config, config_from_dict, load_config
from fdae.errors import FdaeError

FORMAT = "fdae-checkpoint"
VERSION = 1
PATTERN = re.compile(r"^step_(\d{8,})\.pt$")


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's checkpoints, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = PATTERN.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Atomically write `payload` (plus format tags) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    data = {"format": FORMAT, "version": VERSION, **payload}
    try:
        with open(tmp, "wb") as fh:
            torch.save(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints."""
    found = list_checkpoints(run_dir)
    for _, p in found[: max(0, len(found) - keep_last)]:
        p.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint, or raise one clear FdaeError (missing, truncated, foreign)."""
    path = Path(path)
    if not path.is_file():
        raise FdaeError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err).lower()
        if _looks_like_zip(path) and ("weights_only" in text or "global" in text):
            raise FdaeError(
                f"{path} is not an fdae checkpoint (it holds objects other than tensors: {_short(err)}); "
                f"fdae only loads its own checkpoints"
            ) from None
        raise _unreadable(path, err) from None
    except Exception as err:  # torch raises many types for damaged or foreign files
        raise _unreadable(path, err) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise FdaeError(
            f"{path} is not an fdae checkpoint (no '{FORMAT}' tag); pass a file written by `fdae train`"
        )
    if int(data.get("version", -1)) > VERSION:
        raise FdaeError(
            f"checkpoint {path} has format version {data.get('version')}, newer than this fdae "
            f"understands ({VERSION}); upgrade fdae"
        )
    for key in ("step", "model", "config"):
        if key not in data:
            raise FdaeError(f"checkpoint {path} lacks '{key}'; it is incomplete, delete it")
    return data


def _unreadable(path: Path, err: BaseException) -> FdaeError:
    if _looks_like_zip(path):
        return FdaeError(
            f"checkpoint {path} is truncated or corrupt ({_short(err)}); delete it to resume "
            f"from the previous checkpoint, or start a new run"
        )
    return FdaeError(
        f"{path} is not an fdae checkpoint (not a torch.save archive); pass a file from "
        f"RUN_DIR/checkpoints/ or a run directory"
    )


def _looks_like_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:160] if text else type(err).__name__


def is_run_dir(run_dir: str | Path) -> bool:
    return (Path(run_dir) / "config.yaml").is_file()


def require_run_dir(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FdaeError(f"run directory not found: {run_dir}")
    if not is_run_dir(run_dir):
        raise FdaeError(
            f"{run_dir} is not an fdae run directory (no config.yaml); pass a directory made by "
            f"`fdae train`, or start one with `fdae train --config PRESET --run-dir {run_dir}`"
        )
    return run_dir


def load_state_into(module: torch.nn.Module, state: dict[str, Any], source: Path | str) -> None:
    """`load_state_dict` with a clear message when the shapes or names disagree."""
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:300]
        raise FdaeError(
            f"checkpoint {source} does not fit the model built from the config ({detail}); "
            f"resume with the run's own config (do not override method/unet keys)"
        ) from None


@dataclass
class LoadedRun:
    """A trained method ready for evaluation or figures (in eval mode)."""

    run_dir: Path
    cfg: Config
    method: torch.nn.Module
    dataset: Any
    step: int
    checkpoint: Path
    used_ema: bool


def resolve_checkpoint(target: str | Path) -> tuple[Path, Path]:
    """A run dir or a checkpoint file -> (run_dir, checkpoint path)."""
    target = Path(target)
    if target.is_file():
        run_dir = target.parent.parent if target.parent.name == "checkpoints" else target.parent
        return run_dir, target
    run_dir = require_run_dir(target)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FdaeError(f"run directory {run_dir} has no checkpoint yet (checkpoints/step_*.pt); "
                        f"train longer or lower train.ckpt_every")
    return run_dir, ckpt


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", use_ema: bool = True,
             dataset: Any = None) -> LoadedRun:
    """Build the run's method from its checkpoint (EMA weights when present and asked).

    `run_dir` may also be a checkpoint file. The config comes from the checkpoint
    (identical to RUN_DIR/config.yaml unless that was edited). `dataset`: pass one to
    skip building it from the config."""
    from fdae.data import get_dataset
    from fdae.methods import build_method
    from fdae.train.ema import apply_ema_weights

    run_dir, ckpt = resolve_checkpoint(run_dir)
    data = load_checkpoint(ckpt, map_location="cpu")
    cfg = config_from_dict(data["config"])
    if dataset is None:
        dataset = get_dataset(cfg.data.name, root=cfg.data.root, image_size=cfg.data.image_size)
    trained_channels = data["model"].get("unet.out.2.weight")
    if trained_channels is not None and trained_channels.shape[0] != dataset.num_channels:
        raise FdaeError(f"{ckpt} was trained on {trained_channels.shape[0]}-channel images ({cfg.data.name}), but "
                        f"{dataset.name} has {dataset.num_channels}-channel images; use a dataset like the run's")
    method = build_method(cfg, dataset.num_channels, dataset.image_size)
    load_state_into(method, data["model"], ckpt)
    used_ema = False
    if use_ema and data.get("ema"):
        apply_ema_weights(method, data["ema"]["params"])
        used_ema = True
    method.to(torch.device(device)).eval()
    return LoadedRun(run_dir=run_dir, cfg=cfg, method=method, dataset=dataset, step=int(data["step"]),
                     checkpoint=ckpt, used_ema=used_ema)


def run_config(run_dir: str | Path, overrides: list[str] | None = None) -> Config:
    """The resolved config of a run directory, with optional overrides."""
    run_dir = require_run_dir(run_dir)
    return load_config(run_dir / "config.yaml", overrides)
