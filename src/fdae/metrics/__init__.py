"""Disentanglement metrics, array-level and dataset-level.

Array-level (codes: float (n, d); factors: integer (n, k); plain dicts back):
    dci, mig, sap, modularity_explicitness
Dataset-level (a dataset from `fdae.data` and `encode(images) -> (n, d)`, where images
are torch float (n, C, 64, 64) in [-1, 1]):
    factor_vae_score, beta_vae_score, evaluate (protocol "dlib" or "paper")

Samples are drawn exactly as google-research/disentanglement_lib draws them
(`fdae.metrics.sampling`), so for the same encoder and seed the numbers are the
reference's; the "paper" protocol (FDAE's per-group PCA) is a separate named choice.
"""

from fdae.metrics.beta_vae import beta_vae_score
from fdae.metrics.dci import dci
from fdae.metrics.factor_vae import factor_vae_score
from fdae.metrics.mig import mig
from fdae.metrics.modularity import modularity_explicitness
from fdae.metrics.protocol import evaluate
from fdae.metrics.sap import sap

__all__ = ["dci", "mig", "sap", "modularity_explicitness", "factor_vae_score", "beta_vae_score", "evaluate"]
