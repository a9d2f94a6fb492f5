"""One optimised training step, with every optimisation behind a flag (GPU throughput).

    step = make_train_step(model, optimizer, precision="bf16", compile=True,
                           channels_last=True, compile_optimizer=True, ema=ema)
    for _ in range(steps):
        images, _ = dataset.sample_batch(batch, data_gen, device)   # rendered on the GPU
        loss = step(images, noise_gen)        # a detached 0-dim device tensor: no host sync

What each flag does (all off = the plain step: fp32, eager, `model.loss` then
`loss.backward()`, `optimizer.step()`, `optimizer.zero_grad(set_to_none=True)`):

* precision="bf16": the forward runs under CUDA/CPU bf16 autocast; EDM preconditioning,
  the loss and its weighting stay fp32 (`edm.denoise` upcasts; `GroupNorm32` computes in
  fp32). Parameters, gradients and optimizer state stay fp32 (no loss scaling is needed
  for bf16).
* compile=True: `model.loss_given_draws` (CMFNet + U-Net + EDM loss, forward and, through
  AOTAutograd, backward) is compiled with `torch.compile(mode=compile_mode)`. The random
  draws (sigma, noise) are made eagerly from the caller's generator by
  `model.draw`, so the loss sees the same noise as the plain step; dropout inside
  the compiled graph uses inductor's own RNG (same distribution, different stream).
* channels_last=True: the model (its 4-D conv weights) and each batch are put in
  channels-last memory format; convolutions then run on cuDNN's NHWC kernels without
  layout transposes, and attention's (B, C, H, W) -> (B, HW, C) view is free.
* compile_optimizer=True: `optimizer.step` is compiled as well; for a foreach optimizer
  (RAdam, as the official FDAE) this turns its ~10 passes over the parameters into one
  or two fused kernels. A learning rate that changes during training should then be a
  0-dim tensor in the param group, or every change recompiles. Without compiling,
  `fdae.train.fused_radam.FusedRAdam` runs the same RAdam on one fused kernel (the
  trainer's default on CUDA).
* ema: an `fdae.train.ema.EMA`, updated after each step with foreach lerp.
* cudnn_benchmark=True (default on CUDA): cuDNN picks the fastest convolution algorithm
  for each shape once.

The returned callable takes (images, generator=None) and returns the detached total loss
(a device tensor; call `.item()` only when logging). `step.loss_fn` is the (possibly
compiled) loss function, for profiling.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor


def autocast_context(device_type: str, precision: str) -> Any:
    """bf16 autocast for precision 'bf16', a disabled autocast for 'fp32'."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


def make_loss_fn(model: torch.nn.Module, precision: str = "fp32", compile: bool = False,
                 compile_mode: str | None = None) -> Callable[[Tensor, dict[str, Tensor], Tensor], dict[str, Tensor]]:
    """(images, draws, step) -> the loss terms (`Method.loss_given_draws`), under the
    precision's autocast, compiled or not."""
    device_type = next(model.parameters()).device.type

    def loss_fn(images: Tensor, draws: dict[str, Tensor], step: Tensor) -> dict[str, Tensor]:
        with autocast_context(device_type, precision):
            return model.loss_given_draws(images, draws, step)

    if compile:
        return torch.compile(loss_fn, mode=compile_mode, dynamic=False)
    return loss_fn


def make_train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    precision: str = "fp32",
    compile: bool = False,
    compile_mode: str | None = None,
    channels_last: bool = False,
    compile_optimizer: bool = False,
    ema: Any = None,
    cudnn_benchmark: bool = True,
) -> Callable[..., Tensor]:
    """A training-step callable `step(images, generator=None) -> detached loss`; see the
    module docstring for the flags. The model is an `fdae.methods.Method` (`draw`,
    `loss_given_draws`) without extra optimizers."""
    device_type = next(model.parameters()).device.type
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if cudnn_benchmark and device_type == "cuda":
        torch.backends.cudnn.benchmark = True
    loss_fn = make_loss_fn(model, precision, compile, compile_mode)
    opt_step = torch.compile(optimizer.step) if compile_optimizer else optimizer.step
    step_count = torch.zeros((), device=next(model.parameters()).device)

    def step(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        draws = model.draw(images, generator)
        terms = loss_fn(images, draws, step_count)
        terms["loss"].backward()
        opt_step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update()
        step_count.add_(1)
        return terms["loss"].detach()

    step.loss_fn = loss_fn  # type: ignore[attr-defined]
    return step
