"""`shapes3d-synth`: a procedural look-alike of DeepMind's 3D Shapes, rendered in torch.

Same factor grid as `3dshapes.h5`. The scene: a floor and two walls meeting in a
corner (background above them), an object centred on the floor, Lambertian shading from
a fixed directional light, and the object's shadow; the camera orbits the object.

Why it is fast: geometry depends only on (scale, shape, orientation) = 480 cases, and
colour only tints it. So the 480 cases are ray cast once (batched, analytic
intersections, 2x2 supersampling, float64 on CPU so every device gets identical edges)
into per-pixel weights of the four materials; an image is then
`sum_m weight_m * rgb_m`, a handful of elementwise ops on the training device.
"""

from __future__ import annotations

import colorsys
import math
import threading
from typing import Any

import numpy as np
import torch

from fdae.data import raycast
from fdae.data.base import IMAGE_SIZE, GroundTruthDataset, single_thread, uint8_to_signed

HUES = tuple(i / 10 for i in range(10))
SCALES = tuple(np.linspace(0.75, 1.25, 8).tolist())
SHAPE_NAMES = ("cube", "cylinder", "sphere", "capsule")
ORIENTATIONS_DEG = tuple(np.linspace(-30.0, 30.0, 15).tolist())

# Scene constants (world units; y is up, object at the origin).
WALL_DIST = 4.0  # walls are the planes x = -4 and z = -4
WALL_HEIGHT = 4.1
CAM_DIST = 9.0
CAM_ELEV_DEG = 22.0
CAM_TARGET_Y = 1.9
FOV_DEG = 36.0
BASE_AZIMUTH_DEG = 45.0  # orientation 0 looks straight into the corner
LIGHT_DIR = (-0.45, 1.3, 1.1)  # towards the light
AMBIENT, DIFFUSE = 0.38, 0.62
BACKGROUND_RGB = (0.72, 0.76, 0.82)
SUPERSAMPLE = 2
MAX_HALF = max(np.linspace(0.75, 1.25, 8))

_GEOMETRY: dict[str, torch.Tensor] = {}
_LOCK = threading.Lock()


def hue_rgb(hue: float) -> tuple[float, float, float]:
    """Fully saturated colour of a hue in [0, 1), as in 3D Shapes."""
    return colorsys.hsv_to_rgb(hue, 1.0, 1.0)


def _camera_rays(azimuth_deg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera origins (G, 1, 3) and unit ray directions (G, P, 3), P = (64*ss)^2."""
    az = torch.deg2rad(BASE_AZIMUTH_DEG + azimuth_deg.to(torch.float64))
    el = math.radians(CAM_ELEV_DEG)
    eye = torch.stack(
        [CAM_DIST * math.cos(el) * torch.cos(az),
         CAM_TARGET_Y + CAM_DIST * math.sin(el) * torch.ones_like(az),
         CAM_DIST * math.cos(el) * torch.sin(az)], -1)
    target = torch.tensor([0.0, CAM_TARGET_Y, 0.0], dtype=torch.float64)
    fwd = torch.nn.functional.normalize(target - eye, dim=-1)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand_as(fwd)
    right = torch.nn.functional.normalize(torch.linalg.cross(fwd, up), dim=-1)
    true_up = torch.linalg.cross(right, fwd)
    n = IMAGE_SIZE * SUPERSAMPLE
    coords = (torch.arange(n, dtype=torch.float64) + 0.5) / n * 2 - 1
    v, u = torch.meshgrid(-coords, coords, indexing="ij")  # v: +1 at the top row
    half = math.tan(math.radians(FOV_DEG) / 2)
    u, v = (u * half).reshape(1, -1, 1), (v * half).reshape(1, -1, 1)
    d = fwd[:, None] + u * right[:, None] + v * true_up[:, None]
    return eye[:, None, :], torch.nn.functional.normalize(d, dim=-1)


def _bounding_hits(o: torch.Tensor, d: torch.Tensor, radius: float) -> torch.Tensor:
    """Rays that pass within `radius` of the largest object's centre (cheap cull)."""
    centre = torch.tensor([0.0, MAX_HALF * 1.2, 0.0], dtype=torch.float64)
    oc = o - centre
    b = (oc * d).sum(-1)
    closest = oc - b[..., None] * d
    return ((closest * closest).sum(-1) <= radius**2) & ((b < 0) | ((oc * oc).sum(-1) <= radius**2))


def _light() -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(LIGHT_DIR, dtype=torch.float64), dim=0)


def _room(o: torch.Tensor, d: torch.Tensor):
    """Nearest room surface per ray: distance, normal, material (0 floor, 1 wall, 3 bg)."""
    floor = raycast.plane(o, d, 1, 0.0, 1.0)
    w1t, w1n = raycast.plane(o, d, 0, -WALL_DIST, 1.0)
    w2t, w2n = raycast.plane(o, d, 2, -WALL_DIST, 1.0)
    p1 = o + w1t.clamp(max=1e6)[..., None] * d
    p2 = o + w2t.clamp(max=1e6)[..., None] * d
    inf = torch.full_like(w1t, raycast.INF)
    w1t = torch.where((p1[..., 1] <= WALL_HEIGHT) & (p1[..., 2] >= -WALL_DIST), w1t, inf)
    w2t = torch.where((p2[..., 1] <= WALL_HEIGHT) & (p2[..., 0] >= -WALL_DIST), w2t, inf)
    ts = torch.stack([floor[0], w1t, w2t], -1)
    t, which = ts.min(-1)
    normals = torch.stack([floor[1], w1n, w2n], -2)
    normal = torch.gather(normals, -2, which[..., None, None].expand(*which.shape, 1, 3))[..., 0, :]
    material = torch.where(torch.isinf(t), 3, torch.where(which == 0, 0, 1))
    return t, normal, material


