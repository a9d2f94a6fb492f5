"""The MPI3D and Cars3D look-alikes: grids, what each factor changes, determinism,
device agreement, and export + the real readers' round trip."""

import numpy as np
import pytest
import torch

from fdae.data import get_dataset, list_datasets
from fdae.data import cars3d_synth, mpi3d_synth
from fdae.data.export import export
from fdae.data.lazy_table import LazyTable


@pytest.fixture(scope="module")
def mpi():
    return get_dataset("mpi3d-synth")


@pytest.fixture(scope="module")
def cars():
    return get_dataset("cars3d-synth")


def vary(ds, base, k, values):
    f = np.tile(np.asarray(base, dtype=np.int64), (len(values), 1))
    f[:, k] = values
    return ds.images_uint8(f).to(torch.int32)


def test_grids_match_the_real_files(mpi, cars):
    assert mpi.factor_sizes == (6, 6, 2, 3, 3, 40, 40) and len(mpi) == 1_036_800
    assert mpi.factor_names == ("object_color", "object_shape", "object_size", "camera_height",
                                "background_color", "horizontal_axis", "vertical_axis")
    assert cars.factor_sizes == (4, 24, 183) and len(cars) == 17_568
    assert cars.factor_names == ("elevation", "azimuth", "object")
    assert {"mpi3d-synth", "cars3d-synth"} <= set(list_datasets())
    assert mpi.images_uint8(np.zeros((1, 7), np.int64)).shape == (1, 3, 64, 64)
    assert mpi.index_of([1, 2, 1, 0, 2, 5, 7]) == (((((1 * 6 + 2) * 2 + 1) * 3 + 0) * 3 + 2) * 40 + 5) * 40 + 7


def object_pixels(base, ds):
    """Pixels the object covers: where changing only the object's colour changes the image."""
    imgs = vary(ds, base, 0, [0, 3])  # white vs blue object
    return (imgs[0] - imgs[1]).abs().sum(0) > 0


def test_mpi3d_each_factor_changes_what_it_should(mpi):
    base = [2, 1, 1, 1, 0, 20, 20]
    obj = object_pixels(base, mpi)
    assert 20 < int(obj.sum()) < 250  # a small object, as in MPI3D
    rows, cols = obj.nonzero(as_tuple=True)
    # colour and shape change only the object's window
    for k, values in ((0, [0, 5]), (1, [1, 5]), (2, [0, 1])):
        d = (vary(mpi, base, k, values)[0] - vary(mpi, base, k, values)[1]).abs().sum(0) > 0
        assert d.any()
        r, c = d.nonzero(as_tuple=True)
        assert r.min() >= rows.min() - 10 and r.max() <= rows.max() + 10
        assert c.min() >= cols.min() - 10 and c.max() <= cols.max() + 10
    # background colour changes the stage, not the object
    d = (vary(mpi, base, 4, [0, 2])[0] - vary(mpi, base, 4, [0, 2])[1]).abs().sum(0) > 0
    assert d.float().mean() > 0.4 and not (d & obj & (vary(mpi, base, 4, [0])[0].sum(0) > 0)).all()
    full = mpi_object_coverage(base)
    assert not (d & full).any()
    # camera height changes the whole view
    d = (vary(mpi, base, 3, [0, 2])[0] - vary(mpi, base, 3, [0, 2])[1]).abs().sum(0) > 0
    assert d.float().mean() > 0.3
    # the joints move the object: right with horizontal_axis, up with vertical_axis
    centres = []
    for k, values in ((5, [5, 35]), (6, [5, 35])):
        for v in values:
            b = list(base)
            b[k] = v
            r, c = object_pixels(b, mpi).nonzero(as_tuple=True)
            centres.append((r.float().mean().item(), c.float().mean().item()))
    (r_left, c_left), (r_right, c_right), (r_low, c_low), (r_high, c_high) = centres
    assert c_right - c_left > 15
    assert r_low - r_high > 10


def mpi_object_coverage(base):
    """Pixels the object covers fully (coverage 255 in its window)."""
    r = mpi3d_synth.renderer()
    cam, h, v = base[3], base[5], base[6]
    view = (cam * 40 + h) * 40 + v
    row = r.obj.rows(torch.tensor([(base[1] * 2 + base[2]) * 4800 + view]))[0, 0].reshape(mpi3d_synth.WINDOW, mpi3d_synth.WINDOW)
    top, left = r.window_origin[base[2], view].tolist()
    full = torch.zeros(64, 64, dtype=torch.bool)
    full[top : top + mpi3d_synth.WINDOW, left : left + mpi3d_synth.WINDOW] = row == 255
    return full


