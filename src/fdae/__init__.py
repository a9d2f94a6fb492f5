"""fdae: unsupervised disentangled representation learning with diffusion models."""

import os as _os

# OpenMP threads that wait for work by spinning (libgomp spins 300,000 rounds by default)
# slow a busy CPU down: with 3 other busy processes on 2 cores, the demo's training step
# took 1.73 s with the default spin and 0.80 s with a short one, while an idle machine ran
# it equally fast both ways (0.168 / 0.163 s; BENCHMARKS.md, "CPU threads"). Set before
# torch loads its OpenMP runtime; a value the user exported wins.
_os.environ.setdefault("GOMP_SPINCOUNT", "10000")

__version__ = "0.1.0"
