"""The training loop: `train(cfg, run_dir, resume=False) -> TrainResult`.

One step draws the global batch as `world_size * train.grad_accum` shards; shard k is
drawn by its own data generator and noised by its own loss-noise generator, both seeded
from (seed, k) on the training device. Rank r of a DDP run owns shards
r*accum ... r*accum + accum - 1, so one process with `grad_accum = W` computes exactly
the update of W processes (the DDP test relies on this). BatchNorm statistics and
batch-level losses are per shard in both cases.

Per step: sample shards -> loss under autocast (bf16 on CUDA by default; the method
keeps preconditioning and loss in fp32) -> backward -> grad norm (clipped if asked) ->
finite check (see `fdae.train.guard`) -> optimizer step -> EMA. Loss terms accumulate
on the device and are read only at log steps (`train.log_every`).

Stops: `train.steps` reached, `train.time_limit_min` elapsed, or SIGINT/SIGTERM; each
writes a checkpoint first, and `--resume` continues exactly. The time limit and the run's
training minutes use the wall clock, or a `StepClock` passed to `train` (a fixed number of
seconds per step, so that where a session stops does not depend on the machine's speed).
Too many non-finite steps in a row raise `TrainingDiverged` after saving the last good
weights; an update that makes the weights non-finite or blows them up (see
`fdae.train.guard`) stops the run at once without saving them, pointing at the last
checkpoint, whose weights are finite.

The run directory: rank 0 holds RUN_DIR/.lock (`fdae.train.lock`) from before the first
write to the end, so a second trainer or resume stops at once. A start that fails
before training removes what it created; a resume first removes temporary checkpoint
files of interrupted writes and cuts metrics.jsonl / eval.jsonl back to the resumed
step (a torn last line is dropped), so the logs read as one run; config.yaml is written
only once everything is set up.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fdae.config import Config, save_config, to_dict, with_absolute_paths
from fdae.errors import FdaeError, replacing, require_output_dir, writing
from fdae.train import checkpoint as ckpt_io
from fdae.train import distributed, faults
from fdae.train.ema import EMA
from fdae.train.guard import NonFiniteGuard, weights_healthy
from fdae.train.hooks import ImageHook, evaluate_now, summarize_metrics
from fdae.train.lock import RunLock
from fdae.train.logging import RunLogger, flatten_numbers, read_jsonl, truncate_jsonl
from fdae.train.optim import build_optimizer, is_fused, lr_at, set_lr
from fdae.train.rng import DATA, NOISE, derive_seed, global_state, make_generator, seed_global, set_global_state

PERIODIC = 5  # rng stream of a method's between-step work (one generator per step)
INIT = 4  # rng stream for the model's initial weights (identical on every rank)


class TrainingDiverged(FdaeError):
    """Too many non-finite steps in a row; the last good weights were saved."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # optimizer steps done (skipped ones included)
    reason: str  # "done" | "time_limit" | "signal" | "finished_before" (a resume of a finished run)
    checkpoint: Path | None  # the last checkpoint written
    last_metrics: dict[str, Any] = field(default_factory=dict)  # the last metrics.jsonl record
    skipped_steps: int = 0
    minutes: float = 0.0  # training minutes over all sessions of the run (eval excluded)


class StepClock:
    """A training clock that advances `seconds_per_step` at each optimizer step and not
    otherwise: with it, `train.time_limit_min` and the run's training minutes follow step
    counts, so tests and reproducible session schedules stop at the same step on a busy
    machine as on an idle one."""

    def __init__(self, seconds_per_step: float):
        if not seconds_per_step > 0:
            raise FdaeError(f"a step clock needs seconds_per_step > 0, got {seconds_per_step!r}")
        self.seconds_per_step = float(seconds_per_step)
        self.steps = 0

    def __call__(self) -> float:
        return self.steps * self.seconds_per_step

    def tick(self) -> None:
        self.steps += 1


class _LossModule(nn.Module):
    """`forward = method.loss`, so DDP can wrap it (DDP hooks into forward/backward).

    The step's random draws are made eagerly from the shard's generator (`method.draw`);
    the rest (`method.loss_given_draws` under autocast) is `loss_fn`, compiled when
    `train.compile` (see `fdae.train.fast_step.make_loss_fn`)."""

    def __init__(self, method: nn.Module, loss_fn: Any):
        super().__init__()
        self.method = method
        self.loss_fn = loss_fn

    def forward(self, images: Tensor, generator: torch.Generator, step: Tensor) -> dict[str, Tensor]:
        draws = self.method.draw(images, generator)
        return self.loss_fn(images, draws, step)


