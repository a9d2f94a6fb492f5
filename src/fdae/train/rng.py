"""Random number streams of a run, and their states as plain tensors.

A run draws from two kinds of streams:
  * per *shard* of the global batch, one `torch.Generator` for the data and one for the
    loss noise (sigma and epsilon), both on the training device. Shard k's generators
    are seeded from (seed, k), so the same global batch is drawn whether the shards
    live on k processes (DDP) or are accumulated in one (``train.grad_accum``);
  * the global RNGs (torch CPU -- dropout on CPU --, CUDA, numpy, python), seeded from
    (seed, rank).
States are stored as uint8/int64 tensors and ints, so checkpoints load with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

DATA, NOISE, GLOBAL = 0, 1, 2


def derive_seed(seed: int, index: int, stream: int) -> int:
    """A well-mixed 63-bit seed for stream `stream` of shard/rank `index`."""
    return int(np.random.SeedSequence([int(seed), int(index), int(stream)]).generate_state(2, np.uint64)[0] >> 1)


def make_generator(seed: int, shard: int, stream: int, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, shard, stream))
    return gen


def seed_global(seed: int, rank: int) -> None:
    s = derive_seed(seed, rank, GLOBAL)
    torch.manual_seed(s)  # also seeds every CUDA device
    np.random.seed(s % 2**32)
    random.seed(s)


def global_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and python RNG states as tensors and ints."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": int(py_state[0]),
            "internal": torch.tensor(py_state[1], dtype=torch.int64),
            "gauss_next": py_state[2],
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_global_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
