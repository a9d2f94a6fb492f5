"""Analytic ray/primitive intersections in torch, batched over any leading shape.

Rays are (origin o, unit direction d), tensors (..., 3). Each function returns the
nearest hit distance t (inf where missed, only t > EPS counts) and the unit surface
normal at that hit (`polytope` also the index of the face hit). Used by the Shapes3D,
MPI3D and Cars3D look-alike renderers; float64 on CPU there, so edges land on the same
pixels whatever device later composites the images.
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


# ---------------------------------------------------------------- general primitives
# Used by the MPI3D and Cars3D look-alikes: parts placed anywhere, in any orientation.
# Dot products are written out per axis (no matmul), so a ray gets the same bits
# whichever batch it is cast in.


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def to_local(o: torch.Tensor, d: torch.Tensor, centre: torch.Tensor, axes: torch.Tensor):
    """Rays in a part's frame: `axes` (..., 3, 3) holds the local x, y, z axes as rows."""
    rel = o - centre
    o_l = torch.stack([dot(rel, axes[..., i, :]) for i in range(3)], -1)
    d_l = torch.stack([dot(d, axes[..., i, :]) for i in range(3)], -1)
    return o_l, d_l


def to_world(n_local: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """A local normal back in world coordinates (the transpose of `to_local`)."""
    return (n_local[..., 0:1] * axes[..., 0, :] + n_local[..., 1:2] * axes[..., 1, :]
            + n_local[..., 2:3] * axes[..., 2, :])


def segment_capsule(o, d, a, b, radius):
    """Capsule: all points within `radius` of the segment a-b (a robot arm's link)."""
    ba, oa = b - a, o - a
    baba, bard, baoa = dot(ba, ba), dot(ba, d), dot(ba, oa)
    rdoa, oaoa = dot(d, oa), dot(oa, oa)
    qa = baba - bard * bard
    qb = baba * rdoa - baoa * bard
    qc = baba * oaoa - baoa * baoa - radius * radius * baba
    disc = qb * qb - qa * qc
    t_side = (-qb - torch.sqrt(disc.clamp_min(0))) / qa.clamp_min(1e-12)
    along = baoa + t_side * bard
    side_ok = (disc >= 0) & (along > 0) & (along < baba)
    # otherwise the cap sphere at the nearer end
    cap = torch.where((along <= 0)[..., None], a, b)
    oc = o - cap
    cb, cc = dot(d, oc), dot(oc, oc) - radius * radius
    cdisc = cb * cb - cc
    t_cap = -cb - torch.sqrt(cdisc.clamp_min(0))
    t = torch.where(side_ok, t_side, t_cap)
    ok = side_ok | (cdisc >= 0)
    p = o + t[..., None] * d
    s = (dot(p - a, ba) / baba).clamp(0, 1)
    n = (p - (a + s[..., None] * ba)) / radius[..., None]
    return _valid(t, ok), n


def polytope(o, d, normals, offsets):
    """Convex polytope {p : n_k . p <= off_k for all k}, rays already in its frame.

    `normals` (..., K, 3) unit outward, `offsets` (..., K). Returns t, the normal and the
    index of the face hit (for per-face materials such as a car's windows)."""
    denom = dot(d[..., None, :], normals)  # (..., K)
    dist = offsets - dot(o[..., None, :], normals)  # >= 0 inside
    parallel = denom.abs() < 1e-12
    safe = torch.where(parallel, torch.ones_like(denom), denom)
    t = dist / safe
    entering = (denom < 0) & ~parallel
    exiting = (denom > 0) & ~parallel
    neg_inf = torch.full_like(t, -INF)
    t_near, face = torch.where(entering, t, neg_inf).max(-1)
    t_far = torch.where(exiting, t, torch.full_like(t, INF)).min(-1).values
    outside_parallel = (parallel & (dist < 0)).any(-1)
    ok = (t_near <= t_far) & ~outside_parallel & torch.isfinite(t_near)
    n = torch.gather(normals.expand(*t.shape, 3), -2, face[..., None, None].expand(*face.shape, 1, 3))[..., 0, :]
    return _valid(t_near, ok), n, face


def capped_cylinder(o, d, radius, half_height):
    """Closed cylinder around the local y axis, centred at the origin."""
    a = d[..., 0] ** 2 + d[..., 2] ** 2
    b = o[..., 0] * d[..., 0] + o[..., 2] * d[..., 2]
    c = o[..., 0] ** 2 + o[..., 2] ** 2 - radius**2
    disc = b * b - a * c
    t = (-b - torch.sqrt(disc.clamp_min(0))) / a.clamp_min(1e-12)
    y = o[..., 1] + t * d[..., 1]
    side_ok = (disc >= 0) & (y.abs() <= half_height)
    p = o + t[..., None] * d
    n_side = torch.stack([p[..., 0], torch.zeros_like(t), p[..., 2]], -1) / radius[..., None]
    side = (_valid(t, side_ok), n_side)
    return _closest(side, _disk(o, d, radius, half_height, 1.0), _disk(o, d, radius, -half_height, -1.0))


def _disk(o, d, radius, y, facing):
    """Disk of `radius` in the plane at height y, normal (0, facing, 0)."""
    denom = d[..., 1]
    safe = torch.where(denom.abs() < 1e-12, torch.full_like(denom, 1e-12), denom)
    t = (y - o[..., 1]) / safe
    p = o + t[..., None] * d
    ok = (p[..., 0] ** 2 + p[..., 2] ** 2 <= radius**2) & (denom * facing < 0)
    n = torch.zeros_like(o)
    n[..., 1] = facing
    return _valid(t, ok), n


def cone(o, d, radius, half_height):
    """Closed cone around the local y axis: base disk at -h, apex at +h."""
    k2 = (radius / (2 * half_height)) ** 2
    ay = half_height - o[..., 1]  # distance below the apex, along -y
    dy = -d[..., 1]
    qa = d[..., 0] ** 2 + d[..., 2] ** 2 - k2 * dy * dy
    qb = o[..., 0] * d[..., 0] + o[..., 2] * d[..., 2] - k2 * ay * dy
    qc = o[..., 0] ** 2 + o[..., 2] ** 2 - k2 * ay * ay
    disc = qb * qb - qa * qc
    root = torch.sqrt(disc.clamp_min(0))
    safe = torch.where(qa.abs() < 1e-12, torch.full_like(qa, 1e-12), qa)
    best_t = torch.full_like(qa, INF)
    best_n = torch.zeros_like(o)
    for t in ((-qb - root) / safe, (-qb + root) / safe):
        p = o + t[..., None] * d
        below = half_height - p[..., 1]
        ok = (disc >= 0) & (below >= 0) & (below <= 2 * half_height) & (t > EPS) & (t < best_t)
        n = torch.nn.functional.normalize(
            torch.stack([p[..., 0], k2 * below, p[..., 2]], -1), dim=-1)
        best_t = torch.where(ok, t, best_t)
        best_n = torch.where(ok[..., None], n, best_n)
    return _closest((best_t, best_n), _disk(o, d, radius, -half_height, -1.0))