def initial_method(cfg: Config, dataset: Any) -> torch.nn.Module:
    """The method with the weights a run of `cfg` starts from (seeded, the same on every
    rank): what "the untrained encoder" means in fdae's comparisons."""
    from fdae.methods import build_method

    torch.manual_seed(derive_seed(cfg.seed, 0, INIT))
    method = build_method(cfg, dataset.num_channels, dataset.image_size)
    method.freeze()
    return method


def default_run_dir(cfg: Config, root: str | Path = "runs") -> Path:
    return Path(root) / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(cfg: Config, run_dir: str | Path | None = None, resume: bool = False, *,
          progress: bool = True, tensorboard: bool = True, clock: StepClock | None = None,
          resume_previous: bool = False) -> TrainResult:
    """Train `cfg` in `run_dir` (None: runs/NAME-TIMESTAMP); `resume=True` continues the
    newest checkpoint of `run_dir` (the caller passes the run's config, see
    `fdae.train.checkpoint.run_config`), or with `resume_previous` the newest one that
    passes its integrity check. `clock`: training time for the time limit and the
    recorded minutes (default: the wall clock). Under `torchrun` every rank calls this."""
    cfg = with_absolute_paths(copy.deepcopy(cfg))
    info = distributed.setup(cfg.train.device, cfg.train.dist_backend)
    try:
        if run_dir is None:
            if resume:
                raise FdaeError("resume needs the run directory to continue")
            run_dir = distributed.broadcast_object(str(default_run_dir(cfg)), info)
        claim = _RunClaim(cfg, Path(run_dir), resume, resume_previous, info)
        try:
            if claim.finished is not None:
                return claim.finished
            try:
                trainer = _Trainer(cfg, Path(run_dir), resume, info, progress, tensorboard, claim.start,
                                   claim.start_data, clock)
            except BaseException:
                claim.undo()
                raise
            result = trainer.run()
        finally:
            claim.release()
        # Leave together: rank 0 hosts the rendezvous store, and a rank that tears down
        # while another still talks to it can be aborted by the backend.
        distributed.barrier(info)
        return result
    finally:
        distributed.teardown(info)


class _RunClaim:
    """Rank 0's hold on the run directory for one session: checked, created if needed,
    locked, cleaned of interrupted writes, and its starting checkpoint chosen, before
    anything else is written. Every rank learns the outcome (or the one error)."""

    def __init__(self, cfg: Config, run_dir: Path, resume: bool, resume_previous: bool,
                 info: distributed.DistInfo):
        self.run_dir, self.info = run_dir, info
        self.lock: RunLock | None = None
        self.created: Path | None = None  # the topmost folder this session created
        self.entries_before: set[str] | None = None
        self.finished: TrainResult | None = None
        self.start_data: dict[str, Any] | None = None  # rank 0: the verified starting checkpoint, loaded once
        start: str | None = None
        error: str | None = None
        if info.is_main:
            try:
                start = self._claim(cfg, resume, resume_previous)
            except BaseException as err:
                self.undo()  # a no-op unless the lock was ours: never touch another trainer's files
                self.release()
                if not isinstance(err, FdaeError):
                    raise
                error = str(err)
        start, error, done = distributed.broadcast_object(
            (start, error, self.finished is not None), info)
        if error is not None:
            raise FdaeError(error)
        self.start = Path(start) if start else None
        if done and self.finished is None:  # other ranks of a finished run
            self.finished = TrainResult(run_dir=run_dir, step=_step_of(self.start) if self.start else 0,
                                        reason="finished_before", checkpoint=self.start)

    @staticmethod
    def say(msg: str) -> None:
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stderr)

    def _claim(self, cfg: Config, resume: bool, resume_previous: bool) -> str | None:
        run_dir = self.run_dir
        require_output_dir(run_dir, "--run-dir")
        if resume:
            ckpt_io.require_run_dir(run_dir)
        if run_dir.is_dir():
            self.entries_before = set(os.listdir(run_dir))
        else:
            top = run_dir
            while not top.parent.exists():
                top = top.parent
            self.created = top
        with writing(run_dir, "choose a writable --run-dir"):
            run_dir.mkdir(parents=True, exist_ok=True)
        self.lock = RunLock(run_dir, say=self.say).acquire()
        if not resume:
            if ckpt_io.list_checkpoints(run_dir) or (run_dir / "metrics.jsonl").is_file():
                raise FdaeError(
                    f"run directory {run_dir} already holds a run; continue it with "
                    f"`fdae train --resume {run_dir}` or choose another --run-dir"
                    + (" (it already holds checkpoints)" if ckpt_io.list_checkpoints(run_dir) else "")
                )
            return None
        from fdae.train.async_eval import snapshot_dir

        files = size = 0
        for folder in (ckpt_io.checkpoint_dir(run_dir), snapshot_dir(run_dir)):
            n, b = ckpt_io.remove_temporary_files(folder)
            files, size = files + n, size + b
        if files:
            self.say(f"removed {files} temporary checkpoint file(s) ({size / 2**20:.1f} MB) left by an "
                     f"interrupted write")
        start = self._choose_start(resume_previous)
        if start is None:
            self.say(f"{run_dir} has no checkpoint yet: starting from step 0")
            return None
        step = _step_of(start)
        if step >= cfg.train.steps:
            self.finished = TrainResult(run_dir=run_dir, step=step, reason="finished_before", checkpoint=start,
                                        last_metrics=_last_record(run_dir / "metrics.jsonl", step))
        return str(start)

    def _choose_start(self, resume_previous: bool) -> Path | None:
        latest = ckpt_io.latest_checkpoint(self.run_dir)
        if latest is None:
            return None
        try:
            self.start_data = ckpt_io.load_checkpoint(latest)
            return latest
        except ckpt_io.CheckpointDamaged as err:
            if err.previous is None:
                raise FdaeError(f"{err} Start a new run with another --run-dir (this one keeps its files).") from None
            if not resume_previous:
                raise FdaeError(f"{err} To continue from it, run `fdae train --resume {self.run_dir} "
                                f"--resume-previous` (the damaged file is then kept as *.corrupt).") from None
            keep = _step_of(err.previous)
            for step, path in ckpt_io.list_checkpoints(self.run_dir):
                if step > keep:
                    aside = path.with_name(path.name + ".corrupt")
                    with writing(aside):
                        os.replace(path, aside)
                    self.say(f"set aside {path.name} as {aside.name}")
            self.say(f"{err.path} cannot be trusted; resuming from {err.previous} as asked (--resume-previous)")
            self.start_data = ckpt_io.load_checkpoint(err.previous)
            return err.previous

    def undo(self) -> None:
        """Remove what this session created in the run directory (only that): the folder
        itself if it made it, else the entries that were not there before. Only while
        holding the lock (released after), so no other trainer's file can be among them."""
        if not self.info.is_main or self.lock is None:
            return
        try:
            if self.created is not None:
                shutil.rmtree(self.created, ignore_errors=True)
            elif self.entries_before is not None and self.run_dir.is_dir():
                for name in set(os.listdir(self.run_dir)) - self.entries_before:
                    p = self.run_dir / name
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
        except OSError:
            pass
        self.release()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def _last_record(path: Path, max_step: int) -> dict[str, Any]:
    records = [r for r in read_jsonl(path) if int(r.get("step", 0)) <= max_step]
    return records[-1] if records else {}


