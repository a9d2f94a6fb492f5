"""Periodic evaluation in a separate process, so that training does not wait for it.

The metrics' classifiers (DCI's boosted trees above all) run on the CPU for tens of
seconds to minutes; evaluated in-process, every evaluation step leaves the GPU idle that
long. With `eval.async_workers=K` (K >= 1) the trainer instead writes an *encoder
snapshot* at each evaluation step and hands it to a worker process:

    RUN_DIR/eval_snapshots/step_XXXXXXXX.pt    the representation's weights (EMA when the
                                               run keeps one), the config, step, minutes
    RUN_DIR/eval_snapshots/step_XXXXXXXX.json  the worker's record, written atomically
    RUN_DIR/eval_snapshots/step_XXXXXXXX.log   the worker's stderr (kept when it fails)

The snapshot leaves out the U-Net, which no representation uses (a few MB to tens of MB
instead of the whole model). The worker (`python -m fdae.train.async_eval SNAPSHOT`)
rebuilds the method without allocating a U-Net, loads the weights and runs the same
`fdae.train.hooks.evaluate_now` as the in-process path, so both give identical numbers.
The trainer polls its workers between steps and appends finished records to
`eval.jsonl` in step order; at the end of a session it waits for the rest. A snapshot
whose record is missing (a crash, a signal) is evaluated again when the run resumes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from fdae.config import Config, config_from_dict, to_dict
from fdae.train import checkpoint as ckpt_io

SNAPSHOT_DIR = "eval_snapshots"


def snapshot_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / SNAPSHOT_DIR


def _decoder_modules(method: nn.Module) -> tuple[str, ...]:
    return tuple(getattr(method, "decoder_modules", ("unet",)))


def encoder_state(method: nn.Module) -> dict[str, torch.Tensor]:
    """The method's parameters and buffers minus those of the modules `encode` never
    calls (the U-Net; DisDiff's frozen model and fields), copied to the CPU."""
    skip = tuple(f"{name}." for name in _decoder_modules(method))
    return {k: v.detach().to("cpu", copy=True) for k, v in method.state_dict().items() if not k.startswith(skip)}


def build_encoder(cfg: Config, state: dict[str, torch.Tensor], in_channels: int, image_size: int,
                  device: torch.device, source: Path | str) -> nn.Module:
    """The method of `cfg` holding `state`, with empty modules in place of its decoder
    modules (the U-Net): built on the meta device first, so their weights are never
    allocated."""
    from fdae.methods import build_method

    with torch.device("meta"):
        method = build_method(cfg, in_channels, image_size)
    for name in _decoder_modules(method):
        if hasattr(method, name):
            setattr(method, name, nn.Module())  # encode() never calls it
    method.to_empty(device=device)
    ckpt_io.load_state_into(method, state, source)
    return method.eval()


@dataclass
class _Job:
    step: int
    snapshot: Path
    proc: subprocess.Popen | None = None
    log: Any = None
    scored: bool = False  # its record was written by an earlier session's worker

    @property
    def finished(self) -> bool:
        return self.scored or (self.proc is not None and self.proc.returncode is not None)

    @property
    def result(self) -> Path:
        return self.snapshot.with_suffix(".json")

    @property
    def log_path(self) -> Path:
        return self.snapshot.with_suffix(".log")


class AsyncEvaluator:
    """Snapshots in, records out (rank 0 of a run only).

    `submit` writes a snapshot and starts a worker if fewer than `workers` run;
    `poll` starts queued workers and logs finished records in step order (no waiting);
    `drain` waits for every submitted evaluation; `stop` kills running workers (their
    snapshots stay and are evaluated again on resume)."""

    def __init__(self, run_dir: Path, cfg: Config, workers: int, device: torch.device,
                 log_record: Callable[[dict[str, Any]], None], say: Callable[[str], None],
                 resume_step: int | None = None, logged_steps: set[int] | None = None):
        if workers < 1:
            raise ValueError("AsyncEvaluator needs at least one worker")
        self.dir = snapshot_dir(run_dir)
        self.cfg = cfg
        self.workers = workers
        self.device = device
        self.log_record = log_record
        self.say = say
        self.jobs: list[_Job] = []
        self._behind_said = False
        if resume_step is not None:
            self._recover(resume_step, logged_steps or set())

    # ------------------------------------------------------------------ trainer side
    def submit(self, method: nn.Module, step: int, minutes: float, ema: bool) -> None:
        path = self.dir / f"step_{step:08d}.pt"
        ckpt_io.save_checkpoint({"step": step, "model": encoder_state(method), "config": to_dict(self.cfg),
                                 "minutes": float(minutes), "ema": bool(ema)}, path)
        path.with_suffix(".json").unlink(missing_ok=True)
        self.jobs.append(_Job(step, path))
        self.poll()
        waiting = sum(1 for j in self.jobs if j.proc is None and not j.scored)
        if waiting >= 2 and not self._behind_said:
            self._behind_said = True
            self.say(f"background evaluation falls behind training ({waiting} snapshots waiting); raise "
                     f"train.eval_every or eval.async_workers, or lower the eval.* sample sizes")

    def poll(self) -> None:
        for job in self.jobs:
            if job.proc is not None and job.proc.poll() is not None and job.log is not None:
                job.log.close()
                job.log = None
        running = sum(1 for j in self.jobs if j.proc is not None and j.proc.returncode is None)
        for job in self.jobs:
            if running >= self.workers:
                break
            if job.proc is None and not job.scored:
                self._start(job)
                running += 1
        self._log_finished()

    def _log_finished(self) -> None:
        """Log the finished evaluations at the head of the queue (records in step order)."""
        while self.jobs and self.jobs[0].finished:
            self._finish(self.jobs.pop(0))

    def drain(self, timeout: float | None = None) -> None:
        """Wait for every submitted evaluation (or until `timeout` seconds have passed)."""
        if not self.jobs:
            return
        self.say(f"waiting for {len(self.jobs)} background evaluation(s)")
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.jobs:
            self.poll()
            if not self.jobs:
                break
            if deadline is not None and time.monotonic() > deadline:
                self.stop()
                return
            time.sleep(0.2)

    def stop(self) -> None:
        for job in self.jobs:
            if job.proc is not None and job.proc.returncode is None:
                job.proc.poll()
        self._log_finished()
        if self.jobs:
            self.say(f"{len(self.jobs)} background evaluation(s) stopped; their snapshots are evaluated "
                     f"when the run resumes")
        for job in self.jobs:
            if job.proc is not None and job.proc.returncode is None:
                job.proc.kill()
                job.proc.wait()
            if job.log is not None:
                job.log.close()
                job.log = None
        self.jobs = []

    # ------------------------------------------------------------------ internals
    def _recover(self, resume_step: int, logged_steps: set[int]) -> None:
        """At the start of a session: snapshots past the resumed step belong to a lost
        future, and those already in eval.jsonl are done (drop both); the others are
        evaluated again."""
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("step_*.pt")):
            try:
                step = int(path.stem.split("_")[1])
            except (IndexError, ValueError):
                continue
            if step > resume_step or step in logged_steps:
                for p in (path, path.with_suffix(".json"), path.with_suffix(".log")):
                    p.unlink(missing_ok=True)
            else:
                self.jobs.append(_Job(step, path, scored=path.with_suffix(".json").is_file()))

    def _start(self, job: _Job) -> None:
        from fdae.cli import python_module_command

        job.result.unlink(missing_ok=True)
        if job.log is not None:
            job.log.close()
        job.log = open(job.log_path, "w")
        cmd, env = python_module_command("fdae.train.async_eval", str(job.snapshot), "--device", str(self.device))
        # A session of its own: a Ctrl-C or a scheduler's SIGTERM to the trainer's group
        # reaches the trainer only, which stops its workers and keeps their snapshots.
        job.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=job.log, env=env, start_new_session=True)

    def _finish(self, job: _Job) -> None:
        if job.log is not None:
            job.log.close()
            job.log = None
        record = None
        if (job.scored or (job.proc is not None and job.proc.returncode == 0)) and job.result.is_file():
            try:
                record = json.loads(job.result.read_text())
            except (OSError, ValueError):
                record = None
        if record is None and job.proc is not None and job.proc.returncode is not None and job.proc.returncode < 0:
            # killed by a signal, not failed: keep the snapshot, the resumed run scores it
            self.say(f"background evaluation at step {job.step} was killed (signal {-job.proc.returncode}); "
                     f"its snapshot is scored when the run resumes")
            return
        if record is None:
            tail = _tail(job.log_path)
            self.say(f"background evaluation at step {job.step} failed (exit {job.proc.returncode if job.proc else '?'})"
                     f"{': ' + tail if tail else ''}; the run goes on (log: {job.log_path})")
            job.snapshot.unlink(missing_ok=True)
            return
        if record.get("metrics") is not None:
            self.log_record(record)
            shown = ", ".join(f"{k}={v:.3f}" for k, v in _flat(record["metrics"])[:8])
            self.say(f"eval at step {job.step} (background, {record.get('eval_seconds', 0.0):.0f} s): {shown}")
        for p in (job.snapshot, job.result, job.log_path):
            p.unlink(missing_ok=True)


