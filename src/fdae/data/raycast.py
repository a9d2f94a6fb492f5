"""Analytic ray/primitive intersections in torch, batched over any leading shape.

Rays are (origin o, unit direction d), tensors (..., 3). Each function returns the
nearest hit distance t (inf where missed, only t > EPS counts) and the unit surface
normal at that hit. Used by the Shapes3D look-alike renderer; float64 on CPU there, so
edges land on the same pixels whatever device later composites the images.
"""

from __future__ import annotations

import torch

EPS = 1e-6
INF = float("inf")


def _valid(t: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    return torch.where(ok & (t > EPS), t, torch.full_like(t, INF))


def _closest(*pairs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the smallest t among (t, normal) candidates."""
    t, n = pairs[0]
    for t2, n2 in pairs[1:]:
        closer = t2 < t
        t = torch.where(closer, t2, t)
        n = torch.where(closer[..., None], n2, n)
    return t, n


def plane(o: torch.Tensor, d: torch.Tensor, axis: int, value: float, normal_sign: float):
    """Plane coordinate[axis] == value, normal along +/- axis."""
    denom = d[..., axis]
    safe = torch.where(denom.abs() < 1e-12, torch.full_like(denom, 1e-12), denom)
    t = (value - o[..., axis]) / safe
    n = torch.zeros_like(o)
    n[..., axis] = normal_sign
    return _valid(t, torch.ones_like(t, dtype=torch.bool)), n


def sphere(o: torch.Tensor, d: torch.Tensor, centre_y: torch.Tensor, radius: torch.Tensor):
    """Sphere centred at (0, centre_y, 0); centre_y, radius broadcast against o[..., 0]."""
    oc = o.clone()
    oc[..., 1] = oc[..., 1] - centre_y
    b = (oc * d).sum(-1)
    c = (oc * oc).sum(-1) - radius**2
    disc = b * b - c
    t = -b - torch.sqrt(disc.clamp_min(0))
    p = oc + t[..., None] * d
    return _valid(t, disc >= 0), p / radius[..., None]


def vertical_cylinder_side(o, d, radius, y_lo, y_hi):
    """Side of the cylinder x^2 + z^2 = r^2 between heights y_lo and y_hi."""
    a = d[..., 0] ** 2 + d[..., 2] ** 2
    b = o[..., 0] * d[..., 0] + o[..., 2] * d[..., 2]
    c = o[..., 0] ** 2 + o[..., 2] ** 2 - radius**2
    a_safe = a.clamp_min(1e-12)
    disc = b * b - a * c
    t = (-b - torch.sqrt(disc.clamp_min(0))) / a_safe
    p = o + t[..., None] * d
    ok = (disc >= 0) & (p[..., 1] >= y_lo) & (p[..., 1] <= y_hi)
    n = torch.stack([p[..., 0], torch.zeros_like(t), p[..., 2]], -1) / radius[..., None]
    return _valid(t, ok), n


def disk_top(o, d, radius, y):
    """Horizontal disk of the given radius at height y, facing up."""
    denom = d[..., 1]
    safe = torch.where(denom.abs() < 1e-12, torch.full_like(denom, 1e-12), denom)
    t = (y - o[..., 1]) / safe
    p = o + t[..., None] * d
    ok = p[..., 0] ** 2 + p[..., 2] ** 2 <= radius**2
    n = torch.zeros_like(o)
    n[..., 1] = 1.0
    return _valid(t, ok), n


def box(o, d, half):
    """Axis-aligned box [-h, h] x [0, 2h] x [-h, h] (slab method)."""
    lo = torch.stack([-half, torch.zeros_like(half), -half], -1)
    hi = torch.stack([half, 2 * half, half], -1)
    d_safe = torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    t1 = (lo - o) / d_safe
    t2 = (hi - o) / d_safe
    near = torch.minimum(t1, t2)
    far = torch.maximum(t1, t2)
    t_near, axis = near.max(-1)
    t_far = far.min(-1).values
    n = torch.zeros_like(o)
    sign = -torch.sign(torch.gather(d, -1, axis[..., None]))
    n.scatter_(-1, axis[..., None], sign)
    return _valid(t_near, t_far >= t_near), n


def cylinder(o, d, half):
    """Solid cylinder of radius h and height 2h standing on the floor."""
    side = vertical_cylinder_side(o, d, half, torch.zeros_like(half), 2 * half)
    return _closest(side, disk_top(o, d, half, 2 * half))


def capsule(o, d, half):
    """Upright capsule: radius 0.8h, total height 2.4h, standing on the floor."""
    r = 0.8 * half
    y0, y1 = r, 2.4 * half - r
    side = vertical_cylinder_side(o, d, r, y0, y1)
    return _closest(side, sphere(o, d, y0, r), sphere(o, d, y1, r))


def ball(o, d, half):
    """Sphere of radius h resting on the floor."""
    return sphere(o, d, half, half)


SHAPES = (box, cylinder, ball, capsule)  # factor order: cube, cylinder, sphere, capsule
