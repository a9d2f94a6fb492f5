"""Ground-truth datasets at 32 / 16 px: box-filtered copies of the 64 px images."""

import numpy as np
import pytest
import torch

from fdae.data import get_dataset
from fdae.errors import FdaeError


def test_downsampled_images_are_block_means_of_the_full_images():
    full = get_dataset("dsprites-synth")
    small = get_dataset("dsprites-synth", image_size=32)
    assert (small.name, small.factor_sizes, small.image_size) == (full.name, full.factor_sizes, 32)
    factors = full.sample_factors(8, np.random.RandomState(0))
    big = full.images_uint8(factors).double()
    want = big.reshape(8, 1, 32, 2, 32, 2).mean(dim=(3, 5)).round().to(torch.uint8)
    assert torch.equal(small.images_uint8(factors), want)
    obs = small.sample_observations_from_factors(factors, np.random.RandomState(0))
    assert obs.shape == (8, 32, 32, 1)
    np.testing.assert_allclose(obs[..., 0], want[:, 0].numpy() / 255.0, atol=1e-7)


def test_downsampled_training_batch_matches_its_factors():
    small = get_dataset("shapes3d-synth", image_size=16)
    images, factors = small.sample_batch(5, torch.Generator().manual_seed(3))
    assert images.shape == (5, 3, 16, 16)
    torch.testing.assert_close(images, small.images(factors), atol=1e-6, rtol=0)
    assert small.factor_values()["scale"] == get_dataset("shapes3d-synth").factor_values()["scale"]


def test_a_resolution_that_does_not_divide_64_is_refused():
    with pytest.raises(FdaeError, match="may lower that to 32 or 16, got 48"):
        get_dataset("shapes3d-synth", image_size=48)
