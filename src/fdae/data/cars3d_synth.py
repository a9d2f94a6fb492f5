"""`cars3d-synth`: a procedural look-alike of Cars3D, rendered in torch.

Same factor grid as the Cars3D `.mat` folder (elevation 4 x azimuth 24 x object 183 =
17,568 images, row-major): 183 generated car-like objects, each seen from 4 elevations
(0, 10, 20, 30 degrees) and 24 azimuths (every 15 degrees), on white.

Each car is drawn from its own seed: a family (sedan, hatchback, coupe, wagon, SUV,
pickup, van) sets the proportions of the body (a bevelled slab), the cabin (a trapezoid
with sloped windscreens, glass all round under a roof) and four wheels (tyres with
hubcaps); then length-wise jitter, colour (hue, saturation, brightness; some white,
black or silver), and details: headlights and a grille, tail lights, an optional side
stripe, black roof, rear spoiler. Lambertian shading, light fixed to the camera.

As the real data, each view is rendered at 128 x 128 and shrunk to 64 x 64 with the
same PIL LANCZOS thumbnail the Cars3D reader uses (`fdae.data.cars3d.shrink`), so
`fdae data export cars3d-synth` writes 128 px `.mat` files that read back into exactly
these images. Views are ray cast on first use (`fdae.data.lazy_table`), float64 on CPU.
"""

from __future__ import annotations

import colorsys
import math
import threading
from typing import Any

import numpy as np
import torch

from fdae.data import raycast
from fdae.data.base import IMAGE_SIZE, GroundTruthDataset, uint8_to_signed
from fdae.data.lazy_table import LazyTable

ELEVATIONS_DEG = (0.0, 10.0, 20.0, 30.0)
AZIMUTHS_DEG = tuple(15.0 * k for k in range(24))
NUM_CARS = 183
FAMILIES = ("sedan", "hatchback", "coupe", "wagon", "suv", "pickup", "van")
RENDER_SIZE = 128
CAM_DIST, FOV_DEG, TARGET_Y = 6.5, 24.0, 0.42
LIGHT_CAM = (-0.35, 0.55, 0.75)  # towards the light, in camera coordinates (right, up, back)
AMBIENT, DIFFUSE = 0.35, 0.65
GLASS, TYRE, HUB, HEADLIGHT, TAILLIGHT, GRILLE = ((0.16, 0.19, 0.24), (0.07, 0.07, 0.08), (0.62, 0.63, 0.66),
                                                  (1.0, 0.96, 0.78), (0.85, 0.08, 0.06), (0.12, 0.12, 0.13))
SEED = 20_240_318
PLANES = 8  # every part is a convex polytope of 8 half-spaces (repeats pad the short ones)

_LOCK = threading.Lock()
_TABLE: list[LazyTable] = []


def _half_space(nx, ny, nz, through):
    n = np.array([nx, ny, nz], dtype=np.float64)
    n /= np.linalg.norm(n)
    return n, float(n @ np.asarray(through, dtype=np.float64))


def _profile_planes(points, half_width, tumble=0.0):
    """Half-spaces of a convex side profile (x, y), counter-clockwise, extruded to +-half_width."""
    planes = []
    pts = [np.array(p, dtype=np.float64) for p in points]
    for a, b in zip(pts, pts[1:] + pts[:1]):
        e = b - a
        planes.append(_half_space(e[1], -e[0], 0.0, (a[0], a[1], 0.0)))
    y_mid = pts[0][1]
    for side in (1.0, -1.0):
        planes.append(_half_space(0.0, tumble, side, (0.0, y_mid, side * half_width)))
    while len(planes) < PLANES:
        planes.append(planes[0])
    return planes


