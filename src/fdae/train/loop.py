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
seconds per step, so that where a session stops does not depend on the machine's speed). Too many non-finite steps
in a row raise `TrainingDiverged` after saving the last good weights.
"""

from __future__ import annotations

import contextlib
import copy
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
from fdae.errors import FdaeError, require_output_dir
from fdae.train import checkpoint as ckpt_io
from fdae.train import distributed
from fdae.train.ema import EMA
from fdae.train.guard import NonFiniteGuard
from fdae.train.hooks import ImageHook, evaluate_now, summarize_metrics
from fdae.train.logging import RunLogger, flatten_numbers, read_jsonl
from fdae.train.optim import build_optimizer, is_fused, lr_at, set_lr
from fdae.train.rng import DATA, NOISE, derive_seed, global_state, make_generator, seed_global, set_global_state

INIT = 4  # rng stream for the model's initial weights (identical on every rank)


class TrainingDiverged(FdaeError):
    """Too many non-finite steps in a row; the last good weights were saved."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # optimizer steps done (skipped ones included)
    reason: str  # "done" | "time_limit" | "signal"
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

    The noise is drawn eagerly from the shard's generator (`method.draw_noise`); the rest
    (`method.loss_given_noise` under autocast) is `loss_fn`, compiled when
    `train.compile` (see `fdae.train.fast_step.make_loss_fn`)."""

    def __init__(self, method: nn.Module, loss_fn: Any):
        super().__init__()
        self.method = method
        self.loss_fn = loss_fn

    def forward(self, images: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        sigma, noise = self.method.draw_noise(images, generator)
        return self.loss_fn(images, sigma, noise)


def default_run_dir(cfg: Config, root: str | Path = "runs") -> Path:
    return Path(root) / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(cfg: Config, run_dir: str | Path | None = None, resume: bool = False, *,
          progress: bool = True, tensorboard: bool = True, clock: StepClock | None = None) -> TrainResult:
    """Train `cfg` in `run_dir` (None: runs/NAME-TIMESTAMP); `resume=True` continues the
    newest checkpoint of `run_dir` (the caller passes the run's config, see
    `fdae.train.checkpoint.run_config`). `clock`: training time for the time limit and the
    recorded minutes (default: the wall clock). Under `torchrun` every rank calls this."""
    cfg = with_absolute_paths(copy.deepcopy(cfg))
    info = distributed.setup(cfg.train.device, cfg.train.dist_backend)
    try:
        if run_dir is None:
            if resume:
                raise FdaeError("resume needs the run directory to continue")
            run_dir = distributed.broadcast_object(str(default_run_dir(cfg)), info)
        result = _Trainer(cfg, Path(run_dir), resume, info, progress, tensorboard, clock).run()
        # Leave together: rank 0 hosts the rendezvous store, and a rank that tears down
        # while another still talks to it can be aborted by the backend.
        distributed.barrier(info)
        return result
    finally:
        distributed.teardown(info)


class _Trainer:
    def __init__(self, cfg: Config, run_dir: Path, resume: bool, info: distributed.DistInfo,
                 progress: bool, tensorboard: bool, clock: StepClock | None = None):
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

        start_ckpt = self._prepare_run_dir(resume)

        from fdae.data import get_dataset
        from fdae.methods import build_method

        self.dataset = get_dataset(cfg.data.name, root=cfg.data.root, image_size=cfg.data.image_size)
        torch.manual_seed(derive_seed(cfg.seed, 0, INIT))
        self.method = build_method(cfg, self.dataset.num_channels, self.dataset.image_size).to(self.device)
        self.method.train()
        seed_global(cfg.seed, info.rank)
        self.params = [p for p in self.method.parameters() if p.requires_grad]
        # Buffers a forward pass writes (BatchNorm running statistics): restored after a
        # non-finite step, so a skipped step leaves no NaN behind in the model.
        self.buffers = [b for b in self.method.buffers()]
        self.optimizer = build_optimizer(self.params, cfg.optim, self.device)
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
            self._load(start_ckpt)
        from fdae.train.fast_step import make_loss_fn

        use_bf16 = t.precision == "bf16" or (t.precision == "auto" and self.device.type == "cuda")
        self.precision = "bf16" if use_bf16 else "fp32"
        loss_fn = make_loss_fn(self.method, self.precision, compile=t.compile)
        self.model: nn.Module = _LossModule(self.method, loss_fn)
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.model = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.logger = RunLogger(run_dir, enabled=info.is_main, tensorboard=tensorboard)
        if info.is_main and start_ckpt is not None:
            for name in ("metrics.jsonl", "eval.jsonl"):
                _truncate_jsonl(run_dir / name, self.step)
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

    # ------------------------------------------------------------------ setup
    def say(self, msg: str) -> None:
        if self.info.is_main:
            from tqdm import tqdm

            tqdm.write(msg, file=sys.stderr)

    def _prepare_run_dir(self, resume: bool) -> Path | None:
        run_dir = self.run_dir
        require_output_dir(run_dir, "--run-dir")
        start = None
        if resume:
            ckpt_io.require_run_dir(run_dir)
            start = ckpt_io.latest_checkpoint(run_dir)
            if start is None:
                self.say(f"{run_dir} has no checkpoint yet: starting from step 0")
        elif ckpt_io.list_checkpoints(run_dir):
            raise FdaeError(
                f"run directory {run_dir} already holds checkpoints; continue it with "
                f"`fdae train --resume {run_dir}` or choose another --run-dir"
            )
        if self.info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, run_dir / "config.yaml")
        distributed.barrier(self.info)
        return start

    def _load(self, path: Path) -> None:
        data = ckpt_io.load_checkpoint(path, map_location="cpu")
        ckpt_io.load_state_into(self.method, data["model"], path)
        try:
            self.optimizer.load_state_dict(data["optimizer"])
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
        """Write a checkpoint of the current state (a collective: every rank calls it)."""
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
        sums: dict[str, Tensor] = {}
        n = len(self.shards)
        saved_buffers = [b.clone() for b in self.buffers]
        for j in range(n):
            images, _ = self.dataset.sample_batch(self.shard_size, self.data_gens[j], self.device)
            no_sync = self.model.no_sync() if (self.info.enabled and j < n - 1) else contextlib.nullcontext()
            with no_sync:
                terms = self.model(images, self.noise_gens[j])  # autocast inside (fp32 loss)
                (terms["loss"] / n).backward()
            for k, v in terms.items():
                v = v.detach().float() / n
                sums[k] = sums[k] + v if k in sums else v
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = _total_norm(grads)
        if self.cfg.optim.grad_clip:
            _clip(grads, self.cfg.optim.grad_clip, norm)
        ok = torch.isfinite(sums["loss"]) & torch.isfinite(norm)
        if self.info.enabled:
            flag = ok.to(torch.int32)
            distributed.all_reduce(flag, self.info, "min")
            ok = flag.bool()
        self.guard.record(ok)
        for buf, saved in zip(self.buffers, saved_buffers):
            buf.copy_(torch.where(ok, buf, saved))
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
        okf = ok.float()
        for k, v in sums.items():
            prev = self.acc.get(k)
            add = torch.where(ok, v, torch.zeros_like(v))
            self.acc[k] = prev + add if prev is not None else add
        self.acc_count = self.acc_count + okf
        self.acc_grad = self.acc_grad + torch.where(ok, norm.float(), torch.zeros_like(norm, dtype=torch.float32))
        self.step += 1

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
        total, longest, run = self.guard.read()
        if longest >= self.cfg.train.max_bad_steps:
            path = self.save()
            self.logger.close()
            raise TrainingDiverged(
                f"training stopped at step {self.step}: the loss or gradients were not finite for "
                f"{longest} steps in a row ({total} skipped in all); the last good weights are saved in "
                f"{path}. Lower optim.lr, set optim.grad_clip (e.g. 1.0) or optim.warmup_steps, then "
                f"continue with `fdae train --resume {self.run_dir} optim.lr=...`"
            )

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
                self.say("TensorBoard logging off (pip install tensorboard to enable); "
                         "image grids go to RUN_DIR/images/")
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


def _truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from."""
    records = read_jsonl(path)
    if not records:
        return
    kept = [r for r in records if int(r.get("step", 0)) <= max_step]
    if len(kept) != len(records):
        import json

        path.write_text("".join(json.dumps(r) + "\n" for r in kept))

