"""Procedural datasets and the shared interface: indexing, sampling, images, determinism."""

import numpy as np
import pytest
import torch

from fdae.data import get_dataset, list_datasets
from fdae.data import dsprites_synth, shapes3d_synth
from fdae.data.cars3d import Cars3DFile
from fdae.data.dsprites import DSpritesFile
from fdae.data.mpi3d import VARIANTS, MPI3DFile
from fdae.data.shapes3d import Shapes3DFile
from fdae.data.smallnorb import SmallNORBFile
from fdae.errors import FdaeError

SYNTH = ["shapes3d-synth", "dsprites-synth", "mpi3d-synth", "cars3d-synth"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _bare(cls, **attrs):
    """A file dataset object with its published grid but no file (index arithmetic only)."""
    obj = object.__new__(cls)
    for k, v in attrs.items():
        setattr(obj, k, v)
    return obj


def every_dataset_grid():
    out = [get_dataset(n) for n in SYNTH]
    out += [_bare(c) for c in (Shapes3DFile, DSpritesFile, Cars3DFile, SmallNORBFile)]
    out += [_bare(MPI3DFile, name=n, factor_sizes=s) for n, (_, s) in VARIANTS.items()]
    return out


def test_names_cover_the_contract():
    assert set(list_datasets()) == {"shapes3d-synth", "dsprites-synth", "mpi3d-synth", "cars3d-synth", "shapes3d", "dsprites", "mpi3d-toy",
                                    "mpi3d-realistic", "mpi3d-real", "mpi3d-complex", "cars3d", "smallnorb"}
    with pytest.raises(FdaeError, match="unknown dataset"):
        get_dataset("shapes3")


@pytest.mark.parametrize("ds", every_dataset_grid(), ids=lambda d: d.name)
def test_index_factor_round_trip(ds):
    n = len(ds)
    assert n == int(np.prod(ds.factor_sizes))
    idx = np.unique(np.concatenate([[0, 1, n - 1], np.random.RandomState(1).randint(n, size=500)]))
    f = ds.factors_of(idx)
    assert f.shape == (len(idx), len(ds.factor_sizes)) and f.dtype == np.int64
    assert np.array_equal(ds.index_of(f), idx)
    assert ds.index_of(f[2]) == idx[2] and np.array_equal(ds.factors_of(int(idx[2])), f[2])
    # row-major, last factor fastest
    assert np.array_equal(ds.factors_of(1), [0] * (len(ds.factor_sizes) - 1) + [1])
    assert np.array_equal(ds.factors_of(n - 1), np.asarray(ds.factor_sizes) - 1)
    with pytest.raises(FdaeError):
        ds.index_of(np.asarray(ds.factor_sizes))


def test_sample_factors_matches_disentanglement_lib_order():
    ds = get_dataset("shapes3d-synth")
    got = ds.sample_factors(7, np.random.RandomState(0))
    rs = np.random.RandomState(0)
    expected = np.stack([rs.randint(s, size=7) for s in ds.factor_sizes], axis=1)
    assert got.dtype == np.int64 and np.array_equal(got, expected)
    assert np.array_equal(got[:5, 0], [5, 0, 3, 3, 7])  # RandomState(0).randint(10, size=5)


@pytest.mark.parametrize("name", SYNTH)
def test_images_range_shape_dtype_and_dlib_observations(name):
    ds = get_dataset(name)
    f = ds.sample_factors(9, np.random.RandomState(2))
    x = ds.images(f)
    assert x.shape == (9, ds.num_channels, 64, 64) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.min() < 0 < x.max()
    assert torch.equal(ds.images(torch.from_numpy(f)), x)
    obs = ds.sample_observations_from_factors(f, np.random.RandomState(0))
    assert obs.shape == (9, 64, 64, ds.num_channels) and obs.dtype == np.float32
    assert np.allclose(obs, (x.permute(0, 2, 3, 1).numpy() + 1) / 2, atol=1e-6)
    if name == "dsprites-synth":
        assert set(np.unique(obs)) <= {0.0, 1.0}


@pytest.mark.parametrize("name", SYNTH)
@pytest.mark.parametrize("device", DEVICES)
def test_sample_batch_is_seeded_and_on_device(name, device):
    ds = get_dataset(name)
    g1 = torch.Generator(device=device).manual_seed(5)
    g2 = torch.Generator(device=device).manual_seed(5)
    x1, f1 = ds.sample_batch(32, g1, device)
    x2, f2 = ds.sample_batch(32, g2, device)
    assert x1.device.type == device and f1.dtype == torch.int64 and f1.shape == (32, ds.num_factors)
    assert torch.equal(x1, x2) and torch.equal(f1, f2)
    assert (f1 >= 0).all() and (f1 < torch.tensor(ds.factor_sizes, device=device)).all()
    assert torch.equal(x1, ds.images(f1, device=device))
    x3, f3 = ds.sample_batch(32, g1, device)
    assert not torch.equal(f1, f3)


@pytest.mark.parametrize("name", SYNTH)
def test_render_is_deterministic_across_calls_and_devices(name):
    ds = get_dataset(name)
    f = ds.sample_factors(64, np.random.RandomState(3))
    ref = ds.images_uint8(f)
    assert torch.equal(ref, ds.images_uint8(f.copy()))
    for device in DEVICES[1:]:
        other = ds.images_uint8(f, device=device).cpu()
        assert (other.int() - ref.int()).abs().max() <= 1


def test_shapes3d_each_factor_changes_only_its_part():
    ds = get_dataset("shapes3d-synth")
    geom = shapes3d_synth.geometry_on(torch.device("cpu"))
    base = np.array([1, 4, 7, 3, 2, 7])
    g = (base[3] * 4 + base[4]) * 15 + base[5]
    for k in range(3):  # floor, wall, object hue touch only their material's pixels
        other = base.copy()
        other[k] = 9
        a, b = ds.images_uint8(np.stack([base, other]))
        changed = (a != b).any(0).reshape(-1)
        assert changed.any()
        assert torch.all(geom[g, k][changed] > 0)
    imgs = ds.images_uint8(np.array([[1, 4, 7, s, 2, 7] for s in range(8)]))
    object_px = [(geom[(s * 4 + 2) * 15 + 7, 2] > 0.5).sum().item() for s in range(8)]
    assert object_px == sorted(object_px) and object_px[-1] > 1.5 * object_px[0]  # scale grows the object
    assert all(not torch.equal(imgs[i], imgs[i + 1]) for i in range(7))
    # the room is there: floor at the bottom, walls at the top
    w = geom[g].reshape(4, 64, 64)
    assert w[0, -1].min() > 0 and w[1, 12].max() > 0


def test_shapes3d_shadow_darkens_the_floor():
    geom = shapes3d_synth.geometry_on(torch.device("cpu"))
    floor = geom[:, 0].reshape(-1, 64, 64)
    lit = shapes3d_synth.AMBIENT + shapes3d_synth.DIFFUSE * shapes3d_synth._light()[1].item()
    shadowed = (floor > 0.05) & (floor < lit - 0.1)
    assert shadowed.flatten(1).any(1).all()  # every view shows the object's shadow


def test_dsprites_sprites_never_leave_the_frame():
    ds = get_dataset("dsprites-synth")
    f = np.array([[s, 5, o, x, y] for s in range(3) for o in range(40) for x in (0, 31) for y in (0, 31)])
    img = ds.images_uint8(f)[:, 0]
    border = torch.cat([img[:, 0], img[:, -1], img[:, :, 0], img[:, :, -1]], 1)
    assert border.max() == 0
    assert (img.flatten(1).max(1).values == 255).all()
    stamps = dsprites_synth.build_stamps()
    assert set(torch.unique(stamps).tolist()) == {0, 255}  # binary, no anti-aliasing


def test_dsprites_position_is_a_pure_shift():
    ds = get_dataset("dsprites-synth")
    a, b = ds.images_uint8(np.array([[2, 3, 7, 10, 12], [2, 3, 7, 13, 17]]))[:, 0]
    assert torch.equal(torch.roll(a, shifts=(5, 3), dims=(0, 1)), b)


def test_bad_factor_input_is_a_user_error():
    ds = get_dataset("dsprites-synth")
    with pytest.raises(FdaeError, match="5 columns"):
        ds.images(np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(FdaeError, match="out of range"):
        ds.images(np.array([[3, 0, 0, 0, 0]]))
