"""`mpi3d-synth`: a procedural look-alike of MPI3D-toy, rendered in torch.

Same factor grid as `mpi3d_toy.npz` (6 x 6 x 2 x 3 x 3 x 40 x 40 = 1,036,800 images,
row-major): object colour, object shape (cone, cube, cylinder, hexagonal prism,
pyramid, sphere), object size, camera height (top, center, bottom), background colour
(purple, sea green, salmon), and the two joints of a robot arm. The scene: a box-like
stage (walls and ceiling in the background colour, a grey floor) seen through its open
front; a two-link arm mounted on the back wall holds the object at its tip. The first
joint (horizontal_axis) swings the arm about the vertical axis, so the object moves
left-right across the image; the second (vertical_axis) tilts the forearm, so it moves
up-down. The object turns with the arm. Lambertian shading from one directional light;
no shadows.

Why it is fast: the picture is three layers composited on the device:
  * the stage, per camera: 3 x 3 background colours = 9 fixed frames;
  * the arm, per (camera, horizontal, vertical) = 4,800 rows: coverage and shade;
  * the object, per (shape, size, camera, horizontal, vertical) = 57,600 rows: coverage
    and shade in a 24 x 24 window around the object (the arm in front of it cut out);
colours only tint. Rows are ray cast on first use (`fdae.data.lazy_table`), 2 x 2
supersampled, in float64 on the CPU, so every device composites the same rows.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import torch

from fdae.data import raycast
from fdae.data.base import IMAGE_SIZE, GroundTruthDataset, uint8_to_signed
from fdae.data.lazy_table import LazyTable

COLOR_NAMES = ("white", "green", "red", "blue", "brown", "olive")
OBJECT_RGB = ((0.92, 0.92, 0.9), (0.16, 0.62, 0.22), (0.85, 0.13, 0.1),
              (0.13, 0.27, 0.85), (0.5, 0.3, 0.13), (0.52, 0.52, 0.1))
SHAPE_NAMES = ("cone", "cube", "cylinder", "hexagonal_prism", "pyramid", "sphere")
SIZE_NAMES = ("small", "large")
HALF_SIZES = (0.26, 0.4)
CAMERA_NAMES = ("top", "center", "bottom")
CAMERA_HEIGHTS = (3.5, 2.1, 0.8)
BACKGROUND_NAMES = ("purple", "sea_green", "salmon")
BACKGROUND_RGB = ((0.48, 0.3, 0.62), (0.2, 0.58, 0.46), (0.97, 0.56, 0.45))
YAW_DEG = tuple(np.linspace(-48.0, 48.0, 40).tolist())  # horizontal_axis: left to right
PITCH_DEG = tuple(np.linspace(-38.0, 38.0, 40).tolist())  # vertical_axis: low to high

# Scene (world units; y up, the camera on +z looking towards -z).
STAGE_X, STAGE_TOP, STAGE_BACK, STAGE_FRONT = 2.8, 4.2, -2.6, 1.6
CAMERA_Z, TARGET, FOV_DEG = 6.2, (0.0, 1.9, -0.6), 40.0
SHOULDER = (0.0, 2.0, -2.3)
MOUNT = ((-0.32, 1.72, STAGE_BACK), (0.32, 2.28, -2.3))  # box on the back wall
UPPER_LEN, UPPER_RADIUS, FORE_LEN, FORE_RADIUS = 1.2, 0.12, 1.3, 0.085
FLOOR_GREY, ARM_RGB, OUTSIDE_GREY = 0.34, (0.6, 0.61, 0.64), 0.1
LIGHT_DIR = (0.3, 0.62, 0.72)  # towards the light
AMBIENT, DIFFUSE = 0.4, 0.6
SUPERSAMPLE = 2
WINDOW = 24  # object window, pixels
BOUND = 1.5  # bounding-sphere radius of every object, in half sizes

_LOCK = threading.Lock()
_RENDERER: list["_Renderer"] = []


def _unit(v) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.as_tensor(v, dtype=torch.float64), dim=-1)


def _camera(camera: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eye (3,), forward, right and up unit vectors of one camera height."""
    eye = torch.tensor([0.0, CAMERA_HEIGHTS[camera], CAMERA_Z], dtype=torch.float64)
    fwd = _unit(torch.tensor(TARGET, dtype=torch.float64) - eye)
    right = _unit(torch.linalg.cross(fwd, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)))
    up = torch.linalg.cross(right, fwd)
    return eye, fwd, right, up


