"""Skipping steps whose loss or gradients are not finite, cheaply; stopping a run whose
weights an update broke.

Each step computes `ok = isfinite(loss) & isfinite(grad_norm)` on the device (the grad
norm is needed anyway for clipping and logging; in DDP the flag is all-reduced so all
ranks agree). Then:
  * with a fused optimizer (Adam/AdamW/RAdam on CUDA), `found_inf = 1 - ok` goes to the fused
    kernel, which leaves parameters, moments and step count untouched when it is set;
    the EMA update is masked the same way. No host sync per step: the counters below
    stay on the device and are read at log steps, so a run that keeps failing stops at
    the first log step after `max_bad_steps` non-finite steps in a row (its weights are
    still the last good ones, as no bad step was applied);
  * otherwise (CPU, foreach optimizers) the trainer reads `ok` on the host every step and does not
    call `optimizer.step()`; on the CPU this costs nothing (execution is synchronous).

A finite gradient can still break the weights: an absurd learning rate (1e6) makes one
update blow them up, and every later step is then non-finite. So after each update the
trainer also measures the weights' norm (one foreach reduction) and `weights_healthy`
calls them broken when it is not finite, or grew more than `STEP_GROWTH` times in one
step, or `TOTAL_GROWTH` times since the session started: no sane step does that. The
guard latches the first such step (`broken`); the trainer then stops without saving,
since the only finite weights left are those of the last checkpoint (every checkpoint
is checked before it is written).
"""

from __future__ import annotations

import torch
from torch import Tensor

STEP_GROWTH = 10.0  # one update multiplying the weights' norm by this is a blow-up
TOTAL_GROWTH = 1000.0  # ... and so is this much growth over one session


def weights_healthy(norm: Tensor, prev_norm: Tensor, start_norm: Tensor) -> Tensor:
    """A 0-dim bool on the device: the weights' norm is finite and did not blow up."""
    return torch.isfinite(norm) & (norm <= STEP_GROWTH * prev_norm) & (norm <= TOTAL_GROWTH * start_norm)


class NonFiniteGuard:
    def __init__(self, device: torch.device, total: int = 0):
        self.run = torch.zeros((), dtype=torch.int64, device=device)  # current streak
        self.longest = torch.zeros((), dtype=torch.int64, device=device)  # since last read
        self.total = torch.full((), int(total), dtype=torch.int64, device=device)
        self.broken = torch.zeros((), dtype=torch.int64, device=device)  # first step that broke the weights

    def record(self, ok: Tensor) -> None:
        bad = (~ok).to(torch.int64)
        self.run.add_(1).mul_(bad)  # streak + 1 if bad, else 0
        torch.maximum(self.longest, self.run, out=self.longest)
        self.total.add_(bad)

    def record_weights(self, healthy: Tensor, step: int) -> None:
        """Latch `step` (1-based, the update just applied) if it left the weights broken."""
        first = (self.broken == 0) & ~healthy
        self.broken.copy_(torch.where(first, torch.full_like(self.broken, step), self.broken))

    def read_broken(self) -> int:
        """The step whose update broke the weights, or 0; syncs."""
        return int(self.broken.item())

    def read(self) -> tuple[int, int, int]:
        """(total skipped, longest streak since the last read, current streak); syncs."""
        total, longest, run = torch.stack([self.total, self.longest, self.run]).tolist()
        self.longest.copy_(self.run)
        return int(total), int(longest), int(run)

    def read_total_and_run(self) -> tuple[int, int, int]:
        """Like `read` but leaves the streak bookkeeping alone (for logs and checkpoints)."""
        total, longest, run = torch.stack([self.total, self.longest, self.run]).tolist()
        return int(total), int(longest), int(run)