def _orientation_weights(azimuth_deg: float) -> torch.Tensor:
    """Material weights (32, 4, 64*64) for all (scale, shape) at one camera azimuth."""
    o, d = _camera_rays(torch.tensor([azimuth_deg], dtype=torch.float64))
    o, d = o[0].expand_as(d[0]), d[0]
    light = _light()
    t_room, n_room, mat = _room(o, d)
    shade_room = AMBIENT + DIFFUSE * (n_room * light).sum(-1).clamp_min(0)
    shade_room = torch.where(mat == 3, 1.0, shade_room)
    p_room = o + t_room.clamp(max=1e6)[..., None] * d + 1e-6 * n_room
    radius = MAX_HALF * 2.0
    cam = _bounding_hits(o, d, radius).nonzero()[:, 0]
    shadow = ((mat != 3) & _bounding_hits(p_room, light.expand_as(p_room), radius)).nonzero()[:, 0]
    halves = torch.tensor(SCALES, dtype=torch.float64)
    n_geo = len(SCALES) * len(SHAPE_NAMES)
    material = mat.expand(n_geo, -1).clone()
    shade = shade_room.expand(n_geo, -1).clone()
    for shape, obj in enumerate(raycast.SHAPES):
        rows = torch.arange(len(SCALES)) * len(SHAPE_NAMES) + shape
        h = halves[:, None]
        # Shadows on the room first, then the object drawn over them.
        ps = p_room[shadow].expand(len(SCALES), -1, -1)
        st, _ = obj(ps, light.expand_as(ps), h.expand(ps.shape[:-1]))
        dark = torch.isfinite(st)
        sub = shade[rows][:, shadow]
        shade[rows[:, None], shadow[None, :]] = torch.where(dark, AMBIENT, sub)
        oc, dc = o[cam].expand(len(SCALES), -1, -1), d[cam].expand(len(SCALES), -1, -1)
        ot, on = obj(oc, dc, h.expand(oc.shape[:-1]))
        hit = ot < t_room[cam]
        obj_shade = AMBIENT + DIFFUSE * (on * light).sum(-1).clamp_min(0)
        shade[rows[:, None], cam[None, :]] = torch.where(hit, obj_shade, shade[rows][:, cam])
        material[rows[:, None], cam[None, :]] = torch.where(hit, 2, material[rows][:, cam])
    weights = torch.nn.functional.one_hot(material, 4).to(torch.float64) * shade[..., None]
    n, ss = IMAGE_SIZE, SUPERSAMPLE
    weights = weights.reshape(n_geo, n, ss, n, ss, 4).mean(dim=(2, 4))  # box filter
    return weights.permute(0, 3, 1, 2).reshape(n_geo, 4, n * n).to(torch.float32)


def build_geometry() -> torch.Tensor:
    """(8*4*15, 4, 4096) float32 material weights, index (scale*4 + shape)*15 + orient."""
    per_orient = [_orientation_weights(a) for a in ORIENTATIONS_DEG]  # each (32, 4, HW)
    return torch.stack(per_orient, 1).reshape(-1, 4, IMAGE_SIZE**2)


def geometry_on(device: torch.device) -> torch.Tensor:
    """The geometry table on `device`, built once per process (on CPU) and copied."""
    key = str(device)
    with _LOCK:
        if "cpu" not in _GEOMETRY:
            with single_thread():
                _GEOMETRY["cpu"] = build_geometry()
        if key not in _GEOMETRY:
            _GEOMETRY[key] = _GEOMETRY["cpu"].to(device)
        return _GEOMETRY[key]


class Shapes3DSynth(GroundTruthDataset):
    """Procedural 3D Shapes look-alike; NOT the real `shapes3d` (see `fdae data list`)."""

    name = "shapes3d-synth"
    factor_names = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    factor_sizes = (10, 10, 10, 8, 4, 15)
    num_channels = 3
    procedural = True

    def __init__(self) -> None:
        self._palette = torch.tensor([hue_rgb(h) for h in HUES], dtype=torch.float32)
        self._bg = torch.tensor(BACKGROUND_RGB, dtype=torch.float32)
        self._on: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def factor_values(self) -> dict[str, tuple]:
        """Physical value of each factor index (as stored in the h5 `labels`)."""
        return {"floor_hue": HUES, "wall_hue": HUES, "object_hue": HUES, "scale": SCALES,
                "shape": tuple(float(i) for i in range(4)), "orientation": ORIENTATIONS_DEG}

    def _tables(self, device: torch.device):
        key = str(device)
        if key not in self._on:
            self._on[key] = (geometry_on(device), self._palette.to(device), self._bg.to(device))
        return self._on[key]

    def images_uint8(self, factors: Any, device: Any = None, check: bool = True) -> torch.Tensor:
        f = self.factor_tensor(factors, device, check)
        geom, palette, bg = self._tables(f.device)
        g = (f[:, 3] * 4 + f[:, 4]) * 15 + f[:, 5]
        w = geom[g]  # (n, 4, HW)
        img = w[:, 3:4] * bg[None, :, None]
        for m in range(3):
            img = img + w[:, m : m + 1] * palette[f[:, m]][:, :, None]
        img = torch.round(img * 255.0).clamp_(0, 255).to(torch.uint8)
        return img.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE)

    def sample_batch(self, batch_size: int, generator: torch.Generator, device: Any = None):
        factors = self.random_factors(batch_size, generator, device)
        imgs = uint8_to_signed(self.images_uint8(factors, factors.device, check=False))
        return imgs, factors