def test_mpi3d_objects_fit_their_windows():
    """Every object's bounding sphere, projected, lies inside its window (unless the
    window sits on the frame's edge, where the frame cuts the object as a camera would)."""
    r = mpi3d_synth.renderer()
    h, v = (g.reshape(-1) for g in torch.meshgrid(torch.arange(40), torch.arange(40), indexing="ij"))
    pose = mpi3d_synth.arm_pose(h, v)
    f = mpi3d_synth._focal_px()
    for size, half in enumerate(mpi3d_synth.HALF_SIZES):
        centre = mpi3d_synth.object_centre(pose, torch.full_like(h, size))
        for cam in range(3):
            px = mpi3d_synth.project(cam, centre)
            reach = 1.15 * mpi3d_synth.BOUND * half * f / mpi3d_synth._depth(cam, centre)
            origin = r.window_origin[size, cam * 1600 : (cam + 1) * 1600].double()
            lo, hi = px - reach[:, None] - origin, px + reach[:, None] - origin
            inner = (origin > 0) & (origin < 64 - mpi3d_synth.WINDOW)
            assert ((lo >= 0) | ~inner).all() and ((hi <= mpi3d_synth.WINDOW) | ~inner).all()


def test_every_object_lies_inside_its_bounding_sphere():
    """The ray-cast cull is exact only if BOUND holds every shape: cast rays from all
    around and check no hit lies outside BOUND half sizes."""
    g = torch.Generator().manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn(20000, 3, generator=g, dtype=torch.float64), dim=-1)
    o = -4 * d + 0.9 * torch.randn(20000, 3, generator=g, dtype=torch.float64)
    half = torch.ones(20000, dtype=torch.float64)
    for s, name in enumerate(mpi3d_synth.SHAPE_NAMES):
        t, _ = mpi3d_synth.object_hit(s, o, d, half)
        hit = torch.isfinite(t)
        assert hit.sum() > 1000, name
        p = o[hit] + t[hit, None] * d[hit]
        assert p.norm(dim=-1).max() <= mpi3d_synth.BOUND, name


def test_cars3d_each_factor_changes_the_view(cars):
    base = [1, 3, 10]
    for k, values in ((0, [0, 3]), (1, [0, 6]), (2, [10, 11])):
        imgs = vary(cars, base, k, values)
        assert (imgs[0] - imgs[1]).abs().float().mean() > 5, cars.factor_names[k]
    img = vary(cars, base, 2, [10])[0]
    assert (img[:, :3, :3] == 255).all()  # white background, as Cars3D
    assert (img.sum(0) < 700).float().mean() > 0.1  # the car fills a good part of the frame


def test_cars3d_cars_are_distinct(cars):
    f = np.stack([np.full(183, 1), np.full(183, 4), np.arange(183)], 1)
    imgs = cars.images_uint8(f).reshape(183, -1).to(torch.float32)
    dist = torch.cdist(imgs, imgs) / imgs.shape[1] ** 0.5
    dist.fill_diagonal_(float("inf"))
    assert dist.min() > 3.0  # no two cars look the same from the same view
    families = cars.factor_values()["object"]
    assert set(families) == set(cars3d_synth.FAMILIES)


def test_rows_are_the_same_bits_whatever_batch_renders_them(tmp_path, monkeypatch):
    """Rows are ray cast in whatever batch first meets them: one at a time and all
    together must give identical bits (fresh tables, no cache)."""
    monkeypatch.setenv("FDAE_CACHE_DIR", str(tmp_path))
    ids_arm = np.array([5, 1700, 4799, 2222])
    ids_obj = np.array([7, 9700, 33333, 57599, 20000])
    ids_car = np.array([0, 183 * 24 + 5, 17567])
    fresh = mpi3d_synth._Renderer()
    for render, ids in ((fresh._arm_rows, ids_arm), (fresh._object_rows, ids_obj), (cars3d_synth._shrink_rows, ids_car)):
        together = render(ids)
        alone = torch.cat([render(ids[i : i + 1]) for i in range(len(ids))])
        assert torch.equal(together, alone)


@pytest.mark.parametrize("name", ["mpi3d-synth", "cars3d-synth"])
def test_same_images_whatever_the_order(name):
    ds = get_dataset(name)
    f = ds.sample_factors(12, np.random.RandomState(5))
    once = ds.images_uint8(f)
    again = torch.cat([ds.images_uint8(f[i : i + 1]) for i in reversed(range(12))]).flip(0)
    assert torch.equal(once, again)


