"""The rows of FDAE's ablation table (supplementary Tables 1-2) as config overrides."""

from __future__ import annotations

from fdae.errors import FdaeError

ABLATIONS: dict[str, list[str]] = {
    # E + G: one code, no masks (degrades to a Diff-AE-style autoencoder).
    # One code is one group: the paper protocol's MIG (a gap between the two most
    # informative groups) is undefined, so its periodic evaluation leaves MIG out. Its
    # PCA keeps 36 // (2N) = 18 dimensions, the official formula (README, protocols).
    "eg": ["method.num_concepts=1", "method.use_masks=false",
           "method.content_decorrelation_weight=0", "method.mask_entropy_weight=0",
           "eval.metrics=[dci,factor_vae]"],
    # + CMFNet: N concepts with masks, neither loss.
    "cmfnet": ["method.content_decorrelation_weight=0", "method.mask_entropy_weight=0"],
    # + L_CD only.
    "cmfnet+cd": ["method.mask_entropy_weight=0"],
    # + L_ME only.
    "cmfnet+me": ["method.content_decorrelation_weight=0"],
    # the full model: both losses at their configured weights.
    "full": [],
}


def ablation_overrides(row: str) -> list[str]:
    if row not in ABLATIONS:
        raise FdaeError(f"unknown ablation {row!r}; choose one of {', '.join(ABLATIONS)}")
    return list(ABLATIONS[row])
