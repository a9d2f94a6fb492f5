"""Run logs: `metrics.jsonl`, `eval.jsonl`, TensorBoard (optional), image grids.

* `metrics.jsonl`: one JSON object per logged step: step, loss, every loss term (means
  over the steps since the previous line, skipped steps excluded), lr, grad_norm,
  images_per_s, skipped (non-finite steps so far), minutes (training time).
* `eval.jsonl`: one object per periodic evaluation: step, minutes, protocol, metrics.
* TensorBoard scalars and images when the `tensorboard` package is installed; without
  it, image grids go to `RUN_DIR/images/*.png` instead.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fdae.errors import replacing, writing
from fdae.metrics.utils import to_builtin
from fdae.viz.grids import save_png


def flatten_numbers(tree: Any, prefix: str = "") -> dict[str, float]:
    """{'a': {'b': 1.0}} -> {'a/b': 1.0}; keeps only finite scalars (for TensorBoard)."""
    out: dict[str, float] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(flatten_numbers(v, f"{prefix}{k}/" if not isinstance(v, (int, float, np.number)) else f"{prefix}{k}"))
    elif isinstance(tree, (int, float, np.number)) and not isinstance(tree, bool):
        if math.isfinite(float(tree)):
            out[prefix.rstrip("/")] = float(tree)
    return out


class RunLogger:
    """Writes the logs of one run (rank 0 only; other ranks get `enabled=False`).

    `purge_step`: a resumed run's first step; TensorBoard drops events logged at or after
    it by the interrupted session, as metrics.jsonl is cut back (`truncate_jsonl`)."""

    FIX = "the run's checkpoints are intact; continue with `fdae train --resume RUN_DIR` once it is fixed"

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True,
                 purge_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        self.tensorboard_error: str | None = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

                with writing(self.run_dir / "tb", "choose a writable --run-dir"):
                    self.writer = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=purge_step)
            except ImportError as err:
                self.tensorboard_error = str(err)

    def _append(self, name: str, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = json.dumps(to_builtin(record)) + "\n"
        with writing(self.run_dir / name, self.FIX):
            with open(self.run_dir / name, "a") as fh:
                fh.write(line)  # one write: a crash tears at most this line (dropped on resume)

    def metrics(self, record: dict[str, Any]) -> None:
        self._append("metrics.jsonl", record)
        if self.writer is not None:
            step = int(record["step"])
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f"train/{key}", value, step)

    def evaluation(self, record: dict[str, Any]) -> None:
        self._append("eval.jsonl", record)
        if self.writer is not None:
            step = int(record["step"])
            for key, value in flatten_numbers(record.get("metrics", {})).items():
                self.writer.add_scalar(f"eval/{key}", value, step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """An HWC uint8 image: TensorBoard if available, else RUN_DIR/images/TAG_STEP.png."""
        if not self.enabled:
            return
        if self.writer is not None:
            self.writer.add_image(tag, image, step, dataformats="HWC")
        else:
            out = self.run_dir / "images" / f"{tag.replace('/', '_')}_{step:08d}.png"
            with writing(out, self.FIX):
                save_png(image, out)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_jsonl(path: str | Path, say: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """The records of a JSON-lines log. A line that does not parse (the torn last line of
    a write a crash interrupted) is skipped, and reported through `say` when given."""
    return _parse_jsonl(Path(path), say)[0]


def _parse_jsonl(path: Path, say: Callable[[str], None] | None) -> tuple[list[dict[str, Any]], int]:
    """(records, number of lines dropped)."""
    if not path.is_file():
        return [], 0
    lines = path.read_text(errors="replace").splitlines()
    records, dropped = [], 0
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            dropped += 1
            if say is not None:
                where = "its torn last line" if i == len(lines) - 1 else f"line {i + 1}, which is damaged"
                say(f"note: {path.name}: dropped {where} (a write interrupted by a crash)")
            continue
        records.append(record)
    return records, dropped


def truncate_jsonl(path: str | Path, max_step: int, say: Callable[[str], None] | None = None) -> None:
    """Cut a log back to `max_step` (the step a run resumes from) and drop torn lines, so a
    resumed run's log reads as one uninterrupted run; rewritten atomically."""
    path = Path(path)
    records, dropped = _parse_jsonl(path, say)
    kept = [r for r in records if _step(r) <= max_step]
    if len(kept) == len(records) and not dropped:
        return
    if say is not None and len(kept) != len(records):
        say(f"note: {path.name}: dropped {len(records) - len(kept)} record(s) after step {max_step}, logged by the "
            f"interrupted session after its last checkpoint")
    with replacing(path, "choose a writable --run-dir") as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))


def _step(record: dict[str, Any]) -> int:
    try:
        return int(record.get("step", 0))
    except (TypeError, ValueError):
        return 0
