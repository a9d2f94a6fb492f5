"""CPU threads that fit the machine as it is when a command starts.

Why: fdae's CPU workloads (the demo, tests, small presets) are many small tensor ops.
With spare cores, two OpenMP threads run them fastest; when other processes already
hold the cores, extra threads only queue behind them. Measured on 2 cores with the demo
preset's training step (BENCHMARKS.md, "CPU threads"): idle, 0.163 s with 2 threads and
0.245 s with 1; with 3 busy processes beside it, 0.80 s with 2 threads and 0.50 s with 1.
"""

from __future__ import annotations

import os


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def threads_for_load(cpus: int, load: float) -> int:
    """Threads to use when `load` runnable processes already share `cpus` cores: the
    cores left free, at least one."""
    return max(1, min(cpus, cpus - int(load + 0.5)))


def fit_threads_to_load(environ: dict[str, str] | None = None) -> str | None:
    """Lower torch's intra-op threads on a busy machine, unless the user chose a count
    (OMP_NUM_THREADS). Returns a one-line note when it lowered them, else None."""
    environ = os.environ if environ is None else environ
    if environ.get("OMP_NUM_THREADS") or not hasattr(os, "getloadavg"):
        return None
    import torch

    cpus, load = available_cpus(), os.getloadavg()[0]
    want = threads_for_load(cpus, load)
    if want >= torch.get_num_threads():
        return None
    torch.set_num_threads(want)
    return (f"the machine is busy (load {load:.1f} on {cpus} cores): using {want} CPU thread"
            f"{'s' if want > 1 else ''} (set OMP_NUM_THREADS to choose)")
