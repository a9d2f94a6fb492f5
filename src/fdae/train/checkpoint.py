"""Checkpoints: tensors and plain values only, written atomically, keep-last-k.

Layout of a run directory:
    RUN_DIR/config.yaml                 the resolved config
    RUN_DIR/checkpoints/step_XXXXXXXX.pt
    RUN_DIR/metrics.jsonl, eval.jsonl   logs (see fdae.train.logging)

A checkpoint is a `torch.save`d dict (loaded with `weights_only=True`, so loading never
runs code) holding: format/version, step, model state, EMA parameters (or None),
optimizer state, RNG states (per shard generators, per rank global RNGs), the config as
a dict, the trainer's counters and an integrity record: the sha256 of every tensor's
bytes (with its dtype and shape) and every plain value, in the payload's own order,
checked on every load, so a flipped bit on disk is named instead of trained on. It is
written to a temporary file `.step_N.pt.tmp-PID` in the same folder, fsynced and
renamed, so a crash never leaves a half-written `step_*.pt`; a resumed run removes such
leftovers (`remove_temporary_files`). Only zip archives are ever handed to `torch.load`:
a legacy-format pickle is refused before it is opened.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fdae.config import Config, config_from_dict, load_config
from fdae.errors import FdaeError, replacing, writing
from fdae.train import faults

FORMAT = "fdae-checkpoint"
VERSION = 1
PATTERN = re.compile(r"^step_(\d{8,})\.pt$")
TEMPORARY = re.compile(r"^\.step_\d{8,}\.pt\.tmp-\d+$")
INTEGRITY = "integrity"
_UNCHECKED_SAID: list[bool] = []  # a checkpoint without checksum was reported (once a process)


class CheckpointDamaged(FdaeError):
    """A checkpoint that cannot be trusted (unreadable, checksum mismatch, non-finite
    weights); `previous` is the newest older checkpoint that loads cleanly, if any."""

    def __init__(self, message: str, path: Path, previous: Path | None = None):
        super().__init__(message)
        self.path, self.previous = path, previous


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's checkpoints, oldest first."""
    return _list_folder(checkpoint_dir(run_dir))


def _list_folder(folder: Path) -> list[tuple[int, Path]]:
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