def _pixel_rays(camera: int, rows: torch.Tensor, cols: torch.Tensor):
    """Ray directions through sub-pixel positions (row, col in 64 px units, float64)."""
    eye, fwd, right, up = _camera(camera)
    half = math.tan(math.radians(FOV_DEG) / 2)
    u = (cols / IMAGE_SIZE * 2 - 1) * half
    v = (1 - rows / IMAGE_SIZE * 2) * half
    d = fwd + u[..., None] * right + v[..., None] * up
    return eye.expand_as(d), torch.nn.functional.normalize(d, dim=-1)


def project(camera: int, points: torch.Tensor) -> torch.Tensor:
    """World points (..., 3) -> (row, col) in 64 px image coordinates (pixel centres at +0.5)."""
    eye, fwd, right, up = _camera(camera)
    rel = points - eye
    z = raycast.dot(rel, fwd)
    half = math.tan(math.radians(FOV_DEG) / 2)
    u = raycast.dot(rel, right) / z / half
    v = raycast.dot(rel, up) / z / half
    return torch.stack([(1 - v) * IMAGE_SIZE / 2, (u + 1) * IMAGE_SIZE / 2], -1)


def arm_pose(h: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
    """Joint positions and the object's frame for joint indices h, v (int tensors)."""
    yaw = torch.deg2rad(torch.tensor(YAW_DEG, dtype=torch.float64)[h])
    pitch = torch.deg2rad(torch.tensor(PITCH_DEG, dtype=torch.float64)[v])
    zero = torch.zeros_like(yaw)
    forward = torch.stack([torch.sin(yaw), zero, torch.cos(yaw)], -1)
    y = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    shoulder = torch.tensor(SHOULDER, dtype=torch.float64).expand_as(forward)
    elbow = shoulder + UPPER_LEN * forward
    along = torch.cos(pitch)[..., None] * forward + torch.sin(pitch)[..., None] * y
    tip = elbow + FORE_LEN * along
    axes = torch.stack([torch.stack([torch.cos(yaw), zero, -torch.sin(yaw)], -1),
                        -torch.sin(pitch)[..., None] * forward + torch.cos(pitch)[..., None] * y,
                        along], -2)  # rows: the object's local x, y (its up), z (along the forearm)
    return {"shoulder": shoulder, "elbow": elbow, "tip": tip, "along": along, "axes": axes}


def object_centre(pose: dict[str, torch.Tensor], size: torch.Tensor) -> torch.Tensor:
    half = torch.tensor(HALF_SIZES, dtype=torch.float64)[size]
    return pose["tip"] + (half + 0.02)[..., None] * pose["along"]


def _prism_planes(sides: int, radius: float, half_height: float, apex: bool):
    """Outward normals and offsets of a regular prism (or pyramid when `apex`) around y."""
    normals, offsets = [], []
    for k in range(sides):
        a = 2 * math.pi * (k + 0.5) / sides
        inradius = radius * math.cos(math.pi / sides)
        if apex:  # side plane through the base edge (at -h) and the apex (0, h, 0)
            n = torch.tensor([math.cos(a) * 2 * half_height, inradius, math.sin(a) * 2 * half_height])
            n = n / n.norm()
            normals.append(n)
            offsets.append(float(n[1] * half_height))
        else:
            normals.append(torch.tensor([math.cos(a), 0.0, math.sin(a)]))
            offsets.append(inradius)
    normals += [torch.tensor([0.0, -1.0, 0.0])] + ([] if apex else [torch.tensor([0.0, 1.0, 0.0])])
    offsets += [half_height] + ([] if apex else [half_height])
    return torch.stack(normals).to(torch.float64), torch.tensor(offsets, dtype=torch.float64)


def object_hit(shape: int, o: torch.Tensor, d: torch.Tensor, half: torch.Tensor):
    """Ray hits (t, local normal) of object `shape` of half size `half`, rays in its frame."""
    name = SHAPE_NAMES[shape]
    if name == "sphere":
        centre = torch.zeros_like(half)
        return raycast.sphere(o, d, centre, 0.9 * half)
    if name == "cylinder":
        return raycast.capped_cylinder(o, d, 0.85 * half, 0.85 * half)
    if name == "cone":
        return raycast.cone(o, d, half, half)
    sides, radius, height, apex = {"cube": (4, 0.8 * math.sqrt(2), 0.8, False),
                                   "hexagonal_prism": (6, 1.0, 0.75, False),
                                   "pyramid": (4, 1.1, 0.9, True)}[name]
    if name == "cube":  # faces, not corners, towards the axes
        normals, offsets = _prism_planes(sides, radius, height, apex)
        rot = torch.tensor([[math.cos(math.pi / 4), 0, -math.sin(math.pi / 4)], [0, 1, 0],
                            [math.sin(math.pi / 4), 0, math.cos(math.pi / 4)]], dtype=torch.float64)
        normals = normals @ rot.T
    else:
        normals, offsets = _prism_planes(sides, radius, height, apex)
    t, n, _ = raycast.polytope(o, d, normals, offsets * half[..., None])
    return t, n


def _focal_px() -> float:
    """Pixels per world unit at depth 1."""
    return IMAGE_SIZE / 2 / math.tan(math.radians(FOV_DEG) / 2)


def _depth(camera: int, points: torch.Tensor) -> torch.Tensor:
    eye, fwd, _, _ = _camera(camera)
    return raycast.dot(points - eye, fwd)


def _segment_distance(rows, cols, pa, pb) -> torch.Tensor:
    """2D distance of sample points (rows, cols) to the segments pa-pb (..., 2)."""
    ab = pb - pa
    pr, pc = rows - pa[..., 0], cols - pa[..., 1]
    s = ((pr * ab[..., 0] + pc * ab[..., 1]) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0, 1)
    dr, dc = pr - s * ab[..., 0], pc - s * ab[..., 1]
    return torch.sqrt(dr * dr + dc * dc)


def _light() -> torch.Tensor:
    return _unit(LIGHT_DIR)


def _lambert(n: torch.Tensor) -> torch.Tensor:
    return AMBIENT + DIFFUSE * raycast.dot(n, _light().expand_as(n)).clamp_min(0)


def _sample_grid(rows0: torch.Tensor, cols0: torch.Tensor, size: int):
    """Sub-pixel sample positions of `size` x `size` pixel windows with origins (rows0, cols0).

    Returns (M, size*ss, size*ss) rows and cols, ordered so a reshape + mean gives pixels."""
    ss = SUPERSAMPLE
    offs = (torch.arange(size * ss, dtype=torch.float64) + 0.5) / ss
    r = rows0.to(torch.float64)[:, None, None] + offs[None, :, None]
    c = cols0.to(torch.float64)[:, None, None] + offs[None, None, :]
    return r.expand(-1, -1, size * ss), c.expand(-1, size * ss, -1)


def _box_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """(M, size*ss, size*ss) samples -> (M, size*size) pixel means."""
    ss = SUPERSAMPLE
    return x.reshape(-1, size, ss, size, ss).mean(dim=(2, 4)).reshape(-1, size * size)


def _arm_hits(o, d, pose):
    """Nearest hit of the two arm links (capsules): t and world normal; the pose's
    joints broadcast against the rays (one row of joints per ray)."""
    upper = raycast.segment_capsule(o, d, pose["shoulder"], pose["elbow"],
                            torch.full(o.shape[:-1], UPPER_RADIUS, dtype=torch.float64))
    fore = raycast.segment_capsule(o, d, pose["elbow"], pose["tip"],
                           torch.full(o.shape[:-1], FORE_RADIUS, dtype=torch.float64))
    return raycast._closest(upper, fore)


def _quantise(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255.0).to(torch.uint8)


class _Renderer:
    """The stage frames and the lazily ray cast arm and object rows (one per process)."""

    def __init__(self) -> None:
        self.stage = self._stage()  # (3 cameras, 2, HW): background weight, fixed grey
        sources = (__file__, raycast.__file__)
        self.arm = LazyTable(3 * 40 * 40, (2, IMAGE_SIZE * IMAGE_SIZE), self._arm_rows, chunk=16,
                             cache_name="mpi3d-synth-arm", sources=sources)
        n_obj = len(SHAPE_NAMES) * len(SIZE_NAMES) * 3 * 40 * 40
        self.obj = LazyTable(n_obj, (2, WINDOW * WINDOW), self._object_rows, chunk=128,
                             cache_name="mpi3d-synth-object", sources=sources)
        self.window_origin = torch.stack([self._window_origin(s) for s in range(len(SIZE_NAMES))])  # (2, 4800, 2)
        self._on: dict[str, tuple[torch.Tensor, ...]] = {}

    # ---- the stage: planes of an open-fronted box, and the arm's mount
    def _stage(self) -> torch.Tensor:
        n = IMAGE_SIZE
        frames = []
        for cam in range(3):
            rows, cols = _sample_grid(torch.zeros(1), torch.zeros(1), n)
            o, d = _pixel_rays(cam, rows[0], cols[0])
            t_best = torch.full(o.shape[:-1], raycast.INF, dtype=torch.float64)
            shade = torch.zeros_like(t_best)
            material = torch.full(o.shape[:-1], 2)  # 0 background colour, 1 grey, 2 outside
            surfaces = [(1, 0.0, 1.0, 1), (1, STAGE_TOP, -1.0, 0), (2, STAGE_BACK, 1.0, 0),
                        (0, -STAGE_X, 1.0, 0), (0, STAGE_X, -1.0, 0)]  # axis, value, normal sign, material
            for axis, value, sign, mat in surfaces:
                t, normal = raycast.plane(o, d, axis, value, sign)
                p = o + t.clamp(max=1e6)[..., None] * d
                inside = ((p[..., 0].abs() <= STAGE_X + 1e-9) & (p[..., 1] >= -1e-9) & (p[..., 1] <= STAGE_TOP + 1e-9)
                          & (p[..., 2] >= STAGE_BACK - 1e-9) & (p[..., 2] <= STAGE_FRONT))
                better = inside & (t < t_best) & (raycast.dot(d, normal) < 0)
                t_best = torch.where(better, t, t_best)
                shade = torch.where(better, _lambert(normal), shade)
                material = torch.where(better, mat, material)
            lo, hi = (torch.tensor(c, dtype=torch.float64) for c in MOUNT)
            centre, half = (lo + hi) / 2, (hi - lo) / 2
            normals = torch.tensor([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]],
                                   dtype=torch.float64)
            offsets = half[[0, 0, 1, 1, 2, 2]]
            t, normal, _ = raycast.polytope(o - centre, d, normals, offsets)
            better = t < t_best
            mount_shade = _lambert(normal) * ARM_RGB[1]
            bg = torch.where(material == 0, shade, torch.zeros_like(shade))
            grey = torch.where(material == 1, shade * FLOOR_GREY,
                               torch.where(material == 2, torch.full_like(shade, OUTSIDE_GREY), torch.zeros_like(shade)))
            bg = torch.where(better, 0.0, bg)
            grey = torch.where(better, mount_shade, grey)
            frames.append(torch.stack([_box_filter(bg[None], n)[0], _box_filter(grey[None], n)[0]]))
        return torch.stack(frames).to(torch.float32)

    # ---- the arm: per (camera, h, v)
    def _arm_rows(self, ids: np.ndarray) -> torch.Tensor:
        ids_t = torch.from_numpy(ids)
        cam, h, v = ids_t // 1600, (ids_t // 40) % 40, ids_t % 40
        pose = arm_pose(h, v)
        n, size = IMAGE_SIZE, IMAGE_SIZE * SUPERSAMPLE
        hit = torch.zeros((len(ids), size * size), dtype=torch.float64)
        shade = torch.zeros_like(hit)
        for c in range(3):
            sel = (cam == c).nonzero()[:, 0]
            if len(sel) == 0:
                continue
            rows, cols = _sample_grid(torch.zeros(1), torch.zeros(1), n)
            rows, cols = rows[0].reshape(-1), cols[0].reshape(-1)
            # The arm covers about 1 % of the frame: cast only the samples near its
            # projected links (2D distance to the projected segment within its radius).
            near = torch.zeros((len(sel), size * size), dtype=torch.bool)
            for a, b, radius in (("shoulder", "elbow", UPPER_RADIUS), ("elbow", "tip", FORE_RADIUS)):
                pa, pb = project(c, pose[a][sel]), project(c, pose[b][sel])
                reach = radius * _focal_px() / _depth(c, torch.stack([pose[a][sel], pose[b][sel]])).min(0).values
                dist = _segment_distance(rows, cols, pa[:, None], pb[:, None])
                near |= dist <= 1.25 * reach[:, None] + 1.0
            cfg, ray = near.nonzero(as_tuple=True)
            o, d = _pixel_rays(c, rows[ray], cols[ray])
            t, normal = _arm_hits(o, d, {k: val[sel][cfg] for k, val in pose.items()})
            ok = torch.isfinite(t)
            hit[sel[cfg], ray] = ok.to(torch.float64)
            shade[sel[cfg], ray] = torch.where(ok, _lambert(normal), 0.0)
        cover = _box_filter(hit.reshape(-1, size, size), n)
        lit = _box_filter(shade.reshape(-1, size, size), n)
        return torch.stack([_quantise(cover), _quantise(lit)], 1)

    # ---- the object: per (shape, size, camera, h, v), in a window
    @staticmethod
    def _window_origin(size: int) -> torch.Tensor:
        """(4800, 2) top-left pixel of the object's window per (camera, h, v)."""
        h, v = (g.reshape(-1) for g in torch.meshgrid(torch.arange(40), torch.arange(40), indexing="ij"))
        centre = object_centre(arm_pose(h, v), torch.full_like(h, size))
        px = torch.cat([project(cam, centre) for cam in range(3)])
        origin = torch.floor(px).to(torch.int64) - WINDOW // 2 + 1
        return origin.clamp(0, IMAGE_SIZE - WINDOW)

    def _object_rows(self, ids: np.ndarray) -> torch.Tensor:
        ids_t = torch.from_numpy(ids)
        shape, size = ids_t // (2 * 4800), (ids_t // 4800) % 2
        view = ids_t % 4800
        cam, h, v = view // 1600, (view // 40) % 40, view % 40
        pose = arm_pose(h, v)
        centre = object_centre(pose, size)
        half = torch.tensor(HALF_SIZES, dtype=torch.float64)[size]
        origin = self.window_origin[size, view]
        size_ss = WINDOW * SUPERSAMPLE
        hit = torch.zeros((len(ids), size_ss * size_ss), dtype=torch.float64)
        shade = torch.zeros_like(hit)
        for c in range(3):
            for s in range(len(SHAPE_NAMES)):
                sel = ((cam == c) & (shape == s)).nonzero()[:, 0]
                if len(sel) == 0:
                    continue
                rows, cols = _sample_grid(origin[sel, 0], origin[sel, 1], WINDOW)
                o, d = _pixel_rays(c, rows.reshape(len(sel), -1), cols.reshape(len(sel), -1))
                # cull: only rays through the object's bounding sphere
                rel = centre[sel][:, None] - o
                along = raycast.dot(rel, d)
                miss2 = raycast.dot(rel, rel) - along * along
                cfg, ray = (miss2 <= (BOUND * half[sel][:, None]) ** 2).nonzero(as_tuple=True)
                o, d = o[cfg, ray], d[cfg, ray]
                idx = sel[cfg]
                axes = pose["axes"][idx]
                o_l, d_l = raycast.to_local(o, d, centre[idx], axes)
                t_obj, n_l = object_hit(s, o_l, d_l, half[idx])
                first = torch.isfinite(t_obj).nonzero()[:, 0]  # the arm may hide part of the object
                t_arm, _ = _arm_hits(o[first], d[first], {k: val[idx[first]] for k, val in pose.items()})
                seen = torch.zeros_like(t_obj, dtype=torch.bool)
                seen[first] = t_obj[first] < t_arm
                hit[idx, ray] = seen.to(torch.float64)
                shade[idx, ray] = torch.where(seen, _lambert(raycast.to_world(n_l, axes)), 0.0)
        cover = _box_filter(hit.reshape(-1, size_ss, size_ss), WINDOW)
        lit = _box_filter(shade.reshape(-1, size_ss, size_ss), WINDOW)
        return torch.stack([_quantise(cover), _quantise(lit)], 1)

    # ---- compositing on the device
    def tables(self, device: torch.device):
        key = str(device)
        if key not in self._on:
            bg = torch.tensor(BACKGROUND_RGB, dtype=torch.float32)
            # (3 cameras, 3 backgrounds, 3 channels, HW)
            stage = self.stage[:, None, 0:1] * bg[None, :, :, None] + self.stage[:, None, 1:2]
            pix = torch.arange(WINDOW)
            offsets = (pix[:, None] * IMAGE_SIZE + pix[None, :]).reshape(-1)
            self._on[key] = (stage.to(device), torch.tensor(OBJECT_RGB, dtype=torch.float32, device=device),
                             torch.tensor(ARM_RGB, dtype=torch.float32, device=device),
                             self.window_origin.to(device), offsets.to(device))
        return self._on[key]