def test_sample_batch_is_the_images_of_its_factors(mpi, cars):
    for ds in (mpi, cars):
        images, factors = ds.sample_batch(8, torch.Generator().manual_seed(1), "cpu")
        assert images.dtype == torch.float32 and images.min() >= -1 and images.max() <= 1
        assert torch.equal(images, ds.images(factors.numpy()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("name", ["mpi3d-synth", "cars3d-synth"])
def test_cpu_and_gpu_images_agree(name):
    ds = get_dataset(name)
    f = ds.sample_factors(64, np.random.RandomState(2))
    cpu = ds.images_uint8(f, device="cpu").to(torch.int32)
    gpu = ds.images_uint8(torch.from_numpy(f).cuda()).cpu().to(torch.int32)
    assert (cpu - gpu).abs().max() <= 1


def test_mpi3d_export_reads_back_with_the_real_reader(tmp_path, mpi):
    sizes = (2, 2, 2, 1, 2, 2, 3)
    path = export("mpi3d-synth", tmp_path / "mpi3d_toy.npz", limit_sizes=sizes, batch=7, progress=False)
    real = get_dataset("mpi3d-toy", path=path, factor_sizes=sizes)
    f = real.sample_factors(20, np.random.RandomState(0))
    assert torch.equal(real.images_uint8(f), mpi.images_uint8(f))
    # row-major order: the last row is the last factor combination
    last = np.asarray(sizes) - 1
    assert torch.equal(real.images_uint8(last[None]), mpi.images_uint8(last[None]))


def test_cars3d_export_reads_back_with_the_real_reader(tmp_path, cars, monkeypatch):
    monkeypatch.setenv("FDAE_CACHE_DIR", str(tmp_path / "cache"))
    sizes = (2, 3, 2)
    out = export("cars3d-synth", tmp_path / "cars", limit_sizes=sizes, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["car_001_mesh.mat", "car_002_mesh.mat"]
    real = get_dataset("cars3d", path=out, factor_sizes=sizes)
    f = np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), -1).reshape(-1, 3)
    assert torch.equal(real.images_uint8(f), cars.images_uint8(f))


@pytest.mark.parametrize("name, concepts", [("mpi3d-synth", 6), ("cars3d-synth", 2)])
def test_train_on_a_look_alike_from_the_command_line(tmp_path, name, concepts):
    """`fdae train ... data.name=mpi3d-synth` as a user runs it, with the paper's N."""
    from fdae.cli import main
    from fdae.train.checkpoint import load_run

    run = tmp_path / "run"
    assert main(["train", "--config", "shapes3d-demo", f"data.name={name}", f"method.num_concepts={concepts}",
                 "train.steps=2", "train.batch_size=4", "train.ckpt_every=2", "train.log_every=1",
                 "--run-dir", str(run), "--no-progress"]) == 0
    loaded = load_run(run)
    assert loaded.cfg.data.name == name and loaded.cfg.method.num_concepts == concepts and loaded.step == 2


def test_lazy_table_renders_each_row_once_and_reuses_a_complete_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FDAE_CACHE_DIR", str(tmp_path))
    source = tmp_path / "renderer.py"
    source.write_text("version 1")
    calls = []

    def render(ids):
        calls.append(list(ids))
        return torch.from_numpy(np.stack([np.full((2, 3), i, np.uint8) for i in ids]))

    table = LazyTable(5, (2, 3), render, chunk=2, cache_name="t", sources=(str(source),))
    assert table.rows(torch.tensor([3, 1, 3]))[:, 0, 0].tolist() == [3, 1, 3]
    assert calls == [[1, 3]] and not list(tmp_path.glob("t-*.npy"))
    table.rows(torch.tensor([[0, 2], [4, 1]]))
    assert sorted(sum(calls, [])) == [0, 1, 2, 3, 4]  # each row once
    assert len(list(tmp_path.glob("t-*.npy"))) == 1  # complete: saved

    def no_render(ids):
        raise AssertionError("a complete cache should need no rendering")

    again = LazyTable(5, (2, 3), no_render, cache_name="t", sources=(str(source),))
    assert again.rows(torch.arange(5))[:, 1, 2].tolist() == [0, 1, 2, 3, 4]
    source.write_text("version 2")  # a changed renderer never reads the old table
    fresh = LazyTable(5, (2, 3), render, cache_name="t", sources=(str(source),))
    assert fresh.num_rendered == 0
    for f in tmp_path.glob("t-*.npy"):
        f.write_bytes(b"broken")
    source.write_text("version 1")
    assert LazyTable(5, (2, 3), render, cache_name="t", sources=(str(source),)).num_rendered == 0
    # half the rows met: the rest are rendered at once and the table saved for later processes
    half = LazyTable(10, (2, 3), render, cache_name="h", sources=(str(source),))
    half.rows(torch.arange(4))
    assert half.num_rendered == 4
    half.rows(torch.tensor([7]))
    assert half.num_rendered == 10 and len(list(tmp_path.glob("h-*.npy"))) == 1
