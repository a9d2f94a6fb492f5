"""Optimizers (RAdam as in the official FDAE, AdamW, Adam) and the warm-up schedule.

Fused kernels are used on CUDA (Adam/AdamW: PyTorch's; RAdam: `fdae.train.fused_radam`,
the same algorithm and state on the fused Adam kernel); otherwise the foreach
implementation. Fused kernels also accept a device-side `found_inf` flag, which lets the
trainer skip a non-finite step without a host sync (see `fdae.train.guard`).
"""

from __future__ import annotations

import inspect
from typing import Iterable

import torch

from fdae.config import OptimConfig

from fdae.train.fused_radam import FusedRAdam

OPTIMIZERS = {"radam": torch.optim.RAdam, "adamw": torch.optim.AdamW, "adam": torch.optim.Adam}


def supports_fused(name: str, device: torch.device) -> bool:
    cls = OPTIMIZERS[name]
    return device.type == "cuda" and (name == "radam" or "fused" in inspect.signature(cls).parameters)


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig, device: torch.device,
                    fused: bool | None = None) -> torch.optim.Optimizer:
    """The optimizer named by `cfg.name`. `fused=None`: fused when `cfg.fused` and supported."""
    cls = OPTIMIZERS[cfg.name]
    if fused is None:
        fused = bool(cfg.fused) and supports_fused(cfg.name, device)
    kwargs = dict(lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if fused and cfg.name == "radam":
        return FusedRAdam(list(params), **kwargs)
    if fused:
        kwargs["fused"] = True
    else:
        kwargs["foreach"] = True
    return cls(list(params), **kwargs)


def is_fused(optimizer: torch.optim.Optimizer) -> bool:
    return isinstance(optimizer, FusedRAdam) or bool(optimizer.defaults.get("fused"))


def lr_at(step: int, cfg: OptimConfig) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warm-up, then constant."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