def _flat(metrics: dict[str, Any]) -> list[tuple[str, float]]:
    from fdae.train.logging import flatten_numbers

    return list(flatten_numbers(metrics).items())


def _tail(path: Path, lines: int = 1) -> str:
    try:
        text = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except OSError:
        return ""
    return " ".join(text[-lines:])[:300]


# ---------------------------------------------------------------------- worker side
def evaluate_snapshot(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any] | None:
    """Evaluate one snapshot exactly as the in-process periodic evaluation would, and
    write its record next to it (step_N.json). Returns the record (None: no factors)."""
    from fdae.data import get_dataset
    from fdae.train.hooks import evaluate_now, summarize_metrics

    t0 = time.perf_counter()
    path = Path(path)
    data = ckpt_io.load_checkpoint(path, map_location="cpu")
    cfg = config_from_dict(data["config"])
    device = torch.device(device)
    dataset = get_dataset(cfg.data.name, root=cfg.data.root, image_size=cfg.data.image_size)
    method = build_encoder(cfg, data["model"], dataset.num_channels, dataset.image_size, device, path)
    result = evaluate_now(method, dataset, cfg, device, say=lambda msg: print(msg, file=sys.stderr))
    record = {"step": int(data["step"]), "minutes": float(data.get("minutes", 0.0)), "protocol": cfg.eval.protocol,
              "ema": bool(data.get("ema", False)),
              "metrics": summarize_metrics(result) if result is not None else None,
              "eval_seconds": time.perf_counter() - t0, "background": True}
    from fdae.metrics.utils import write_json

    write_json(record, path.with_suffix(".json"))
    return record


def main(argv: list[str] | None = None) -> int:
    import argparse

    from fdae.errors import FdaeError

    ap = argparse.ArgumentParser(description="evaluate one fdae encoder snapshot (used by the trainer)")
    ap.add_argument("snapshot")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    try:
        evaluate_snapshot(args.snapshot, args.device)
    except FdaeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