def car_parameters(index: int) -> dict[str, Any]:
    """Shape, colour and details of car `index` (its own seed, so cars never change)."""
    rs = np.random.RandomState(SEED + index)
    family = FAMILIES[index % len(FAMILIES)] if index < len(FAMILIES) else FAMILIES[rs.randint(len(FAMILIES))]
    j = lambda lo, hi: float(rs.uniform(lo, hi))  # noqa: E731
    half_len = 1.0
    clear = j(0.12, 0.2) + (0.08 if family in ("suv", "pickup") else 0.0)
    belt = clear + j(0.32, 0.42) + (0.06 if family in ("suv", "pickup", "van") else 0.0) - (0.05 if family == "coupe" else 0)
    width = j(0.78, 0.92) + (0.05 if family in ("suv", "van") else 0.0)
    cabin_h = {"sedan": j(0.3, 0.38), "hatchback": j(0.32, 0.4), "coupe": j(0.24, 0.3), "wagon": j(0.32, 0.38),
               "suv": j(0.38, 0.46), "pickup": j(0.36, 0.42), "van": j(0.5, 0.6)}[family]
    # cabin: bottom from x0 to x1 at the beltline, roof from r0 to r1
    if family == "van":
        x0, x1 = -0.98, j(0.45, 0.7)
        r0, r1 = -0.96, x1 - j(0.2, 0.35)
    elif family == "pickup":
        x0, x1 = j(-0.35, -0.2), j(0.45, 0.55)
        r0, r1 = x0 + 0.03, x1 - j(0.22, 0.3)
    elif family in ("hatchback", "wagon", "suv"):
        x0, x1 = j(-0.95, -0.85), j(0.3, 0.5)
        r0, r1 = x0 + j(0.04, 0.15) * (2 if family == "hatchback" else 1), x1 - j(0.3, 0.45)
    else:  # sedan, coupe: a rear deck and a sloped rear window
        x0, x1 = j(-0.7, -0.5), j(0.25, 0.45)
        r0, r1 = x0 + j(0.25, 0.4), x1 - j(0.35, 0.55) + (0.1 if family == "coupe" else 0.0)
        r0 = min(r0, r1 - 0.2)
    nose, tail = j(0.1, 0.3), j(0.05, 0.25)
    body = _profile_planes([(-half_len, clear), (half_len, clear), (half_len, belt - nose * 0.5),
                            (half_len - nose, belt), (-half_len + tail, belt), (-half_len, belt - tail * 0.4)],
                           width / 2)
    cabin = _profile_planes([(x0, belt - 0.02), (x1, belt - 0.02), (r1, belt + cabin_h), (r0, belt + cabin_h)],
                            width / 2 * 0.9, tumble=j(0.1, 0.3))
    spoiler = family in ("sedan", "coupe", "hatchback") and rs.rand() < 0.35
    if spoiler:
        sx = -half_len + 0.04
        box = [(sx, belt + 0.06), (sx + 0.16, belt + 0.06), (sx + 0.16, belt + 0.1), (sx, belt + 0.1)]
        wing = _profile_planes(box, width / 2 * 0.95)
    else:  # an empty polytope: x <= -5 and x >= 5
        wing = [(np.array([1.0, 0, 0]), -5.0), (np.array([-1.0, 0, 0]), -5.0)] * (PLANES // 2)
    wheel_r = j(0.17, 0.22) + (0.05 if family in ("suv", "pickup") else 0.0)
    axle = half_len - j(0.22, 0.32)
    rear_axle = -half_len + j(0.22, 0.32) + (0.05 if family == "van" else 0.0)
    kind = rs.rand()
    if kind < 0.15:
        rgb = (0.93, 0.93, 0.92)  # white
    elif kind < 0.27:
        rgb = (0.1, 0.1, 0.11)  # black
    elif kind < 0.4:
        grey = j(0.5, 0.72)
        rgb = (grey, grey, grey + 0.03)  # silver and greys
    else:
        rgb = colorsys.hsv_to_rgb(rs.rand(), j(0.45, 0.95), j(0.45, 0.95))
    return {
        "family": family,
        "parts": [body, cabin, wing],  # each: PLANES (normal, offset) pairs
        "wheels": [(x, wheel_r, s * (width / 2 - 0.06)) for x in (axle, rear_axle) for s in (1.0, -1.0)],
        "wheel_radius": wheel_r, "wheel_half_width": 0.07 + 0.02 * rs.rand(),
        "rgb": tuple(float(c) for c in rgb),
        "roof_black": bool(rs.rand() < 0.2),
        "stripe": (j(clear + 0.06, belt - 0.12), j(0.03, 0.07)) if rs.rand() < 0.3 else None,
        "belt": belt, "clear": clear, "width": width,
    }


def _camera(elevation: float, azimuth: float):
    """Eye, forward, right, up (float64) of one view; azimuth 0 looks at the car's right
    side (the car faces +x, the camera starts on +z)."""
    el, az = math.radians(elevation), math.radians(azimuth)
    eye = torch.tensor([CAM_DIST * math.cos(el) * math.sin(az), TARGET_Y + CAM_DIST * math.sin(el),
                        CAM_DIST * math.cos(el) * math.cos(az)], dtype=torch.float64)
    fwd = torch.nn.functional.normalize(torch.tensor([0.0, TARGET_Y, 0.0], dtype=torch.float64) - eye, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(fwd, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)),
                                          dim=0)
    return eye, fwd, right, torch.linalg.cross(right, fwd)


