"""RAdam with one fused kernel per step: torch.optim.RAdam's algorithm, state and
checkpoints, at the cost of fused Adam.

Why: the official FDAE trains with RAdam, for which PyTorch has no fused kernel; its
foreach implementation makes about ten passes over the parameters and, on the CPU side,
one launch per op and tensor list (19 ms of a 123 ms step for the paper model on an
H100, BENCHMARKS.md). Once RAdam's rectified phase has begun (rho_t > 5: from step 6
with beta2 = 0.999), its update

    p <- p - lr * r_t * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)

is an Adam update with bias corrections 1 and the step size
lr' = lr * r_t * sqrt(1 - beta2^t) / (1 - beta1^t). So it runs on PyTorch's fused Adam
kernel, given lr' as a device tensor computed from the device's step count (no host
sync) and a constant step so large that the kernel's own bias corrections are 1. The
first steps (rho_t <= 5, un-rectified: p <- p - lr * m / (1 - beta1^t)) use foreach ops
and read the step count on the host, once per step, five times in a run.

A device-side `found_inf` (set as an attribute, as for the fused Adam, by
`fdae.train.guard`'s users) skips the step on the device: parameters, moments and step
counts stay as they were. Step counts are per parameter, as in torch.optim.RAdam: when
parameters of a group have different counts (one got gradients later than the others, a
loaded state), the counts are read on the host and each count gets its own update. The state (`step`, `exp_avg`, `exp_avg_sq` per parameter) and
param groups are torch.optim.RAdam's, so checkpoints move freely between the two.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

_NO_BIAS_CORRECTION_STEP = float(2**60)  # beta ** step == 0.0 for any beta < 1


_NO_CORRECTION: dict[torch.device, Tensor] = {}


def _no_correction_step(device: torch.device) -> Tensor:
    """The constant step tensor (read only by the kernel), made once per device."""
    if device not in _NO_CORRECTION:
        _NO_CORRECTION[device] = torch.full((), _NO_BIAS_CORRECTION_STEP, device=device)
    return _NO_CORRECTION[device]


def rho(step: float, beta2: float) -> float:
    """Length of the approximated SMA at `step` (RAdam, Liu et al. 2020, Eq. 4)."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    return rho_inf - 2.0 * step * beta2**step / (1.0 - beta2**step)


class FusedRAdam(torch.optim.Optimizer):
    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        if not lr > 0 or not eps >= 0 or not weight_decay >= 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid FusedRAdam hyper-parameters lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        # torch.optim.RAdam's group keys (and no 'fused' key, so that its state dict loads
        # into torch.optim.RAdam unchanged; fdae.train.optim.is_fused knows this class).
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, foreach=None,
                        maximize=False, capturable=False, differentiable=False, decoupled_weight_decay=False)
        super().__init__(params, defaults)
        # Group index -> the parameters (ids) it last stepped with all in the rectified
        # phase at one common step count: then the step count is read on the device only.
        self._rectified: dict[int, tuple[int, ...]] = {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._rectified = {}  # re-read from the loaded step counts at the next step

    def _lists(self, group: dict[str, Any]) -> tuple[dict[tuple, list[list[Tensor]]], tuple[int, ...], bool]:
        """(device, dtype) -> [params, grads, exp_avgs, exp_avg_sqs, steps] of the
        parameters with gradients; their ids; whether any had no state yet."""
        out: dict[tuple, list[list[Tensor]]] = {}
        ids: list[int] = []
        fresh = False
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("FusedRAdam does not support sparse gradients")
            state = self.state[p]
            if not state:
                fresh = True
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            elif state["step"].device != p.device:  # a checkpoint of the foreach RAdam (steps on the CPU)
                state["step"] = state["step"].to(p.device, torch.float32)
            ids.append(id(p))
            lists = out.setdefault((p.device, p.dtype), [[], [], [], [], []])
            for lst, t in zip(lists, (p, p.grad, state["exp_avg"], state["exp_avg_sq"], state["step"])):
                lst.append(t)
        return out, tuple(ids), fresh

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if getattr(self, "grad_scale", None) is not None:
            raise RuntimeError("FusedRAdam is for bf16/fp32 training without loss scaling (grad_scale must be None)")
        found_inf = getattr(self, "found_inf", None)  # set by the trainer for one step, as for fused Adam
        for index, group in enumerate(self.param_groups):
            buckets, ids, fresh = self._lists(group)
            if fresh or self._rectified.get(index) != ids:  # new or missing gradients: counts may differ
                self._rectified.pop(index, None)
            if index in self._rectified:  # the common case: no host sync
                for (device, _), lists in buckets.items():
                    self._rectified_step(group, *lists, found_inf.to(device) if found_inf is not None else None)
                continue
            if found_inf is not None and bool(found_inf.item()):
                continue  # skipped: nothing changes
            uniform = True
            for lists in buckets.values():
                counts = torch.stack(lists[4]).tolist()
                uniform &= len(set(counts)) == 1 and rho(counts[0] + 1.0, group["betas"][1]) > 5.0
                for count in sorted(set(counts)):  # one update per distinct step count (as torch, per parameter)
                    sub = [[t for t, c in zip(lst, counts) if c == count] for lst in lists]
                    if rho(count + 1.0, group["betas"][1]) <= 5.0:
                        self._unrectified_step(group, *sub, count + 1.0)
                    else:
                        self._rectified_step(group, *sub, None)
            if uniform and buckets:
                self._rectified[index] = ids
        return loss

    @staticmethod
    def _unrectified_step(group, params, grads, exp_avgs, exp_avg_sqs, steps, t: float) -> None:
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1.0)
        if group["weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1.0 - beta2)
        corrected = torch._foreach_div(exp_avgs, 1.0 - beta1**t)
        torch._foreach_mul_(corrected, group["lr"])
        torch._foreach_sub_(params, corrected)

    @staticmethod
    def _rectified_step(group, params, grads, exp_avgs, exp_avg_sqs, steps, inf: Tensor | None) -> None:
        beta1, beta2 = group["betas"]
        device = params[0].device
        t = steps[0].to(torch.float64) + 1.0  # (unused by the kernel when the step is skipped)
        rho_inf = 2.0 / (1.0 - beta2) - 1.0
        b2t = torch.pow(beta2, t)
        bc2 = 1.0 - b2t
        rho_t = rho_inf - 2.0 * t * b2t / bc2
        rect = torch.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
        lr = (group["lr"] * rect * torch.sqrt(bc2) / (1.0 - torch.pow(beta1, t))).to(torch.float32)
        no_correction = [_no_correction_step(device)] * len(params)
        torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], no_correction, lr=lr, beta1=beta1,
                           beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"], amsgrad=False,
                           maximize=False, grad_scale=None, found_inf=inf)
        torch._foreach_add_(steps, 1.0)
        if inf is not None:  # a skipped step leaves the counts as they were
            torch._foreach_sub_(steps, [inf] * len(steps))

