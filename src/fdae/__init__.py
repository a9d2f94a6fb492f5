"""fdae: unsupervised disentangled representation learning with diffusion models."""

__version__ = "0.1.0"
