"""Exponential moving average of the parameters, updated with foreach kernels.

`ema <- ema + w * (param - ema)` with `w = 1 - decay_t`, `decay_t = min(decay,
(1 + t) / (10 + t))` (a warm-up so short runs are not dominated by the initial
weights). `w` may be a device tensor (0 on skipped steps) so the update needs no host
sync. Only parameters are averaged; buffers (BatchNorm statistics) come from the model.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = float(decay)
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.shadow = [p.detach().float().clone() for p in self.params]
        self.updates = 0  # counted on the host: t in decay_t (skipped steps included)

    def weight(self) -> float:
        t = self.updates
        return 1.0 - min(self.decay, (1.0 + t) / (10.0 + t))

    @torch.no_grad()
    def update(self, mask: Tensor | None = None) -> None:
        """One step; `mask` (0-dim float tensor, 1 = apply) skips it on the device."""
        w = self.weight()
        self.updates += 1
        src = [p.detach().float() if p.dtype != torch.float32 else p.detach() for p in self.params]
        if mask is None:
            torch._foreach_lerp_(self.shadow, src, w)
        else:
            torch._foreach_lerp_(self.shadow, src, (mask * w).to(self.shadow[0].device))

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates,
                "params": {n: t for n, t in zip(self.names, self.shadow)}}

    def load_state_dict(self, state: dict) -> None:
        params = state["params"]
        missing = [n for n in self.names if n not in params]
        if missing:
            raise KeyError(f"EMA state lacks {missing[:3]}")
        for name, t in zip(self.names, self.shadow):
            t.copy_(params[name])
        self.updates = int(state["updates"])

    @contextlib.contextmanager
    @torch.no_grad()
    def swapped(self) -> Iterator[None]:
        """Temporarily put the averaged weights into the model (e.g. for evaluation)."""
        saved = [p.detach().clone() for p in self.params]
        for p, s in zip(self.params, self.shadow):
            p.copy_(s)
        try:
            yield
        finally:
            for p, s in zip(self.params, saved):
                p.copy_(s)


def apply_ema_weights(model: nn.Module, ema_params: dict[str, Tensor]) -> None:
    """Load averaged parameters (from a checkpoint's 'ema' entry) into `model`."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in ema_params:
                p.copy_(ema_params[name])
