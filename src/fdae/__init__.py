"""fdae: unsupervised disentangled representation learning with diffusion models."""

import os as _os

# OpenMP threads that wait for work by spinning (libgomp's default) turn a busy CPU into
# a standstill: with 2 cores already loaded, the demo's training step took 8.0 s with
# spinning threads, 0.81 s with sleeping ones (BENCHMARKS.md, "CPU threads"). Set before
# torch loads its OpenMP runtime; a value the user exported wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