def payload_digest(tree: Any) -> tuple[str, int]:
    """(sha256 hex, number of tensors) of a checkpoint payload: each tensor's dtype,
    shape and raw bytes and each plain value, walked in the payload's own order (pickle
    keeps dict order, so the loaded payload walks identically)."""
    h = hashlib.sha256()
    count = 0

    def walk(node: Any) -> None:
        nonlocal count
        if isinstance(node, torch.Tensor):
            t = node.detach()
            t = (t.cpu() if t.device.type != "cpu" else t).contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
            if t.numel():
                h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
            count += 1
        elif isinstance(node, dict):
            h.update(f"{{{len(node)};".encode())
            for key, value in node.items():
                h.update(f"{key!r}:".encode())
                walk(value)
        elif isinstance(node, (list, tuple)):
            h.update(f"[{len(node)};".encode())
            for value in node:
                walk(value)
        else:
            h.update(f"{type(node).__name__}={node!r};".encode())

    walk(tree)
    return h.hexdigest(), count


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Atomically write `payload` (plus format tags and its checksum) to `path`; a write
    error (disk full, read-only, permission) is one FdaeError naming `path`."""
    path = Path(path)
    fix = "the checkpoints already written are intact; continue with `fdae train --resume RUN_DIR` once it is fixed"
    with writing(path.parent, fix):
        path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "version": VERSION, **payload}
    digest, count = payload_digest(data)
    data[INTEGRITY] = {"sha256": digest, "tensors": count}
    with replacing(path, fix) as tmp:
        with open(tmp, "wb") as fh:
            if faults.wants_kill_during_write(path):
                import io

                buf = io.BytesIO()
                torch.save(data, buf)
                faults.kill_during_write(path, buf.getvalue(), fh)
            torch.save(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


def remove_temporary_files(folder: str | Path) -> tuple[int, int]:
    """Delete `.step_*.pt.tmp-PID` leftovers of writes a crash interrupted (call it only
    while holding the run's lock, so no live writer owns them). Returns (files, bytes)."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0, 0
    files = size = 0
    for p in folder.iterdir():
        if TEMPORARY.match(p.name) and p.is_file():
            try:
                n = p.stat().st_size
                p.unlink()
            except OSError:
                continue
            files, size = files + 1, size + n
    return files, size


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints."""
    found = list_checkpoints(run_dir)
    for _, p in found[: max(0, len(found) - keep_last)]:
        p.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, map_location: Any = "cpu", previous: bool = True) -> dict[str, Any]:
    """Read and verify a checkpoint, or raise one clear FdaeError: missing, foreign, a
    legacy pickle, or `CheckpointDamaged` (truncated, checksum mismatch, non-finite
    weights) naming the newest older checkpoint that loads (`previous=False`: do not
    look for one)."""
    path = Path(path)
    if not path.is_file():
        raise FdaeError(f"checkpoint not found: {path}")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        raise FdaeError(f"cannot read {path}: {err.strerror}") from None
    own_name = PATTERN.match(path.name) is not None
    if head != b"PK\x03\x04":
        if own_name:
            raise _damaged(path, "it is not a zip archive any more (its first bytes were overwritten)", previous)
        if head[:1] == b"\x80":
            raise FdaeError(
                f"{path} is a legacy-format pickle file, not an fdae checkpoint; fdae refuses to load such files "
                f"because unpickling them can run arbitrary code, so nothing in it was run. Pass a checkpoint "
                f"written by `fdae train` (a file from RUN_DIR/checkpoints/) or a run directory."
            )
        raise FdaeError(
            f"{path} is not an fdae checkpoint: fdae checkpoints are zip archives written by `fdae train`. Pass a "
            f"file from RUN_DIR/checkpoints/ or a run directory."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f" (it names {found.group(1)})" if found else ""
        raise FdaeError(
            f"{path} is not an fdae checkpoint: it holds Python objects other than tensors and plain values{what}, "
            f"which fdae refuses to load because loading them could run code; nothing in it was run. Pass a "
            f"checkpoint written by `fdae train`."
        ) from None
    except Exception:  # torch raises many types for damaged archives
        raise _damaged(path, "its zip archive is truncated or corrupt and cannot be read", previous) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise FdaeError(
            f"{path} is not an fdae checkpoint (it has no '{FORMAT}' tag); pass a file written by `fdae train`."
        )
    if int(data.get("version", -1)) > VERSION:
        raise FdaeError(
            f"checkpoint {path} has format version {data.get('version')}, newer than this fdae "
            f"understands ({VERSION}); upgrade fdae."
        )
    record = data.pop(INTEGRITY, None)
    if record is None:
        if not _UNCHECKED_SAID:
            _UNCHECKED_SAID.append(True)
            print(f"note: {path} has no checksum (an older fdae wrote it), so it is loaded without an integrity "
                  f"check; checkpoints written from now on carry one", file=sys.stderr)
    elif not isinstance(record, dict) or payload_digest(data)[0] != record.get("sha256"):
        raise _damaged(path, "its contents do not match the checksum written with it (a bit changed on disk or "
                             "in a copy)", previous)
    for key in ("step", "model", "config"):
        if key not in data:
            raise _damaged(path, f"it lacks '{key}'", previous)
    bad = _non_finite(data)
    if bad:
        raise _damaged(path, f"{bad} of its weight values are NaN or infinite (it was saved after training "
                             f"diverged)", previous)
    return data


def _non_finite(data: dict[str, Any]) -> int:
    """How many floating-point values of the model, EMA and optimizer state are not finite."""
    bad = 0

    def walk(node: Any) -> None:
        nonlocal bad
        if isinstance(node, torch.Tensor):
            if node.is_floating_point():
                bad += int((~torch.isfinite(node)).sum())
        elif isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)

    for key in ("model", "ema", "optimizer"):
        walk(data.get(key))
    return bad


def intact_before(path: Path) -> Path | None:
    """The newest checkpoint older than `path` in its folder that loads and verifies."""
    m = PATTERN.match(path.name)
    if not m:
        return None
    step = int(m.group(1))
    older = [p for s, p in _list_folder(path.parent) if s < step]
    for candidate in reversed(older):
        try:
            load_checkpoint(candidate, previous=False)
        except FdaeError:
            continue
        return candidate
    return None


def _damaged(path: Path, why: str, previous: bool) -> CheckpointDamaged:
    prev = intact_before(path) if previous else None
    if prev is not None:
        offer = f" The previous checkpoint {prev} (step {int(PATTERN.match(prev.name).group(1))}) is intact."
    elif previous and PATTERN.match(path.name):
        offer = " No older checkpoint of this run is intact."
    else:
        offer = ""
    return CheckpointDamaged(f"checkpoint {path} cannot be trusted: {why}.{offer}", path, prev)


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
    try:
        data = load_checkpoint(ckpt, map_location="cpu")
    except CheckpointDamaged as err:
        if err.previous is None:
            raise
        raise CheckpointDamaged(f"{err} To use it, pass that file in place of the run directory.", err.path,
                                err.previous) from None
    cfg = config_from_dict(data["config"])
    if dataset is None:
        dataset = get_dataset(cfg.data.name, root=cfg.data.root, image_size=cfg.data.image_size)
    state = data["model"]
    trained_channels = None  # the image channels of the last layer: U-Net output (out, ...), VAE decoder (in, out, ...)
    if "unet.out.2.weight" in state:
        trained_channels = state["unet.out.2.weight"].shape[0]
    elif "decoder.deconvs.6.weight" in state:
        trained_channels = state["decoder.deconvs.6.weight"].shape[1]
    if trained_channels is not None and trained_channels != dataset.num_channels:
        raise FdaeError(f"{ckpt} was trained on {trained_channels}-channel images ({cfg.data.name}), but "
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
    from fdae.config import parse_override

    for text in overrides or []:
        name = parse_override(text).get("method", {})
        name = name.get("name") if isinstance(name, dict) else None
        if name is not None:
            saved = load_config(run_dir / "config.yaml", saved=True).method.name
            if name != saved:
                raise FdaeError(f"{run_dir} is a run of method {saved}; it cannot go on as {name} (its weights and "
                                f"optimizer state are {saved}'s). Start a new run with --run-dir for {name}.")
    return load_config(run_dir / "config.yaml", overrides, saved=True)
