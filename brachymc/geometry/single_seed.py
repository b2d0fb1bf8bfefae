"""A single seed at the origin (axis = z) in a sphere of one medium, scored on a polar grid.

This is the world of TG-43 source characterisation: the seed's solids are traced exactly, the
surrounding medium (water, or vacuum for the air-kerma strength) fills a sphere of radius
``radius_cm``, and the track-length estimator of collision kerma is scored in bins of
(r, cos theta) bounded by spheres and cones about the seed centre. Bins partition the sphere
between the first and last radial edge; their volumes exclude any part occupied by the seed,
so that the dose in a bin is the energy deposited in the medium divided by the medium's mass.

Stepping uses the next-surface rule: the candidate surfaces are the seed's own surfaces (for
photons inside its bounding sphere), the bounding sphere, the neighbouring radial and conical
bin edges and the outer sphere; the medium of a step is found at its midpoint.
"""

from __future__ import annotations

import numpy as np

from brachymc.errors import GeometryError
from brachymc.geometry.seed import _BIG, SURFACE_EPS, SeedModel
from brachymc.materials import Material, MaterialLibrary


def _sphere_roots(xp, pd_full, p2, radius):
    """Smallest root > eps of |p + t d|^2 = R^2 (radius broadcast), else _BIG."""
    c = p2 - radius * radius
    disc = pd_full * pd_full - c
    ok = disc >= 0
    sq = xp.sqrt(xp.where(ok, disc, 0.0))
    t1 = -pd_full - sq
    t2 = -pd_full + sq
    t = xp.where(ok & (t1 > SURFACE_EPS), t1, xp.where(ok & (t2 > SURFACE_EPS), t2, _BIG))
    return t


def _cone_roots(xp, z, w, p2, pd_full, c):
    """Smallest root > eps of the double cone z^2 = c^2 |p|^2 (c broadcast); plane z = 0 for c = 0."""
    c2 = c * c
    a = w * w - c2
    b = 2.0 * (z * w - c2 * pd_full)
    cc = z * z - c2 * p2
    disc = b * b - 4.0 * a * cc
    ok = disc >= 0
    sq = xp.sqrt(xp.where(ok, disc, 0.0))
    q = -0.5 * (b + xp.where(b >= 0, sq, -sq))
    t1 = xp.where(a != 0, q / xp.where(a != 0, a, 1.0), _BIG)
    t2 = xp.where(q != 0, cc / xp.where(q != 0, q, 1.0), _BIG)
    best = xp.full(z.shape, _BIG)
    for t in (t1, t2):
        best = xp.where(ok & (t > SURFACE_EPS) & (t < best), t, best)
    # plane z = 0 when c = 0 (the quadratic degenerates to a double root)
    tz = xp.where(w != 0, -z / xp.where(w != 0, w, 1.0), _BIG)
    return xp.where(c == 0, xp.where(tz > SURFACE_EPS, tz, _BIG), best)


