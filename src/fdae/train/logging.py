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
from typing import Any

import numpy as np

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
    """Writes the logs of one run (rank 0 only; other ranks get `enabled=False`)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        self.tensorboard_error: str | None = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

                self.writer = SummaryWriter(log_dir=str(self.run_dir / "tb"))
            except ImportError as err:
                self.tensorboard_error = str(err)

    def _append(self, name: str, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.run_dir / name, "a") as fh:
            fh.write(json.dumps(to_builtin(record)) + "\n")

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
            save_png(image, self.run_dir / "images" / f"{tag.replace('/', '_')}_{step:08d}.png")

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
