"""Readers of the real files, on small files written here in the published layouts."""

import gzip
from pathlib import Path
import struct
import zipfile

import h5py
import numpy as np
import pytest
import torch
from numpy.lib import format as npy_format
from PIL import Image
from scipy.io import savemat

from fdae.data import get_dataset
from fdae.data.cars3d import Cars3DFile
from fdae.data.dsprites import FILE as DSPRITES_FILE
from fdae.data.dsprites import DSpritesFile
from fdae.data.export import export
from fdae.data.mpi3d import MPI3DFile
from fdae.data.shapes3d import Shapes3DFile
from fdae.data.smallnorb import MAGIC_INT32, MAGIC_UINT8, SPLITS, SmallNORBFile
from fdae.errors import FdaeError

S3_SMALL = (2, 2, 2, 2, 4, 3)
DS_SMALL = (3, 2, 3, 4, 4)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FDAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FDAE_DATA_ROOT", raising=False)


# ---------------------------------------------------------------- missing files
@pytest.mark.parametrize("name,expected", [("shapes3d", "3dshapes.h5"), ("dsprites", DSPRITES_FILE),
                                           ("mpi3d-toy", "mpi3d_toy.npz"), ("mpi3d-complex", "real3d_complicated"),
                                           ("cars3d", "cars"), ("smallnorb", "smallnorb-5x46789")])
def test_missing_file_names_file_root_and_source(tmp_path, name, expected):
    with pytest.raises(FdaeError) as err:
        get_dataset(name, root=tmp_path)
    msg = str(err.value)
    assert expected in msg and str(tmp_path) in msg and "http" in msg and name in msg


def test_no_root_says_how_to_give_one(monkeypatch, tmp_path):
    with pytest.raises(FdaeError, match="--data-root"):
        get_dataset("shapes3d")
    export("shapes3d-synth", tmp_path / "3dshapes.h5", limit_sizes=S3_SMALL, progress=False)
    monkeypatch.setenv("FDAE_DATA_ROOT", str(tmp_path))
    ds = get_dataset("shapes3d", factor_sizes=S3_SMALL)  # root from the environment
    assert ds.path == tmp_path / "3dshapes.h5"


# ---------------------------------------------------------------- 3D Shapes
def test_shapes3d_export_reads_back_identically(tmp_path):
    path = export("shapes3d-synth", tmp_path / "3dshapes.h5", limit_sizes=S3_SMALL, progress=False)
    with h5py.File(path) as h5:
        assert h5["images"].shape == (192, 64, 64, 3) and h5["images"].dtype == np.uint8
        assert h5["labels"].shape == (192, 6) and h5["labels"].dtype == np.float64
        assert np.allclose(h5["labels"][-1], [0.1, 0.1, 0.1, 0.75 + 0.5 / 7, 3.0, -30 + 2 * 60 / 14])
    real = Shapes3DFile(tmp_path, factor_sizes=S3_SMALL)
    synth = get_dataset("shapes3d-synth")
    f = real.factors_of(np.arange(len(real)))
    assert torch.equal(real.images(f), synth.images(f))
    rs = np.random.RandomState(0)
    f2 = real.sample_factors(50, rs)  # duplicates and any order
    assert torch.equal(real.images(f2), synth.images(f2))
    assert np.array_equal(real.sample_observations_from_factors(f2, rs),
                          synth.sample_observations_from_factors(f2, rs))
    x, fb = real.sample_batch(16, torch.Generator().manual_seed(0), "cpu")
    assert x.shape == (16, 3, 64, 64) and x.dtype == torch.float32 and torch.equal(x, synth.images(fb))


def _h5(path, images, labels=True):
    with h5py.File(path, "w") as h5:
        h5["images"] = images
        if labels:
            h5["labels"] = np.zeros((len(images), 6))