def _car_tensors(cars: list[int]) -> dict[str, torch.Tensor]:
    """The parameters of `cars` as stacked float64 tensors (one row per car)."""
    ps = [car_parameters(i) for i in cars]
    f64 = lambda x: torch.tensor(np.asarray(x, dtype=np.float64))  # noqa: E731
    return {
        "normals": f64([[[n for n, _ in part] for part in p["parts"]] for p in ps]),  # (C, 3, PLANES, 3)
        "offsets": f64([[[o for _, o in part] for part in p["parts"]] for p in ps]),  # (C, 3, PLANES)
        "wheels": f64([p["wheels"] for p in ps]),  # (C, 4, 3)
        "wheel_radius": f64([p["wheel_radius"] for p in ps]),
        "wheel_half_width": f64([p["wheel_half_width"] for p in ps]),
        "rgb": f64([p["rgb"] for p in ps]),
        "roof_black": torch.tensor([p["roof_black"] for p in ps]),
        "stripe": f64([p["stripe"] if p["stripe"] else (-1.0, 0.0) for p in ps]),
        "width": f64([p["width"] for p in ps]),
        "clear": f64([p["clear"] for p in ps]),
        "belt": f64([p["belt"] for p in ps]),
    }


BOUNDS = ((-1.05, 0.0, -0.56), (1.05, 1.4, 0.56))  # every car fits in this box


def _crosses_box(o, d, lo, hi) -> torch.Tensor:
    """Whether each ray crosses the axis-aligned box [lo, hi] (slab test)."""
    safe = torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    t1, t2 = (lo - o) / safe, (hi - o) / safe
    return torch.minimum(t1, t2).max(-1).values <= torch.maximum(t1, t2).min(-1).values


def render_views(views: list[tuple[int, int, int]]) -> np.ndarray:
    """(elevation, azimuth, car) factor indices -> (V, 128, 128, 3) uint8 views.

    Rays are cast only where they cross the box every car fits in; every part and
    parameter is gathered per ray, so a batch of views is one pass."""
    n = RENDER_SIZE
    cams = [_camera(ELEVATIONS_DEG[e], AZIMUTHS_DEG[a]) for e, a, _ in views]
    eye, fwd, right, up = (torch.stack(x) for x in zip(*cams))  # (V, 3) each
    coords = (torch.arange(n, dtype=torch.float64) + 0.5) / n * 2 - 1
    v, u = torch.meshgrid(-coords, coords, indexing="ij")
    half = math.tan(math.radians(FOV_DEG) / 2)
    d = (fwd[:, None] + (u * half).reshape(1, -1, 1) * right[:, None] + (v * half).reshape(1, -1, 1) * up[:, None])
    d = torch.nn.functional.normalize(d, dim=-1)  # (V, n*n, 3)
    lo, hi = (torch.tensor(b, dtype=torch.float64) for b in BOUNDS)
    vi, ray = _crosses_box(eye[:, None], d, lo, hi).nonzero(as_tuple=True)
    d = d[vi, ray]
    o = eye[vi]
    c = _car_tensors([car for _, _, car in views])
    light = torch.nn.functional.normalize(LIGHT_CAM[0] * right + LIGHT_CAM[1] * up - LIGHT_CAM[2] * fwd, dim=-1)[vi]
    t_best = torch.full(d.shape[:-1], raycast.INF, dtype=torch.float64)
    rgb = torch.ones(d.shape, dtype=torch.float64)
    normal_best = torch.zeros_like(d)
    paint = {k: c[k][vi] for k in ("rgb", "roof_black", "stripe", "width", "clear", "belt")}
    for part in range(3):
        t, normal, _ = raycast.polytope(o, d, c["normals"][vi, part], c["offsets"][vi, part])
        better = t < t_best
        point = o + t.clamp(max=1e6)[..., None] * d
        colour = _part_colour(part, point, normal, paint)
        t_best = torch.where(better, t, t_best)
        rgb = torch.where(better[..., None], colour, rgb)
        normal_best = torch.where(better[..., None], normal, normal_best)
    axes = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]], dtype=torch.float64)  # wheel axis = local y
    radius, half_w = c["wheel_radius"][vi], c["wheel_half_width"][vi]
    for wheel in range(4):
        centre = c["wheels"][vi, wheel]
        reach = torch.stack([radius, half_w, radius], -1)  # the wheel's box: (x, z, y) half extents
        box = torch.stack([reach[:, 0], reach[:, 2], reach[:, 1]], -1)
        near = _crosses_box(o, d, centre - box, centre + box).nonzero()[:, 0]
        o_l, d_l = raycast.to_local(o[near], d[near], centre[near], axes)
        t, n_l = raycast.capped_cylinder(o_l, d_l, radius[near], half_w[near])
        better = t < t_best[near]
        p_l = o_l + t.clamp(max=1e6)[..., None] * d_l
        hub = (n_l[..., 1].abs() > 0.5) & (p_l[..., 0] ** 2 + p_l[..., 2] ** 2 <= (0.6 * radius[near]) ** 2)
        colour = torch.where(hub[..., None], torch.tensor(HUB, dtype=torch.float64),
                             torch.tensor(TYRE, dtype=torch.float64))
        t_best[near] = torch.where(better, t, t_best[near])
        rgb[near] = torch.where(better[..., None], colour, rgb[near])
        normal_best[near] = torch.where(better[..., None], raycast.to_world(n_l, axes), normal_best[near])
    hit = torch.isfinite(t_best)
    shade = AMBIENT + DIFFUSE * raycast.dot(normal_best, light).clamp_min(0)
    lit = torch.where(hit[..., None], rgb * shade[..., None], torch.ones_like(rgb))
    image = torch.ones((len(views), n * n, 3), dtype=torch.float64)
    image[vi, ray] = lit
    return torch.round(image.clamp(0, 1) * 255).to(torch.uint8).reshape(-1, n, n, 3).numpy()