class SingleSeedWorld:
    """One seed in a sphere of ``medium`` (None: vacuum) with polar scoring bins.

    Args:
        model: the seed model (centred at the origin, axis along z).
        library: material library resolving the seed's materials.
        medium: surrounding material, or None for vacuum (air at zero density).
        radius_cm: radius of the medium sphere (photons leaving it escape).
        r_edges: radial bin edges (cm, ascending); cos_edges: cos(theta) bin edges from -1 to 1.
        backend: array backend.
    """

    def __init__(self, model: SeedModel, library: MaterialLibrary, medium: Material | None, radius_cm: float,
                 r_edges, cos_edges, backend, volume_samples: int = 4_000_000):
        xp = backend.xp
        self.model = model
        self.vacuum = medium is None
        med = library["air"] if medium is None else medium
        mats = [med]
        for s in model.solids:
            m = library[s.material]
            if m not in mats:
                mats.append(m)
        self.materials = tuple(mats)
        self.radius = float(radius_cm)
        zlo, zhi, rs = model.bounds()
        self.seed_radius = float(np.sqrt(max(zlo * zlo, zhi * zhi) + rs * rs)) * (1 + 1e-9) + 1e-7
        if self.radius <= self.seed_radius:
            raise GeometryError(f"world radius {radius_cm} cm does not enclose the seed ({self.seed_radius:.4f} cm)")
        self.r_edges = np.asarray(r_edges, float)
        self.cos_edges = np.asarray(cos_edges, float)
        if np.any(np.diff(self.r_edges) <= 0) or self.r_edges[-1] > self.radius or self.r_edges[0] < 0:
            raise GeometryError("radial bin edges must increase and lie inside the world sphere")
        if self.cos_edges[0] != -1.0 or self.cos_edges[-1] != 1.0 or np.any(np.diff(self.cos_edges) <= 0):
            raise GeometryError("cos(theta) edges must increase from -1 to 1")
        self.n_r, self.n_c = self.r_edges.size - 1, self.cos_edges.size - 1
        self.n_scores = self.n_r * self.n_c
        self.score_shape = (self.n_r, self.n_c)
        spheres = np.unique(np.concatenate([self.r_edges[self.r_edges > 0], [self.seed_radius, self.radius]]))
        self._spheres = xp.asarray(spheres)
        self._cones = xp.asarray(self.cos_edges[1:-1])
        self._r_edges = xp.asarray(self.r_edges)
        self._cos_edges = xp.asarray(self.cos_edges)
        self._solid_mat = xp.asarray([mats.index(library[s.material]) for s in model.solids], dtype=xp.int64)
        self._solid_rho = xp.asarray([library[s.material].density for s in model.solids], dtype=xp.float64)
        self.medium_density = 0.0 if self.vacuum else float(med.density)
        self.score_volume = self._bin_volumes(volume_samples)
        self.score_density = xp.full(self.n_scores, self.medium_density)

    # ---- bins --------------------------------------------------------------------------------
    def _bin_volumes(self, n_samples: int) -> np.ndarray:
        """Medium volume (cm3) of each (r, cos) bin: analytic shell-cone volume minus the seed's part."""
        r3 = self.r_edges**3
        v = (2.0 * np.pi / 3.0) * np.diff(r3)[:, None] * np.diff(self.cos_edges)[None, :]
        zlo, zhi, rs = self.model.bounds()
        if self.r_edges[0] < self.seed_radius:
            rng = np.random.default_rng(12345)
            z = zlo + (zhi - zlo) * rng.random(n_samples)
            rr = rs * np.sqrt(rng.random(n_samples))
            in_seed = self.model.locate(np, z, rr * rr) >= 0
            r = np.sqrt(z * z + rr * rr)
            c = np.where(r > 0, z / np.where(r > 0, r, 1.0), 1.0)
            ir = np.searchsorted(self.r_edges, r, side="right") - 1
            ic = np.clip(np.searchsorted(self.cos_edges, c, side="right") - 1, 0, self.n_c - 1)
            ok = in_seed & (ir >= 0) & (ir < self.n_r)
            cyl = np.pi * rs * rs * (zhi - zlo)
            occupied = np.bincount(ir[ok] * self.n_c + ic[ok], minlength=self.n_scores) * cyl / n_samples
            v = v - occupied.reshape(v.shape)
        # bins (almost) entirely inside the seed score nothing: infinite volume -> zero dose
        full = v <= 1e-9 * np.diff(r3)[:, None] * np.diff(self.cos_edges)[None, :]
        self.empty_bins = np.argwhere(full)
        return np.where(full, np.inf, v)

    def bin_index(self, xp, pos):
        r = xp.sqrt(xp.sum(pos * pos, axis=0))
        c = xp.where(r > 0, pos[2] / xp.where(r > 0, r, 1.0), 1.0)
        ir = xp.searchsorted(self._r_edges, r, side="right") - 1
        ic = xp.clip(xp.searchsorted(self._cos_edges, c, side="right") - 1, 0, self.n_c - 1)
        return xp.where((ir >= 0) & (ir < self.n_r), ir * self.n_c + ic, -1)

    # ---- world interface ---------------------------------------------------------------------
    def check_source(self, source) -> None:
        pts = source.bounding_points()
        if np.any(np.linalg.norm(pts, axis=1) > self.seed_radius):
            raise GeometryError("the seed world expects its seed source at the origin along z")

    def init_state(self, xp, pos, tag=None) -> dict:
        return {}

    def geometry_step(self, xp, b):
        pos, d = b["pos"], b["dir"]
        p2 = xp.sum(pos * pos, axis=0)
        pdf = xp.sum(pos * d, axis=0)
        z, w = pos[2], d[2]
        r = xp.sqrt(p2)
        # neighbouring spheres
        ns = self._spheres.shape[0]
        i = xp.searchsorted(self._spheres, r)
        t = xp.full(r.shape, _BIG)
        for k in (-1, 0, 1):
            rad = self._spheres[xp.clip(i + k, 0, ns - 1)]
            t = xp.minimum(t, _sphere_roots(xp, pdf, p2, rad))
        # neighbouring cones
        nc = self._cones.shape[0]
        if nc:
            c = xp.where(r > 0, z / xp.where(r > 0, r, 1.0), 1.0)
            j = xp.searchsorted(self._cones, c)
            for k in (-1, 0, 1):
                cc = self._cones[xp.clip(j + k, 0, nc - 1)]
                t = xp.minimum(t, _cone_roots(xp, z, w, p2, pdf, cc))
        # the seed's own surfaces, for photons inside its bounding sphere
        near = p2 < self.seed_radius * self.seed_radius
        if bool(near.any()):
            r2 = xp.maximum(p2 - z * z, 0.0)
            t_seed = self.model.distance_to_surface(xp, z, r2, w, pdf - z * w)
            t = xp.where(near, xp.minimum(t, t_seed), t)
        # medium on the step, from its midpoint
        mid = pos + d * (t * 0.5)
        m2 = xp.sum(mid * mid, axis=0)
        loc = xp.full(r.shape, -1, dtype=xp.int32)
        in_sphere = m2 < self.seed_radius * self.seed_radius
        if bool(in_sphere.any()):
            zm = mid[2]
            loc = xp.where(in_sphere, self.model.locate(xp, zm, xp.maximum(m2 - zm * zm, 0.0)), -1)
        in_seed = loc >= 0
        li = xp.clip(loc, 0, None)
        m = xp.where(in_seed, self._solid_mat[li], 0)
        rho = xp.where(in_seed, self._solid_rho[li], self.medium_density)
        sidx = xp.where(in_seed, -1, self.bin_index(xp, mid))
        return t, m, rho, sidx, None

    def cross(self, xp, b, crossing, ctx):
        pos, d = b["pos"], b["dir"]
        out = crossing & (xp.sum(pos * pos, axis=0) >= self.radius * self.radius * (1 - 1e-12)) & (
            xp.sum(pos * d, axis=0) > 0)
        return ~out