def renderer() -> _Renderer:
    """The process's renderer (its stage frames are built once; rows as they are needed)."""
    with _LOCK:
        if not _RENDERER:
            _RENDERER.append(_Renderer())
        return _RENDERER[0]


class MPI3DSynth(GroundTruthDataset):
    """Procedural MPI3D-toy look-alike; NOT the real `mpi3d-toy` (see `fdae data list`)."""

    name = "mpi3d-synth"
    factor_names = ("object_color", "object_shape", "object_size", "camera_height", "background_color",
                    "horizontal_axis", "vertical_axis")
    factor_sizes = (6, 6, 2, 3, 3, 40, 40)
    num_channels = 3
    procedural = True

    def factor_values(self) -> dict[str, tuple]:
        """What each factor index means (names; joint angles in degrees)."""
        return {"object_color": COLOR_NAMES, "object_shape": SHAPE_NAMES, "object_size": SIZE_NAMES,
                "camera_height": CAMERA_NAMES, "background_color": BACKGROUND_NAMES,
                "horizontal_axis": YAW_DEG, "vertical_axis": PITCH_DEG}

    def render_all(self, progress=None) -> None:
        """Ray cast every arm and object row now (exports; timing the warm path)."""
        r = renderer()
        r.arm.render_all(progress)
        r.obj.render_all(progress)

    def images_uint8(self, factors: Any, device: Any = None, check: bool = True) -> torch.Tensor:
        f = self.factor_tensor(factors, device, check)
        device = f.device
        r = renderer()
        stage, obj_rgb, arm_rgb, window_origin, offsets = r.tables(device)
        view = (f[:, 3] * 40 + f[:, 5]) * 40 + f[:, 6]
        arm = r.arm.rows(view).to(torch.float32) / 255.0  # (n, 2, HW)
        obj = r.obj.rows((f[:, 1] * 2 + f[:, 2]) * 4800 + view).to(torch.float32) / 255.0  # (n, 2, W*W)
        img = stage[f[:, 3], f[:, 4]]  # (n, 3, HW)
        img = img * (1 - arm[:, :1]) + arm[:, 1:] * arm_rgb[None, :, None]
        origin = window_origin[f[:, 2], view]
        idx = (origin[:, :1] * IMAGE_SIZE + origin[:, 1:] + offsets[None]).unsqueeze(1).expand(-1, 3, -1)
        win = img.gather(2, idx)
        win = win * (1 - obj[:, :1]) + obj[:, 1:] * obj_rgb[f[:, 0]][:, :, None]
        img = img.scatter(2, idx, win)
        img = torch.round(img * 255.0).clamp_(0, 255).to(torch.uint8)
        return img.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE)

    def sample_batch(self, batch_size: int, generator: torch.Generator, device: Any = None):
        factors = self.random_factors(batch_size, generator, device)
        return uint8_to_signed(self.images_uint8(factors, factors.device, check=False)), factors