def render_view(elevation: int, azimuth: int, car: int) -> np.ndarray:
    """One view at 128 x 128: (128, 128, 3) uint8 (factor indices in, as the dataset)."""
    return render_views([(elevation, azimuth, car)])[0]


def _part_colour(part, point, normal, c):
    """Per-hit colour of body (0), cabin (1) or spoiler (2) faces: paint, glass, lights."""
    y, z = point[..., 1], point[..., 2]
    half_w = c["width"] / 2
    body = c["rgb"]
    const = lambda v: torch.tensor(v, dtype=torch.float64).expand(point.shape)  # noqa: E731
    if part == 1:  # cabin: glass except the roof
        roof = normal[..., 1] > 0.95
        roof_rgb = torch.where(c["roof_black"][..., None], const((0.08, 0.08, 0.09)), body)
        return torch.where(roof[..., None], roof_rgb, const(GLASS))
    if part == 2:
        return body
    front, rear = normal[..., 0] > 0.9, normal[..., 0] < -0.9
    corner = (z.abs() > half_w * 0.55) & (z.abs() < half_w * 0.92)
    upper = y > c["clear"] + 0.55 * (c["belt"] - c["clear"])
    colour = torch.where((front & corner & upper)[..., None], const(HEADLIGHT), body)
    grille = front & (z.abs() < half_w * 0.45) & ~upper & (y > c["clear"] + 0.05)
    colour = torch.where(grille[..., None], const(GRILLE), colour)
    colour = torch.where((rear & corner & upper)[..., None], const(TAILLIGHT), colour)
    stripe_lo, stripe_w = c["stripe"][..., 0], c["stripe"][..., 1]
    band = (normal[..., 2].abs() > 0.9) & (y > stripe_lo) & (y < stripe_lo + stripe_w)
    striped = colour * 0.35 + 0.6 * (1 - body.mean(-1, keepdim=True))
    return torch.where(band[..., None], striped, colour)


def _shrink_rows(ids: np.ndarray) -> torch.Tensor:
    from fdae.data.cars3d import shrink

    views = [(flat // (24 * NUM_CARS), (flat // NUM_CARS) % 24, flat % NUM_CARS) for flat in ids.tolist()]
    big = render_views(views)
    return torch.from_numpy(np.stack([shrink(v) for v in big])).permute(0, 3, 1, 2).contiguous()


def _shrink_source() -> str:
    from fdae.data import cars3d

    return cars3d.__file__


def table() -> LazyTable:
    with _LOCK:
        if not _TABLE:
            _TABLE.append(LazyTable(4 * 24 * NUM_CARS, (3, IMAGE_SIZE, IMAGE_SIZE), _shrink_rows, chunk=16,
                                    cache_name="cars3d-synth", sources=(__file__, raycast.__file__, _shrink_source())))
        return _TABLE[0]


class Cars3DSynth(GroundTruthDataset):
    """Procedural Cars3D look-alike; NOT the real `cars3d` (see `fdae data list`)."""

    name = "cars3d-synth"
    factor_names = ("elevation", "azimuth", "object")
    factor_sizes = (4, 24, NUM_CARS)
    num_channels = 3
    procedural = True

    def factor_values(self) -> dict[str, tuple]:
        return {"elevation": ELEVATIONS_DEG, "azimuth": AZIMUTHS_DEG,
                "object": tuple(car_parameters(i)["family"] for i in range(NUM_CARS))}

    def render_all(self, progress=None) -> None:
        table().render_all(progress)

    def images_uint8(self, factors: Any, device: Any = None, check: bool = True) -> torch.Tensor:
        f = self.factor_tensor(factors, device, check)
        return table().rows((f[:, 0] * 24 + f[:, 1]) * NUM_CARS + f[:, 2])

    def sample_batch(self, batch_size: int, generator: torch.Generator, device: Any = None):
        factors = self.random_factors(batch_size, generator, device)
        return uint8_to_signed(self.images_uint8(factors, factors.device, check=False)), factors