def test_shapes3d_bad_files(tmp_path):
    p = tmp_path / "3dshapes.h5"
    _h5(p, np.zeros((192, 64, 64, 3), np.uint8))
    with pytest.raises(FdaeError, match="192 rows, expected 480,000"):
        get_dataset("shapes3d", root=tmp_path)
    _h5(p, np.zeros((192, 64, 64, 3), np.uint8), labels=False)
    with pytest.raises(FdaeError, match="'labels'"):
        Shapes3DFile(tmp_path, factor_sizes=S3_SMALL)
    _h5(p, np.zeros((192, 64, 64, 3), np.float32))
    with pytest.raises(FdaeError, match="uint8"):
        Shapes3DFile(tmp_path, factor_sizes=S3_SMALL)
    _h5(p, np.zeros((192, 32, 32, 3), np.uint8))
    with pytest.raises(FdaeError, match="64x64x3"):
        Shapes3DFile(tmp_path, factor_sizes=S3_SMALL)
    p.write_bytes(b"not hdf5")
    with pytest.raises(FdaeError, match="HDF5"):
        Shapes3DFile(tmp_path)


# ---------------------------------------------------------------- dSprites
def test_dsprites_export_reads_back_identically(tmp_path):
    path = export("dsprites-synth", tmp_path / DSPRITES_FILE, limit_sizes=DS_SMALL, progress=False)
    data = np.load(path, allow_pickle=True, encoding="latin1")
    assert data["imgs"].shape == (288, 64, 64) and set(np.unique(data["imgs"])) <= {0, 1}
    assert data["latents_classes"].shape == (288, 6) and np.all(data["latents_classes"][:, 0] == 0)
    assert np.array_equal(data["latents_classes"][-1], [0, 2, 1, 2, 3, 3])
    real = get_dataset("dsprites", root=tmp_path, factor_sizes=DS_SMALL)
    synth = get_dataset("dsprites-synth")
    f = real.factors_of(np.arange(len(real)))
    assert torch.equal(real.images(f), synth.images(f))
    assert np.array_equal(real.images_uint8(f)[:, 0].numpy() // 255, data["imgs"])


def _npz(path, compressed=False, **arrays):
    (np.savez_compressed if compressed else np.savez)(path, **arrays)


def test_dsprites_bad_files(tmp_path):
    p = tmp_path / DSPRITES_FILE
    _npz(p, imgs=np.zeros((288, 64, 64), np.uint8))
    with pytest.raises(FdaeError, match="288 images, expected 737,280"):
        get_dataset("dsprites", root=tmp_path)
    _npz(p, images=np.zeros((288, 64, 64), np.uint8))
    with pytest.raises(FdaeError, match="'imgs'"):
        DSpritesFile(tmp_path, factor_sizes=DS_SMALL)
    _npz(p, imgs=np.zeros((288, 64, 64), np.float32))
    with pytest.raises(FdaeError, match="uint8"):
        DSpritesFile(tmp_path, factor_sizes=DS_SMALL)
    _npz(p, imgs=np.full((288, 64, 64), 7, np.uint8))
    with pytest.raises(FdaeError, match="0/1"):
        DSpritesFile(tmp_path, factor_sizes=DS_SMALL).images(np.zeros((1, 5), np.int64))
    p.write_bytes(b"garbage")
    with pytest.raises(FdaeError, match="npz"):
        DSpritesFile(tmp_path)


# ---------------------------------------------------------------- MPI3D
MPI_SMALL = (2, 2, 1, 1, 2, 3, 3)


@pytest.mark.parametrize("compressed", [False, True])
def test_mpi3d_reads_rows_in_order(tmp_path, compressed):
    n = int(np.prod(MPI_SMALL))
    imgs = np.random.RandomState(0).randint(0, 256, size=(n, 64, 64, 3)).astype(np.uint8)
    _npz(tmp_path / "mpi3d_real.npz", compressed, images=imgs)
    ds = get_dataset("mpi3d-real", root=tmp_path, factor_sizes=MPI_SMALL)
    if not compressed:
        assert isinstance(ds._decode(), np.memmap)  # memory-mapped in place, not loaded
    idx = np.array([5, 0, 71, 5, 33])
    x = ds.images(ds.factors_of(idx))
    assert torch.equal(x, torch.from_numpy(imgs[idx]).permute(0, 3, 1, 2).float() * (2 / 255) - 1)
    obs = ds.sample_observations_from_factors(ds.factors_of(idx), np.random.RandomState(0))
    assert np.array_equal(obs, imgs[idx].astype(np.float32) / np.float32(255))


def _npy_header_only(path, key, shape):
    """An npz whose member has a header claiming `shape` (no data: header checks only)."""
    with zipfile.ZipFile(path, "w") as zf, zf.open(key + ".npy", "w") as fp:
        npy_format.write_array_header_1_0(fp, {"descr": "|u1", "fortran_order": False, "shape": shape})


def test_mpi3d_grid_chosen_by_count_and_checked(tmp_path):
    _npy_header_only(tmp_path / "mpi3d_toy.npz", "images", (460800, 64, 64, 3))
    with pytest.raises(FdaeError, match="mpi3d-complex"):
        get_dataset("mpi3d-toy", root=tmp_path)
    _npy_header_only(tmp_path / "real3d_complicated_shapes_ordered.npz", "images", (460800, 64, 64, 3))
    ds = get_dataset("mpi3d-complex", root=tmp_path)
    assert ds.factor_sizes == (4, 4, 2, 3, 3, 40, 40) and "complex" in ds.name
    _npy_header_only(tmp_path / "mpi3d_realistic.npz", "images", (1036800, 64, 64, 3))
    assert get_dataset("mpi3d-realistic", root=tmp_path).factor_sizes == (6, 6, 2, 3, 3, 40, 40)
    _npy_header_only(tmp_path / "mpi3d_real.npz", "images", (1000, 64, 64, 3))
    with pytest.raises(FdaeError, match="1,000 images"):
        get_dataset("mpi3d-real", root=tmp_path)
    _npy_header_only(tmp_path / "mpi3d_real.npz", "imgs", (1036800, 64, 64, 3))
    with pytest.raises(FdaeError, match="'images'"):
        get_dataset("mpi3d-real", root=tmp_path)
    _npy_header_only(tmp_path / "mpi3d_real.npz", "images", (1036800, 64, 64))
    with pytest.raises(FdaeError, match="64x64x3"):
        get_dataset("mpi3d-real", root=tmp_path)


# ---------------------------------------------------------------- Cars3D
CARS_SMALL = (2, 3, 2)  # elevation, azimuth, object


def _view_colour(e, a, o):
    return np.array([40 + 60 * e, 20 + 50 * a, 30 + 90 * o], np.uint8)


def _write_cars(folder, n_obj=2, shape=None):
    folder.mkdir(exist_ok=True)
    for o in range(n_obj):
        im = np.zeros(shape or (128, 128, 3, 3, 2), np.uint8)
        for e in range(im.shape[4]):
            for a in range(im.shape[3]):
                im[..., a, e] = _view_colour(e, a, o)
        im[:64, :, :, 0, 0] = 255  # a sharp edge, to compare with PIL's thumbnail
        savemat(folder / f"car_{o:03d}_mesh.mat", {"im": im})


def test_cars3d_order_and_resize(tmp_path):
    _write_cars(tmp_path / "cars")
    ds = get_dataset("cars3d", root=tmp_path, factor_sizes=CARS_SMALL)
    f = ds.factors_of(np.arange(len(ds)))
    u8 = ds.images_uint8(f).permute(0, 2, 3, 1).numpy()
    for (e, a, o), img in zip(f, u8):
        if (e, a) == (0, 0):
            full = np.zeros((128, 128, 3), np.uint8) + _view_colour(e, a, o)
            full[:64] = 255
            pic = Image.fromarray(full)
            pic.thumbnail((64, 64), Image.LANCZOS)
            assert np.array_equal(img, np.asarray(pic))
        else:
            assert np.all(img == _view_colour(e, a, o))
    assert len(list((tmp_path / "cache").glob("cars3d-*.npy"))) == 1  # decoded once, cached
    again = Cars3DFile(tmp_path, factor_sizes=CARS_SMALL)
    assert torch.equal(again.images(f), ds.images(f))


def test_cars3d_bad_files(tmp_path):
    _write_cars(tmp_path / "cars", n_obj=1)
    with pytest.raises(FdaeError, match="found 1 .mat files, expected 183"):
        get_dataset("cars3d", root=tmp_path)
    _write_cars(tmp_path / "cars", n_obj=2, shape=(128, 128, 3, 4, 2))
    with pytest.raises(FdaeError, match=r"\(128, 128, 3, 3, 2\)"):
        Cars3DFile(tmp_path, factor_sizes=CARS_SMALL).images(np.zeros((1, 3), np.int64))
    savemat(tmp_path / "cars" / "car_001_mesh.mat", {"img": np.zeros(3)})
    with pytest.raises(FdaeError, match="'im'"):
        Cars3DFile(tmp_path, factor_sizes=CARS_SMALL).images(np.zeros((1, 3), np.int64))


# ---------------------------------------------------------------- SmallNORB
NORB_SMALL = (2, 2, 2, 2)  # category, elevation, azimuth, lighting; 2 instances


def _norb_matrix(path, magic, array, gz=False):
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    payload = struct.pack("<ii", magic, array.ndim) + struct.pack(f"<{len(dims)}i", *dims) + array.tobytes()
    with (gzip.open if gz else open)(path, "wb") as fp:
        fp.write(payload)


def _norb_value(c, i, e, a, l):
    return 10 + 16 * c + 8 * i + 4 * e + 2 * a + l  # distinct grey level per image


def _write_norb(folder, gz_dat=False):
    folder.mkdir(exist_ok=True)
    for split, inst in zip(SPLITS, (1, 0)):  # instance 1 in training, 0 in testing
        rows = [(c, inst, e, a, l) for c in range(2) for e in range(2) for a in range(2) for l in range(2)]
        rows = rows[::-1]  # files are not in factor order; the reader must not assume it
        dat = np.stack([np.full((2, 96, 96), _norb_value(*r), np.uint8) for r in rows])
        cat = np.array([r[0] for r in rows], np.int32)
        info = np.array([[r[1], r[2], 2 * r[3], r[4]] for r in rows], np.int32)
        suffix = ".mat.gz" if gz_dat else ".mat"
        _norb_matrix(folder / f"{split}-dat{suffix}", MAGIC_UINT8, dat, gz=gz_dat)
        _norb_matrix(folder / f"{split}-cat.mat", MAGIC_INT32, cat)
        _norb_matrix(folder / f"{split}-info.mat", MAGIC_INT32, info)


@pytest.mark.parametrize("gz", [False, True])
def test_smallnorb_layout_and_nuisance_instance(tmp_path, gz):
    _write_norb(tmp_path / "smallnorb", gz_dat=gz)
    ds = get_dataset("smallnorb", root=tmp_path, factor_sizes=NORB_SMALL, num_instances=2)
    f = ds.factors_of(np.arange(len(ds)))
    u8 = ds.images_uint8(f)[:, 0, 32, 32].numpy()
    inst = np.arange(len(ds)) % 2
    assert np.array_equal(u8, [_norb_value(c, i, e, a, l) for (c, e, a, l), i in zip(f, inst)])
    rs = np.random.RandomState(4)
    obs = ds.sample_observations_from_factors(f, rs)
    drawn = np.random.RandomState(4).randint(2, size=len(f))  # as disentanglement_lib draws it
    want = [_norb_value(c, i, e, a, l) / 255 for (c, e, a, l), i in zip(f, drawn)]
    assert obs.shape == (len(f), 64, 64, 1) and np.allclose(obs[:, 5, 5, 0], want)
    x, fb = ds.sample_batch(8, torch.Generator().manual_seed(0), "cpu")
    assert x.shape == (8, 1, 64, 64) and fb.shape == (8, 4)


def test_smallnorb_bad_files(tmp_path):
    folder = tmp_path / "smallnorb"
    _write_norb(folder)
    with pytest.raises(FdaeError, match="expected 48,600"):
        get_dataset("smallnorb", root=tmp_path)
    bad = folder / f"{SPLITS[0]}-cat.mat"
    bad.write_bytes(struct.pack("<ii", 0x1234, 1) + b"\0" * 12)
    with pytest.raises(FdaeError, match="magic"):
        SmallNORBFile(tmp_path, factor_sizes=NORB_SMALL, num_instances=2)
    _write_norb(folder)
    _norb_matrix(bad, MAGIC_INT32, np.zeros(3, np.int32))
    with pytest.raises(FdaeError, match="one row per image"):
        SmallNORBFile(tmp_path, factor_sizes=NORB_SMALL, num_instances=2)
    _write_norb(folder)
    (folder / f"{SPLITS[1]}-info.mat").unlink()
    with pytest.raises(FdaeError, match="testing-info.mat"):
        SmallNORBFile(tmp_path, factor_sizes=NORB_SMALL, num_instances=2)


def test_cached_npy_rebuilds_a_truncated_cache_and_writes_atomically(tmp_path):
    from fdae.data.files import cached_npy

    cache = tmp_path / "decoded.npy"
    calls = []

    def build():
        calls.append(1)
        return np.arange(12, dtype=np.uint8).reshape(3, 4)

    first = cached_npy(cache, build)
    assert cached_npy(cache, build).tolist() == first.tolist() and len(calls) == 1  # reused
    assert not list(tmp_path.glob("*.partial*"))
    cache.write_bytes(cache.read_bytes()[:40])  # as if a write had been cut off
    assert cached_npy(cache, build).tolist() == first.tolist() and len(calls) == 2  # rebuilt


def _decode_member_via_cache(args):
    path, cache = args
    from fdae.data import npz

    return np.asarray(npz.load_or_cache(Path(path), "images", "mpi3d-toy", Path(cache), in_ram_limit=0)).sum()


def test_compressed_member_cache_is_built_once_by_concurrent_processes(tmp_path):
    """DDP ranks open the same compressed file at once: one decodes (under a lock, into a
    temporary file renamed into place), the others wait; all read the full array."""
    import multiprocessing as mp

    imgs = np.random.RandomState(1).randint(0, 256, size=(20000, 8, 8, 3)).astype(np.uint8)
    np.savez_compressed(tmp_path / "m.npz", images=imgs)
    cache = tmp_path / "cache" / "m.images.npy"
    cache.parent.mkdir()
    with mp.get_context("spawn").Pool(3) as pool:
        sums = pool.map(_decode_member_via_cache, [(str(tmp_path / "m.npz"), str(cache))] * 3)
    assert sums == [int(imgs.sum())] * 3
    assert not list(cache.parent.glob("*.partial*"))
    from fdae.data import npz

    assert np.array_equal(npz.load_or_cache(tmp_path / "m.npz", "images", "t", cache, 0), imgs)


def test_npz_fortran_order_and_corrupt_members_are_refused(tmp_path):
    from fdae.data import npz

    imgs = np.random.RandomState(0).randint(0, 256, size=(50, 8, 8, 3)).astype(np.uint8)
    np.savez(tmp_path / "f.npz", images=np.asfortranarray(imgs))
    with pytest.raises(FdaeError, match="Fortran"):
        npz.load_or_cache(tmp_path / "f.npz", "images", "t", tmp_path / "f.npy", 1 << 30)
    np.savez_compressed(tmp_path / "c.npz", images=np.random.RandomState(0).randint(0, 256, size=(400, 64, 64, 3)).astype(np.uint8))
    raw = bytearray((tmp_path / "c.npz").read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 2048] = bytes(2048)
    (tmp_path / "c.npz").write_bytes(bytes(raw))
    with pytest.raises(FdaeError, match="corrupt|truncated"):
        npz.load_or_cache(tmp_path / "c.npz", "images", "t", tmp_path / "c.npy", 1 << 30)
