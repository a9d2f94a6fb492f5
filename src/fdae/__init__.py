"""fdae: unsupervised disentangled representation learning with diffusion models."""

import os as _os

# OpenMP threads that wait for work by spinning (libgomp spins 300,000 rounds by default)
# turn a busy CPU into a standstill: with 3 other busy processes on 2 cores, the demo's
# training step took 8.0 s with the default spinning and 0.92 s with a short spin, while an
# idle machine runs it equally fast both ways (BENCHMARKS.md, "CPU threads"). Set before
# torch loads its OpenMP runtime; a value the user exported wins.
_os.environ.setdefault("GOMP_SPINCOUNT", "10000")

__version__ = "0.1.0"