class _Trainer:
    def __init__(self, cfg: Config, run_dir: Path, resume: bool, info: distributed.DistInfo,
                 progress: bool, tensorboard: bool, start_ckpt: Path | None,
                 start_data: dict[str, Any] | None = None, clock: StepClock | None = None):
        self.cfg, self.run_dir, self.info = cfg, run_dir, info
        self.clock = clock
        self.now = clock if clock is not None else time.perf_counter  # training time (s)
        self.device = info.device
        self.progress = progress and info.is_main
        t = cfg.train
        shards = info.world_size * t.grad_accum
        if t.batch_size % shards:
            raise FdaeError(
                f"train.batch_size={t.batch_size} must be divisible by world size x train.grad_accum "
                f"= {info.world_size} x {t.grad_accum}"
            )
        self.shard_size = t.batch_size // shards
        self.shards = [info.rank * t.grad_accum + j for j in range(t.grad_accum)]

        from fdae.data import get_dataset

        self.dataset = get_dataset(cfg.data.name, root=cfg.data.root, image_size=cfg.data.image_size)
        self.method = initial_method(cfg, self.dataset).to(self.device)
        if shards > 1 and self.method.batch_estimates:
            self.say(f"note: {cfg.method.name} estimates {self.method.batch_estimates} on each shard of "
                     f"{self.shard_size} images (train.batch_size {t.batch_size} over {shards} shards: world size x "
                     f"train.grad_accum), not on the whole batch; disentanglement_lib uses one batch of 64")
        self.method.train()
        seed_global(cfg.seed, info.rank)
        self.params = [p for p in self.method.parameters() if p.requires_grad]
        # Buffers a forward pass writes (BatchNorm running statistics): restored after a
        # non-finite step, so a skipped step leaves no NaN behind in the model.
        self.buffers = [b for b in self.method.buffers()]
        # Parameters the method updates with optimizers of their own (FactorVAE's
        # discriminator), stepped in the same step; the main optimizer gets the rest.
        extras = self.method.extra_optimizers()
        self.extra_params = [p for extra in extras for p in extra.params]
        own = {id(p) for p in self.extra_params}
        self.main_params = [p for p in self.params if id(p) not in own]
        self.optimizer = build_optimizer(self.main_params, cfg.optim, self.device)
        self.extra_optimizers = {extra.name: extra.make(extra.params) for extra in extras}
        self.fused = is_fused(self.optimizer)
        self.ema = EMA(self.method, t.ema_decay) if t.ema_decay else None
        self.data_gens = [make_generator(cfg.seed, k, DATA, self.device) for k in self.shards]
        self.noise_gens = [make_generator(cfg.seed, k, NOISE, self.device) for k in self.shards]
        self.step = 0
        self.train_seconds = 0.0
        self.guard = NonFiniteGuard(self.device)
        self.acc: dict[str, Tensor] = {}
        self.acc_count = torch.zeros((), device=self.device)
        self.acc_grad = torch.zeros((), device=self.device)
        self.last_ckpt: Path | None = None
        self.last_record: dict[str, Any] = {}
        self.signal: int | None = None

        if start_ckpt is not None:
            self._load(start_ckpt, start_data)
        # The weights' norm where this session starts: the guard's yardstick for a blow-up.
        self.start_norm = _total_norm([p.detach() for p in self.params])
        self.prev_norm = self.start_norm.clone()
        self.start_step = self.step
        from fdae.train.fast_step import make_loss_fn

        use_bf16 = t.precision == "bf16" or (t.precision == "auto" and self.device.type == "cuda")
        self.precision = "bf16" if use_bf16 else "fp32"
        loss_fn = make_loss_fn(self.method, self.precision, compile=t.compile)
        self.model: nn.Module = _LossModule(self.method, loss_fn)
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.model = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if info.is_main and resume:
            for name in ("metrics.jsonl", "eval.jsonl"):
                truncate_jsonl(run_dir / name, self.step, self.say)
        self.logger = RunLogger(run_dir, enabled=info.is_main, tensorboard=tensorboard,
                                purge_step=self.step + 1 if resume else None)
        self.async_eval = None
        if info.is_main and t.eval_every and cfg.eval.async_workers:
            from fdae.train.async_eval import AsyncEvaluator

            self.async_eval = AsyncEvaluator(run_dir, cfg, cfg.eval.async_workers, self.device,
                                             self.logger.evaluation, self.say, resume_step=self.step,
                                             logged_steps={int(r.get("step", -1)) for r in
                                                           read_jsonl(run_dir / "eval.jsonl")})
        image_every = t.image_every if t.image_every is not None else 10 * t.log_every
        self.image_every = image_every
        self.images = ImageHook(self.dataset, cfg, self.device, say=self.say) \
            if (info.is_main and image_every) else None
        if info.is_main:  # last: a start that failed above leaves the old config.yaml alone
            _save_config_atomic(self.cfg, run_dir / "config.yaml")
        distributed.barrier(info)

    # ------------------------------------------------------------------ setup
    def say(self, msg: str) -> None:
        if self.info.is_main:
            from tqdm import tqdm

            tqdm.write(msg, file=sys.stderr)

    def _load(self, path: Path, data: dict[str, Any] | None = None) -> None:
        if data is None:
            data = ckpt_io.load_checkpoint(path, map_location="cpu")  # verified: checksum, finite weights
        ckpt_io.load_state_into(self.method, data["model"], path)
        try:
            self.optimizer.load_state_dict(data["optimizer"])
            saved = data.get("extra_optimizers") or {}
            for name, opt in self.extra_optimizers.items():
                if name not in saved:
                    raise KeyError(f"no state of the {name} optimizer")
                opt.load_state_dict(saved[name])
        except (ValueError, KeyError, RuntimeError) as err:
            raise FdaeError(f"checkpoint {path}: optimizer state does not fit ({err}); "
                            f"resume with the run's own optim.name") from None
        if self.ema is not None:
            if data.get("ema"):
                self.ema.load_state_dict(data["ema"])
            else:
                self.say("the checkpoint has no EMA: the EMA starts from the current weights")
        self.step = int(data["step"])
        counters = data.get("counters", {})
        self.train_seconds = float(counters.get("train_seconds", 0.0))
        self.guard = NonFiniteGuard(self.device, int(counters.get("skipped", 0)))
        self.guard.run.fill_(int(counters.get("bad_run", 0)))
        ranks = data.get("ranks") or []
        if len(ranks) == self.info.world_size and ranks[self.info.rank]["shards"] == self.shards:
            mine = ranks[self.info.rank]
            for gen, state in zip(self.data_gens, mine["data"]):
                gen.set_state(state)
            for gen, state in zip(self.noise_gens, mine["noise"]):
                gen.set_state(state)
            set_global_state(mine["global"])
            self.acc = {k: v.to(self.device) for k, v in mine["acc"].items()}
            self.acc_count = mine["acc_count"].to(self.device)
            self.acc_grad = mine["acc_grad"].to(self.device)
        else:
            self.say(f"resuming with a different layout (world size x grad_accum) than {path} was "
                     f"written with: new random streams, so this is not bit-exact")
            offset = 16 * (self.step + 1)
            self.data_gens = [make_generator(self.cfg.seed, k, DATA + offset, self.device) for k in self.shards]
            self.noise_gens = [make_generator(self.cfg.seed, k, NOISE + offset, self.device) for k in self.shards]
            seed_global(self.cfg.seed + self.step, self.info.rank)
        self.last_ckpt = path
        self.say(f"resumed from {path} at step {self.step}")

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> Path | None:
        """Write a checkpoint of the current state (a collective: every rank calls it).
        Weights an update broke are never written: the run stops instead (every rank
        holds the same weights, so every rank decides the same)."""
        self._stop_if_weights_broken(full=True)
        mine = {
            "shards": list(self.shards),
            "data": [g.get_state() for g in self.data_gens],
            "noise": [g.get_state() for g in self.noise_gens],
            "global": global_state(),
            "acc": {k: v.detach().cpu() for k, v in self.acc.items()},
            "acc_count": self.acc_count.detach().cpu(),
            "acc_grad": self.acc_grad.detach().cpu(),
        }
        ranks = distributed.gather_to_main(mine, self.info)
        path = None
        if self.info.is_main:
            skipped, _, run = self.guard.read_total_and_run()
            payload = {
                "step": self.step,
                "model": {k: v.detach().cpu() for k, v in self.method.state_dict().items()},
                "ema": _to_cpu(self.ema.state_dict()) if self.ema is not None else None,
                "optimizer": _to_cpu(self.optimizer.state_dict()),
                "extra_optimizers": {k: _to_cpu(o.state_dict()) for k, o in self.extra_optimizers.items()},
                "ranks": ranks,
                "config": to_dict(self.cfg),
                "counters": {"train_seconds": self.train_seconds, "skipped": skipped, "bad_run": run},
                "world_size": self.info.world_size,
            }
            path = ckpt_io.save_checkpoint(payload, ckpt_io.checkpoint_path(self.run_dir, self.step))
            ckpt_io.prune_checkpoints(self.run_dir, self.cfg.train.keep_last)
        path = distributed.broadcast_object(str(path) if path else None, self.info)
        self.last_ckpt = Path(path) if path else None
        return self.last_ckpt

    # ------------------------------------------------------------------ the step
    def train_step(self) -> None:
        set_lr(self.optimizer, lr_at(self.step, self.cfg.optim))
        self.optimizer.zero_grad(set_to_none=True)
        for opt in self.extra_optimizers.values():
            opt.zero_grad(set_to_none=True)
        step = torch.full((), float(self.step), device=self.device)  # a fill kernel: no host-to-device copy
        sums: dict[str, Tensor] = {}
        n = len(self.shards)
        saved_buffers = [b.clone() for b in self.buffers]
        for j in range(n):
            images, _ = self.dataset.sample_batch(self.shard_size, self.data_gens[j], self.device)
            no_sync = self.model.no_sync() if (self.info.enabled and j < n - 1) else contextlib.nullcontext()
            with no_sync:
                terms = self.model(images, self.noise_gens[j], step)  # autocast inside (fp32 loss)
                (terms["loss"] / n).backward()
            for k, v in terms.items():
                v = v.detach().float() / n
                sums[k] = sums[k] + v if k in sums else v
        grads = [p.grad for p in self.main_params if p.grad is not None]
        norm = _total_norm(grads)
        if self.cfg.optim.grad_clip:
            _clip(grads, self.cfg.optim.grad_clip, norm)
        ok = torch.isfinite(sums["loss"]) & torch.isfinite(norm)
        if self.extra_optimizers:
            ok = ok & torch.isfinite(_total_norm([p.grad for p in self.extra_params if p.grad is not None]))
        if self.info.enabled:
            flag = ok.to(torch.int32)
            distributed.all_reduce(flag, self.info, "min")
            ok = flag.bool()
        self.guard.record(ok)
        for buf, saved in zip(self.buffers, saved_buffers):
            buf.copy_(torch.where(ok, buf, saved))
        if self.extra_optimizers and bool(ok):  # a host read, only for methods that have them
            for opt in self.extra_optimizers.values():
                opt.step()
        if self.fused:  # the fused kernel skips the update on the device
            self.optimizer.found_inf = (~ok).float()  # type: ignore[attr-defined]
            self.optimizer.grad_scale = None  # type: ignore[attr-defined]
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.found_inf, self.optimizer.grad_scale  # type: ignore[attr-defined]
            if self.ema is not None:
                self.ema.update(mask=ok.float())
        else:  # one host read per step; free on the CPU
            if bool(ok):
                self.optimizer.step()
                if self.ema is not None:
                    self.ema.update()
            elif self.ema is not None:
                self.ema.updates += 1
        norm_now = _total_norm([p.detach() for p in self.params])
        healthy = weights_healthy(norm_now, self.prev_norm, self.start_norm)
        self.guard.record_weights(healthy, self.step + 1)
        self.prev_norm = torch.where(healthy, norm_now.float(), self.prev_norm)
        okf = ok.float()
        for k, v in sums.items():
            prev = self.acc.get(k)
            add = torch.where(ok, v, torch.zeros_like(v))
            self.acc[k] = prev + add if prev is not None else add
        self.acc_count = self.acc_count + okf
        self.acc_grad = self.acc_grad + torch.where(ok, norm.float(), torch.zeros_like(norm, dtype=torch.float32))
        self.step += 1

    def _periodic(self) -> None:
        """The method's between-step work, from a stream of its own per step."""
        if not self.method.periodic_due(self.step):  # most steps of most methods: nothing to do
            return
        gen = make_generator(self.cfg.seed, self.step, PERIODIC, self.device)
        # with the EMA weights, the ones evaluation and checkpoints' users see (DyGA fits its
        # anchors to their codes, as the reference fits at validation under its EMA scope)
        ctx = self.ema.swapped() if self.ema is not None else contextlib.nullcontext()
        with ctx:
            self.method.periodic(self.step, lambda n: self.dataset.sample_batch(n, gen, self.device)[0], gen)

    # ------------------------------------------------------------------ logging
    def log(self, images_per_s: float) -> dict[str, Any]:
        keys = sorted(self.acc)
        vec = torch.stack([self.acc[k] for k in keys] + [self.acc_count, self.acc_grad]).float()
        distributed.all_reduce(vec, self.info, "sum")
        values = vec.tolist()
        count = values[-2]
        w = self.info.world_size
        record: dict[str, Any] = {"step": self.step}
        mean = (lambda s: s / count) if count > 0 else (lambda s: None)
        record["loss"] = mean(values[keys.index("loss")]) if "loss" in keys else None
        for k, s in zip(keys, values):
            if k != "loss":
                record[k] = mean(s)
        record["grad_norm"] = mean(values[-1] / w)
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        record["images_per_s"] = images_per_s
        skipped, _, _ = self.guard.read_total_and_run()
        record["skipped"] = skipped
        record["minutes"] = self.train_seconds / 60.0
        self.acc = {}
        self.acc_count = torch.zeros((), device=self.device)
        self.acc_grad = torch.zeros((), device=self.device)
        self.logger.metrics(record)
        self.last_record = record
        return record

    def check_guard(self) -> None:
        self._stop_if_weights_broken(full=False)
        total, longest, run = self.guard.read()
        if longest >= self.cfg.train.max_bad_steps:
            path = self.save()
            self.logger.close()
            raise TrainingDiverged(
                f"training stopped at step {self.step}: the loss or gradients were not finite for "
                f"{longest} steps in a row ({total} skipped in all); the last good weights (finite, checked) are "
                f"saved in {path}. Lower optim.lr (now {self.cfg.optim.lr:g}), set optim.grad_clip (e.g. 1.0) or "
                f"optim.warmup_steps, then continue with `fdae train --resume {self.run_dir} optim.lr=...`"
            )

    def _stop_if_weights_broken(self, full: bool) -> None:
        """Stop, without saving, once an update has broken the weights (non-finite or
        blown up: see `fdae.train.guard`), or (`full`, before a save) if any weight,
        optimizer moment or EMA value is not finite; the last checkpoint keeps the last
        finite weights."""
        broken = self.guard.read_broken()
        if not broken and (not full or self._state_finite()):
            return
        lr = self.cfg.optim.lr
        now = float(_total_norm([p.detach() for p in self.params]))
        start = float(self.start_norm)
        if broken and math.isfinite(now):
            what = (f"the update of step {broken} blew the weights up (their norm went from {start:.3g} at step "
                    f"{self.start_step} to {now:.3g})")
        elif broken:
            what = f"the update of step {broken} made the weights non-finite (NaN or inf)"
        else:
            what = "the optimizer state or EMA holds non-finite values"
        if self.last_ckpt is not None:
            kept = (f"The last finite weights are in {self.last_ckpt} (step {_step_of(self.last_ckpt)}); nothing "
                    f"after it was saved.")
        else:
            kept = ("No checkpoint was written before that, so there are no trained weights to keep; resuming "
                    "starts again from step 0.")
        self.logger.close()
        if self.async_eval is not None:
            self.async_eval.stop()
        raise TrainingDiverged(
            f"training stopped at step {self.step}: {what} with optim.lr={lr:g}; the learning rate is likely too "
            f"high. {kept} Lower optim.lr (e.g. optim.lr={lr / 100:g}; the presets use 1e-4 to 1e-3), or set "
            f"optim.grad_clip=1.0 or optim.warmup_steps, then continue with "
            f"`fdae train --resume {self.run_dir} optim.lr=...`"
        )

    def _state_finite(self) -> bool:
        """Every parameter, moment of every optimizer and EMA value is finite (one pass; at saves)."""
        tensors = [p.detach() for p in self.params]
        for opt in (self.optimizer, *self.extra_optimizers.values()):
            for state in opt.state.values():
                tensors += [v for v in state.values() if isinstance(v, Tensor) and v.is_floating_point()]
        if self.ema is not None:
            tensors += list(self.ema.shadow)
        tensors = [t for t in tensors if t.numel()]
        if not tensors:
            return True
        norms = torch._foreach_norm([t.float() if t.dtype != torch.float32 else t for t in tensors])
        return bool(torch.isfinite(torch.stack([n.to(tensors[0].device) for n in norms]).sum()))

    # ------------------------------------------------------------------ the loop
    def run(self) -> TrainResult:
        cfg, t = self.cfg, self.cfg.train
        if self.info.is_main:
            n_params = sum(p.numel() for p in self.params)
            self.say(f"run {self.run_dir}: {cfg.method.name} on {self.dataset.name}, {n_params / 1e6:.2f} M "
                     f"parameters, {self.device}, world size {self.info.world_size}, "
                     f"{'fused ' if self.fused else ''}{cfg.optim.name}, {self.precision}"
                     f"{', compiled' if t.compile else ''}, step {self.step}/{t.steps}")
            if self.logger.tensorboard_error and t.log_every:
                self.say(f"TensorBoard logging off (pip install tensorboard to enable); {self._image_plan()}")
        reason = "done"
        from tqdm import tqdm

        bar = tqdm(total=t.steps, initial=self.step, disable=not self.progress, dynamic_ncols=True,
                   unit="step", file=sys.stderr)
        sync_every_step = not self.fused
        session_start = self.now()
        last_log_t, last_log_step = time.perf_counter(), self.step
        seg_start = self.now()
        old_handlers = self._install_signal_handlers()
        try:
            while self.step < t.steps:
                self.train_step()
                self._periodic()
                faults.pause_after_step(self.step)
                if self.clock is not None:
                    self.clock.tick()
                if self.async_eval is not None:
                    self.async_eval.poll()
                bar.update(1)
                now = self.now()
                self.train_seconds += now - seg_start
                seg_start = now
                at_log = self.step % t.log_every == 0 or self.step == t.steps
                if sync_every_step:
                    self.check_guard()
                if at_log:
                    ips = (self.step - last_log_step) * t.batch_size / max(time.perf_counter() - last_log_t, 1e-9)
                    rec = self.log(ips)
                    if not sync_every_step:
                        self.check_guard()
                    if rec["loss"] is not None:
                        bar.set_postfix(loss=f"{rec['loss']:.4f}", img_s=f"{ips:.1f}", refresh=False)
                    last_log_t, last_log_step = time.perf_counter(), self.step
                if self.info.is_main and t.eval_every and self.step % t.eval_every == 0:
                    self._evaluate()
                if self.images is not None and self.step % self.image_every == 0:
                    self._images()
                if t.ckpt_every and self.step % t.ckpt_every == 0 and self.step < t.steps:
                    self.save()
                stop = self._should_stop(session_start, at_log)
                if stop:
                    reason = stop
                    break
                seg_start = self.now()
        except BaseException:
            if self.async_eval is not None:  # their snapshots are evaluated again on resume
                self.async_eval.stop()
            raise
        finally:
            self._restore_signal_handlers(old_handlers)
            bar.close()
        try:
            if self.last_ckpt is None or _step_of(self.last_ckpt) != self.step:
                self.save()
        except BaseException:
            if self.async_eval is not None:  # no worker outlives a failed run
                self.async_eval.stop()
            raise
        if self.async_eval is not None:
            if reason == "signal" or (reason == "time_limit" and not cfg.eval.async_wait):
                self.async_eval.stop()  # their snapshots are evaluated when the run resumes
            else:
                self.async_eval.drain()
        self.logger.close()
        skipped, _, _ = self.guard.read_total_and_run()
        if reason == "signal":
            self.say(f"stopped by signal at step {self.step}; checkpoint {self.last_ckpt}; "
                     f"continue with `fdae train --resume {self.run_dir}`")
        elif reason == "time_limit":
            self.say(f"time limit of {t.time_limit_min:.3g} min reached at step {self.step}; checkpoint "
                     f"{self.last_ckpt}; continue with `fdae train --resume {self.run_dir}`")
        return TrainResult(run_dir=self.run_dir, step=self.step, reason=reason, checkpoint=self.last_ckpt,
                           last_metrics=self.last_record, skipped_steps=skipped,
                           minutes=self.train_seconds / 60.0)

    def _image_plan(self) -> str:
        """Where image grids go in this session, truthfully (none when no image step falls
        within the steps left)."""
        every, steps = self.image_every, self.cfg.train.steps
        if self.images is None:
            return "no image grids (train.image_every=0)"
        first = (self.step // every + 1) * every
        if first > steps:
            return (f"no image grids in this run: the first would come at step {first}, after train.steps={steps} "
                    f"(set train.image_every to {steps} or less for some)")
        return f"image grids go to {self.run_dir / 'images'} (every {every} steps, first at step {first})"

    def _should_stop(self, session_start: float, at_log: bool) -> str | None:
        t = self.cfg.train
        if self.step >= t.steps:
            return None
        timed_out = t.time_limit_min is not None and self.now() - session_start >= t.time_limit_min * 60.0
        signalled = self.signal is not None
        if self.info.enabled:  # ranks must agree: decide at log steps only
            if not at_log:
                return None
            flags = torch.tensor([int(signalled), int(timed_out)], device=self.device)
            distributed.all_reduce(flags, self.info, "max")
            signalled, timed_out = (bool(v) for v in flags.tolist())
        if signalled:
            return "signal"
        if timed_out:
            return "time_limit"
        return None

    def _evaluate(self) -> None:
        t0 = time.perf_counter()
        ctx = self.ema.swapped() if self.ema is not None else contextlib.nullcontext()
        if self.async_eval is not None:
            with ctx:
                self.async_eval.submit(self.method, self.step, self.train_seconds / 60.0, self.ema is not None)
            return
        try:
            with ctx:
                result = evaluate_now(self.method, self.dataset, self.cfg, self.device, say=self.say)
        except FdaeError as err:  # a metric that cannot apply must not end a long run
            self.say(f"evaluation at step {self.step} skipped: {err}")
            return
        if result is None:
            return
        record = {"step": self.step, "minutes": self.train_seconds / 60.0, "protocol": self.cfg.eval.protocol,
                  "ema": self.ema is not None, "metrics": summarize_metrics(result),
                  "eval_seconds": time.perf_counter() - t0}
        self.logger.evaluation(record)
        flat = flatten_numbers(record["metrics"])
        shown = ", ".join(f"{k}={v:.3f}" for k, v in list(flat.items())[:8])
        self.say(f"eval at step {self.step}: {shown}")

    def _images(self) -> None:
        ctx = self.ema.swapped() if self.ema is not None else contextlib.nullcontext()
        with ctx:
            self.images(self.method, self.logger, self.step)
        self.logger.flush()

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, frame):  # noqa: ARG001
            if self.signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C stops at once
            self.signal = signum
            self.say(f"signal {signal.Signals(signum).name}: finishing the step and saving a checkpoint")

        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.getsignal(sig)
            signal.signal(sig, handler)
        return old

    @staticmethod
    def _restore_signal_handlers(old: dict[int, Any]) -> None:
        for sig, h in old.items():
            signal.signal(sig, h)


# ---------------------------------------------------------------------- helpers
def _total_norm(grads: list[Tensor]) -> Tensor:
    if not grads:
        return torch.zeros(())
    norms = torch._foreach_norm(grads)
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


def _clip(grads: list[Tensor], max_norm: float, norm: Tensor) -> None:
    coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    torch._foreach_mul_(grads, coef.to(grads[0].device))


def _to_cpu(tree: Any) -> Any:
    if isinstance(tree, Tensor):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {k: _to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_to_cpu(v) for v in tree]
    if isinstance(tree, tuple):
        return tuple(_to_cpu(v) for v in tree)
    return tree


def _step_of(path: Path) -> int:
    m = ckpt_io.PATTERN.match(path.name)
    return int(m.group(1)) if m else -1


def _save_config_atomic(cfg: Config, path: Path) -> None:
    """config.yaml via a temporary file and a rename: a crash never leaves half of it."""
    with replacing(path, "choose a writable --run-dir") as tmp:
        save_config(cfg, tmp)
