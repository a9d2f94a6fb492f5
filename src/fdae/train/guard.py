"""Skipping steps whose loss or gradients are not finite, cheaply.

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
"""

from __future__ import annotations

import torch
from torch import Tensor


class NonFiniteGuard:
    def __init__(self, device: torch.device, total: int = 0):
        self.run = torch.zeros((), dtype=torch.int64, device=device)  # current streak
        self.longest = torch.zeros((), dtype=torch.int64, device=device)  # since last read
        self.total = torch.full((), int(total), dtype=torch.int64, device=device)

    def record(self, ok: Tensor) -> None:
        bad = (~ok).to(torch.int64)
        self.run.add_(1).mul_(bad)  # streak + 1 if bad, else 0
        torch.maximum(self.longest, self.run, out=self.longest)
        self.total.add_(bad)

    def read(self) -> tuple[int, int, int]:
        """(total skipped, longest streak since the last read, current streak); syncs."""
        total, longest, run = torch.stack([self.total, self.longest, self.run]).tolist()
        self.longest.copy_(self.run)
        return int(total), int(longest), int(run)

    def read_total_and_run(self) -> tuple[int, int, int]:
        """Like `read` but leaves the streak bookkeeping alone (for logs and checkpoints)."""
        total, longest, run = torch.stack([self.total, self.longest, self.run]).tolist()
        return int(total), int(longest), int(run)
