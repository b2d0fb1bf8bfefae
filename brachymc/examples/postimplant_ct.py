"""A post-implant CT simulator with known seeds: the spine anatomy, true-size seeds and a pedicle
screw, imaged by forward projection and filtered back-projection.

Use it to test the seed finder (:mod:`brachymc.seedfinder`) on images whose truth is known, with
your own slice thickness, pixel size, dose (noise) and implant geometry::

    from brachymc.examples.postimplant_ct import ScanSettings, make_implant, simulate_postimplant_ct
    implant = make_implant(40, rng=np.random.default_rng(1))
    sim = simulate_postimplant_ct(implant, ScanSettings(slice_mm=2.5, pixel_mm=0.8))
    sim.ct            # CTVolume (HU, cm, DICOM LPS), sim.seeds_mm / sim.directions: the truth

Image formation, slice by slice (parallel-beam geometry, ``n_views`` over 180 degrees, detector
bins of ``detector_mm`` at the isocentre):

1. **Objects**: the anatomy of :mod:`brachymc.examples.spine` as water-equivalent attenuation
   (mu = mu_water(E) x (1 + HU/1000)); each seed as its real solids from ``configs/seeds`` (the
   6711: titanium tube and end welds, silver rod with its silver-halide coating, air) sampled on
   a 0.1 mm grid in the seed's frame; a pedicle screw as a titanium cylinder with a head.
2. **Projections**: line integrals per material (water-equivalent path of the anatomy on a
   2 mm grid; seed and screw path lengths by pixel-driven projection of their samples), in
   sub-slices <= 0.25 mm thick across a trapezoidal slice profile whose FWHM is the slice
   thickness.
3. **Measurement**: polychromatic transmission of a 120 kVp tungsten spectrum (Kramers,
   7 mm Al; energy-integrating detector), averaged over the slice profile *in intensity* (the
   exponential edge-gradient effect), Poisson counts (``photons_per_ray`` per mm of slice; a
   zero count is read as half a photon), a water beam-hardening correction (each measured
   transmission mapped to the water thickness that gives it). Beam hardening, photon starvation
   and partial-volume non-linearity are what make the bright/dark streaks and the blooming of
   metal.
4. **Reconstruction**: Ram-Lak filter with a Hann window, linear-interpolation back-projection
   onto the pixel centres. By linearity, FBP(measured) = FBP(anatomy) + FBP(measured - anatomy);
   the first term is the anatomy blurred with the system's point-spread function (computed by
   reconstructing a point), the second - metal, streaks and noise - is back-projected onto the
   pixels within ``roi_margin_mm`` of any metal. Outside that box the image is the blurred
   anatomy plus noise of the same standard deviation and texture (the PSF-filtered white noise).
5. **HU** = 1000 (mu / mu_water - 1) with the spectrum's water attenuation; clipped to
   [-1024, 3071] like a 12-bit scanner, or to [-1024, 64511] with ``extended_hu``.

What is left out, knowingly: fan/cone-beam and helical geometry (their streak patterns differ in
detail, not in kind), scatter, bone's own beam hardening (the anatomy is water-equivalent), and
detector crosstalk. The simulator is deterministic for a given ``ScanSettings.seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from brachymc.examples.spine import SEED_RADIUS_MM, _anatomy, _gtv
from brachymc.geometry.ct import CTVolume
from brachymc.geometry.phantom import GridGeometry
from brachymc.geometry.seed import SeedModel, load_builtin_seed, orthonormal_frame
from brachymc.materials import MaterialLibrary, default_library

#: capsule radius (mm) and the distance between the centres of its end hemispheres (6711-type)
CAPSULE_RADIUS_MM = SEED_RADIUS_MM
MIN_CAPSULE_GAP_MM = 0.02


# ----------------------------------------------------------------------------------------------
# the implant
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Screw:
    """A pedicle screw: a titanium shaft from ``tip_mm`` to ``entry_mm`` and a head beyond the entry."""

    tip_mm: tuple[float, float, float]
    entry_mm: tuple[float, float, float]
    diameter_mm: float = 6.5
    head_diameter_mm: float = 10.0
    head_length_mm: float = 10.0
    material: str = "titanium"

    def axis(self) -> np.ndarray:
        d = np.asarray(self.entry_mm, float) - np.asarray(self.tip_mm, float)
        return d / np.linalg.norm(d)

    def distance_mm(self, points: np.ndarray) -> np.ndarray:
        """Distance of points (n, 3) mm from the screw's axis segment (tip to the end of the head)."""
        a = np.asarray(self.tip_mm, float)
        b = np.asarray(self.entry_mm, float) + self.head_length_mm * self.axis()
        return _point_segment_distance(np.atleast_2d(points), a, b)


@dataclass(frozen=True)
class Implant:
    """Known seeds (centres mm, unit axes) with a label each (isolated, track, pair, chain, clump)
    and an optional screw."""

    seeds_mm: np.ndarray
    directions: np.ndarray
    labels: tuple[str, ...]
    screw: Screw | None = None
    model: str = "oncoseed_6711"

    @property
    def n_seeds(self) -> int:
        return len(self.seeds_mm)


def _point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def _segment_distance(p1, d1, p2, d2, h: float) -> float:
    """Smallest distance between the segments p_i +- h d_i (unit d_i), by dense sampling + refinement."""
    t = np.linspace(-h, h, 41)
    a = p1[None, :] + t[:, None] * d1[None, :]
    b = p2[None, :] + t[:, None] * d2[None, :]
    return float(np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1).min()))


def _random_direction(rng) -> np.ndarray:
    c = 2 * rng.random() - 1
    phi = 2 * np.pi * rng.random()
    s = np.sqrt(1 - c * c)
    return np.array([s * np.cos(phi), s * np.sin(phi), c])


def _in_target_region(p: np.ndarray) -> bool:
    """Inside the GTV dilated by 2 mm, outside the spinal canal + 2 mm."""
    x, y, z = (np.array([v]) for v in p)
    if ((x / 13.0) ** 2 + ((y - 52.0) / 11.0) ** 2)[0] <= 1.0:
        return False
    for o in ((0, 0, 0), (2, 0, 0), (-2, 0, 0), (0, 2, 0), (0, -2, 0), (0, 0, 2), (0, 0, -2)):
        if _gtv(x + o[0], y + o[1], z + o[2])[0]:
            return True
    return False


class _Layout:
    """Seeds placed one group at a time; every capsule keeps a gap from the others and the screw."""

    def __init__(self, half_axis_mm: float, screw: Screw | None):
        self.h = half_axis_mm            # centre to the centre of an end hemisphere
        self.p: list[np.ndarray] = []
        self.d: list[np.ndarray] = []
        self.labels: list[str] = []
        self.screw = screw

    def fits(self, pts, dirs) -> bool:
        for p, d in zip(pts, dirs):
            if not _in_target_region(p):
                return False
            if self.screw is not None and self.screw.distance_mm(p[None])[0] < self.screw.diameter_mm / 2 + 4.0:
                return False
            for q, e in zip(self.p, self.d):
                if np.linalg.norm(p - q) < 2 * self.h + 2 * CAPSULE_RADIUS_MM + 0.1 and \
                        _segment_distance(p, d, q, e, self.h) < 2 * CAPSULE_RADIUS_MM + MIN_CAPSULE_GAP_MM:
                    return False
        for i in range(len(pts)):
            for j in range(i):
                if _segment_distance(pts[i], dirs[i], pts[j], dirs[j], self.h) < 2 * CAPSULE_RADIUS_MM + MIN_CAPSULE_GAP_MM:
                    return False
        return True

    def add(self, pts, dirs, label) -> bool:
        if not self.fits(pts, dirs):
            return False
        self.p.extend(pts)
        self.d.extend(d / np.linalg.norm(d) for d in dirs)
        self.labels.extend([label] * len(pts))
        return True


def _needles(rng, n: int):
    """Posterolateral needle tracks through the target, tips anteromedial (as in the spine case)."""
    out = []
    for k in range(n):
        side = 1 if k % 3 != 2 else -1
        a = np.radians(rng.uniform(15, 35))
        tilt = np.radians(rng.uniform(-15, 15))
        d = np.array([-side * np.sin(a) * np.cos(tilt), -np.cos(a) * np.cos(tilt), np.sin(tilt)])
        p0 = np.array([rng.uniform(-8, 30), rng.uniform(18, 36), rng.uniform(-11, 11)])
        out.append((p0, d / np.linalg.norm(d)))
    return out


def make_implant(n_seeds: int, rng: np.random.Generator | None = None, *, pairs: int = 1, chains: int = 1,
                 clumps: int = 1, random_fraction: float = 0.25, screw: bool = False,
                 model: str = "oncoseed_6711", spacing_mm: tuple[float, float] = (5.5, 10.0)) -> Implant:
    """Seeds in the spine case's GTV: ``pairs`` touching side-by-side pairs, ``chains`` end-to-end
    chains of 3 with 0.1-0.9 mm gaps, ``clumps`` 3-seed clumps of random orientations, a
    ``random_fraction`` of isolated seeds with random axes, the rest on needle tracks
    ``spacing_mm`` apart; capsules never overlap. ``screw`` adds a pedicle screw in the right
    pedicle of the involved vertebra (seeds keep 4 mm from it)."""
    rng = rng or np.random.default_rng(0)
    sm = load_builtin_seed(model, default_library())
    zlo, zhi, rs = sm.bounds()
    length = 10 * (zhi - zlo)
    h = length / 2 - CAPSULE_RADIUS_MM
    sc = None
    if screw:
        a = np.radians(25.0)
        d = np.array([np.sin(a), -np.cos(a), 0.0])            # right side (x < 0), pointing anteromedially
        entry = np.array([-19.0, 54.0, 0.0])
        sc = Screw(tip_mm=tuple(entry + 40.0 * d), entry_mm=tuple(entry))
    lay = _Layout(h, sc)

    def attempt(fn, tries=400):
        for _ in range(tries):
            if fn():
                return True
        return False

    def pair():
        c, d = _random_point(rng), _random_direction(rng)
        e1, _, _ = orthonormal_frame(d)
        gap = rng.uniform(0.0, 0.15)
        off = (CAPSULE_RADIUS_MM + MIN_CAPSULE_GAP_MM / 2 + gap / 2) * e1
        shift = rng.uniform(-1.0, 1.0) * d
        return lay.add([c - off, c + off + shift], [d, d], "pair")

    def chain():
        c, d = _random_point(rng), _random_direction(rng)
        gaps = rng.uniform(0.1, 0.9, 2)
        step = [length + gaps[0], length + gaps[1]]
        pts = [c - step[0] * d, c, c + step[1] * d]
        return lay.add(pts, [d, d, d], "chain")

    def clump():
        c = _random_point(rng)
        pts, dirs = [], []
        for _ in range(3):
            pts.append(c + rng.normal(0, 1.3, 3))
            dirs.append(_random_direction(rng))
        return lay.add(pts, dirs, "clump")

    groups = [pair] * pairs + [chain] * chains + [clump] * clumps
    for g in groups:
        if len(lay.p) + 3 > n_seeds:
            break
        attempt(g)
    n_random = int(round(random_fraction * n_seeds))
    for _ in range(n_random):
        if len(lay.p) >= n_seeds:
            break
        attempt(lambda: lay.add([_random_point(rng)], [_random_direction(rng)], "isolated"))
    for _ in range(200):
        if len(lay.p) >= n_seeds:
            break
        (p0, d), = _needles(rng, 1)
        t = -30.0
        while t < 30.0 and len(lay.p) < n_seeds:
            p = p0 + t * d
            wobble = d + rng.normal(0, 0.05, 3)
            if lay.add([p], [wobble], "track"):
                t += rng.uniform(*spacing_mm)
            else:
                t += 1.0
    while len(lay.p) < n_seeds:          # fill up with isolated seeds where the needles did not reach
        if not attempt(lambda: lay.add([_random_point(rng)], [_random_direction(rng)], "isolated"), 2000):
            break
    return Implant(np.array(lay.p), np.array(lay.d), tuple(lay.labels), sc, model)


def _random_point(rng) -> np.ndarray:
    return np.array([rng.uniform(-14, 38), rng.uniform(12, 46), rng.uniform(-13, 13)])


# ----------------------------------------------------------------------------------------------
# the scanner
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScanSettings:
    """CT acquisition and reconstruction.

    ``slice_mm`` is the nominal thickness (FWHM of the slice profile) and the slice spacing;
    ``photons_per_ray`` the unattenuated photons per detector bin and view for 1 mm of slice
    (the counts scale with the slice thickness); ``recon_center_mm``/``recon_fov_mm`` the
    reconstructed field (x, y) and ``z_range_mm`` the scanned length.
    """

    pixel_mm: float = 0.8
    slice_mm: float = 2.5
    n_views: int = 360
    detector_mm: float | None = None          # default: pixel_mm / 1.6
    kvp: float = 120.0
    filtration_mm_al: float = 7.0
    photons_per_ray: float = 1.6e5
    extended_hu: bool = False
    recon_center_mm: tuple[float, float] = (0.0, 0.0)
    recon_fov_mm: tuple[float, float] = (240.0, 200.0)
    z_range_mm: tuple[float, float] = (-20.0, 20.0)
    roi_margin_mm: float = 25.0
    seed: int = 0

    @property
    def detector_bin_mm(self) -> float:
        return self.detector_mm if self.detector_mm else self.pixel_mm / 1.6


@dataclass(frozen=True)
class SimulatedCT:
    """A simulated post-implant CT and its truth."""

    ct: CTVolume
    implant: Implant
    masks: dict
    scan: ScanSettings
    notes: dict = field(default_factory=dict)
    #: the same scan without metal and without noise (HU, float32; ``keep_anatomy=True``): the
    #: background a seed finder should fill in under the seeds
    anatomy_hu: np.ndarray | None = None

    @property
    def seeds_mm(self) -> np.ndarray:
        return self.implant.seeds_mm

    @property
    def directions(self) -> np.ndarray:
        return self.implant.directions


def _mu_per_mm(material, energies_kev: np.ndarray) -> np.ndarray:
    """Linear attenuation (1/mm) of a material at its nominal density (xraylib total cross sections)."""
    import xraylib

    mu_rho = np.zeros(len(energies_kev))
    for z, w in material.mass_fractions:
        mu_rho += w * np.array([xraylib.CS_Total(int(z), float(e)) for e in energies_kev])
    return mu_rho * material.density / 10.0


def _spectrum(kvp: float, al_mm: float, library: MaterialLibrary) -> tuple[np.ndarray, np.ndarray]:
    """Energy bins (keV) and energy-integrating detector weights of a Kramers tungsten spectrum."""
    e = np.arange(17.5, kvp, 5.0)
    phi = (kvp - e) / e
    import xraylib

    mu_al = np.array([xraylib.CS_Total(13, float(x)) for x in e]) * 2.699 / 10.0     # aluminium, 1/mm
    phi = phi * np.exp(-mu_al * al_mm)
    w = e * phi
    return e, w / w.sum()


class _Projector:
    """Parallel-beam projector / FBP on a detector of ``nb`` bins of ``ds`` mm, ``n_views`` over pi."""

    def __init__(self, n_views: int, ds: float, half_width_mm: float):
        self.theta = np.arange(n_views) * np.pi / n_views
        self.cos, self.sin = np.cos(self.theta), np.sin(self.theta)
        self.ds = ds
        self.nb = int(np.ceil(2 * half_width_mm / ds)) + 4
        self.u0 = -(self.nb - 1) / 2 * ds
        n = 1
        while n < 2 * self.nb:
            n *= 2
        self.nfft = n
        k = np.arange(-self.nb + 1, self.nb)
        h = np.zeros(len(k))
        h[k == 0] = 1.0 / (4 * ds * ds)
        odd = k % 2 == 1
        h[odd] = -1.0 / (np.pi * k[odd] * ds) ** 2
        hk = np.zeros(n)
        hk[:len(k)] = h
        hk = np.roll(hk, -(self.nb - 1))
        freq = np.fft.rfftfreq(n)
        window = 0.5 * (1 + np.cos(2 * np.pi * freq))        # Hann, 1 at 0, 0 at Nyquist
        self.filter = np.fft.rfft(hk).real * window * ds

    def project(self, xy: np.ndarray, values: np.ndarray, ds: float | None = None) -> np.ndarray:
        """Pixel-driven projection of point masses (values in mm^2 x attenuation) -> (views, bins)."""
        ds = ds or self.ds
        nb = self.nb if ds == self.ds else int(np.ceil((self.nb * self.ds) / ds)) + 2
        u0 = -(nb - 1) / 2 * ds
        nv = len(self.theta)
        out = np.zeros(nv * nb)
        if len(values) == 0:
            return out.reshape(nv, nb)
        chunk = max(1, int(4e6 // max(len(values), 1)))
        for v0 in range(0, nv, chunk):
            v1 = min(nv, v0 + chunk)
            s = xy[:, 0][None, :] * self.cos[v0:v1, None] + xy[:, 1][None, :] * self.sin[v0:v1, None]
            j = (s - u0) / ds
            j0 = np.floor(j).astype(np.int64)
            w = j - j0
            ok = (j0 >= 0) & (j0 < nb - 1)
            base = (np.arange(v0, v1) * nb)[:, None]
            val = np.broadcast_to(values[None, :] / ds, s.shape)
            idx = (base + j0)[ok]
            out += np.bincount(idx, (val * (1 - w))[ok], minlength=nv * nb)
            out += np.bincount(idx + 1, (val * w)[ok], minlength=nv * nb)
        return out.reshape(nv, nb)

    def bins(self, ds: float | None = None) -> np.ndarray:
        ds = ds or self.ds
        nb = self.nb if ds == self.ds else int(np.ceil((self.nb * self.ds) / ds)) + 2
        return -(nb - 1) / 2 * ds + np.arange(nb) * ds

    def filtered(self, sino: np.ndarray) -> np.ndarray:
        f = np.fft.rfft(sino, n=self.nfft, axis=1) * self.filter[None, :]
        return np.fft.irfft(f, n=self.nfft, axis=1)[:, :self.nb]

    def backproject(self, q: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Back-project filtered projections onto points (x, y) mm (linear interpolation)."""
        out = np.zeros(x.shape)
        xf, yf = x.ravel(), y.ravel()
        acc = np.zeros(xf.shape)
        for v in range(len(self.theta)):
            j = (xf * self.cos[v] + yf * self.sin[v] - self.u0) / self.ds
            j0 = np.clip(np.floor(j).astype(np.int64), 0, self.nb - 2)
            w = j - j0
            qv = q[v]
            acc += qv[j0] * (1 - w) + qv[j0 + 1] * w
        out[...] = (acc * np.pi / len(self.theta)).reshape(x.shape)
        return out

    def psf_sigma_mm(self) -> float:
        """Standard deviation of the reconstructed point (Gaussian with the same FWHM), mm."""
        p = self.project(np.array([[0.013, -0.021]]), np.array([1.0]))
        q = self.filtered(p)
        r = np.linspace(-3 * self.ds * 4, 3 * self.ds * 4, 241)
        prof = self.backproject(q, r + 0.013, np.full_like(r, -0.021))
        half = prof.max() / 2
        above = r[prof >= half]
        fwhm = above.max() - above.min() + (r[1] - r[0])
        return float(fwhm / 2.3548)


def _seed_samples(model: SeedModel, centers_mm, dirs, library, spacing_mm=0.1):
    """Sample points (n, 3) mm and (material name, volume mm^3) per point of each seed's solids."""
    zlo, zhi, rs = (10 * v for v in model.bounds())
    g = np.arange(-rs + spacing_mm / 2, rs, spacing_mm)
    gz = np.arange(zlo + spacing_mm / 2, zhi, spacing_mm)
    X, Y, Z = np.meshgrid(g, g, gz, indexing="ij")
    X, Y, Z = X.ravel(), Y.ravel(), Z.ravel()
    where = model.locate(np, Z / 10.0, (X * X + Y * Y) / 100.0)
    keep = where >= 0
    X, Y, Z, where = X[keep], Y[keep], Z[keep], where[keep]
    mats = np.array([s.material for s in model.solids])[where]
    pts, names = [], []
    for c, d in zip(np.asarray(centers_mm, float), np.asarray(dirs, float)):
        e1, e2, a = orthonormal_frame(d)
        pts.append(c + np.outer(X, e1) + np.outer(Y, e2) + np.outer(Z, a))
        names.append(mats)
    vol = spacing_mm ** 3
    if not pts:
        return np.zeros((0, 3)), np.zeros(0, dtype="<U1"), vol
    return np.concatenate(pts), np.concatenate(names), vol


def _screw_samples(screw: Screw, spacing_mm=0.25):
    a = np.asarray(screw.tip_mm, float)
    axis = screw.axis()
    shaft = float(np.linalg.norm(np.asarray(screw.entry_mm) - a))
    rmax = screw.head_diameter_mm / 2
    g = np.arange(-rmax + spacing_mm / 2, rmax, spacing_mm)
    t = np.arange(spacing_mm / 2, shaft + screw.head_length_mm, spacing_mm)
    X, Y, T = np.meshgrid(g, g, t, indexing="ij")
    X, Y, T = X.ravel(), Y.ravel(), T.ravel()
    r2 = X * X + Y * Y
    # threads: the shaft's radius oscillates +-0.5 mm with a 2.5 mm pitch; a 1 mm tapered tip
    r_shaft = screw.diameter_mm / 2 - 0.5 * (1 + np.sin(2 * np.pi * T / 2.5 + np.arctan2(Y, X))) / 2
    r_shaft = np.minimum(r_shaft, screw.diameter_mm / 2 * np.minimum(1.0, 0.3 + T / 4.0))
    inside = np.where(T <= shaft, r2 <= r_shaft ** 2, r2 <= rmax ** 2)
    e1, e2, _ = orthonormal_frame(axis)
    pts = a + np.outer(X[inside], e1) + np.outer(Y[inside], e2) + np.outer(T[inside], axis)
    return pts, spacing_mm ** 3


def _slice_profile(z0: float, thickness: float, h_max: float = 0.25) -> tuple[np.ndarray, np.ndarray, float]:
    """Sub-slice centres and weights of a trapezoidal profile (FWHM = thickness, ramps 0.25 x thickness)."""
    half = 0.625 * thickness
    n = max(3, int(np.ceil(2 * half / h_max)))
    h = 2 * half / n
    z = z0 - half + (np.arange(n) + 0.5) * h
    a = np.abs(z - z0)
    w = np.clip((half - a) / (0.25 * thickness), 0.0, 1.0)
    return z, w / w.sum(), h


def simulate_postimplant_ct(implant: Implant, scan: ScanSettings = ScanSettings(),
                            library: MaterialLibrary | None = None, keep_anatomy: bool = False) -> SimulatedCT:
    """Image ``implant`` in the spine anatomy (see the module docstring); returns the CT and its truth
    (with ``keep_anatomy`` also the metal-free, noiseless image, :attr:`SimulatedCT.anatomy_hu`)."""
    library = library or default_library()
    rng = np.random.default_rng(scan.seed)
    model = load_builtin_seed(implant.model, library)
    px, T = float(scan.pixel_mm), float(scan.slice_mm)
    cx, cy = scan.recon_center_mm
    nx, ny = int(round(scan.recon_fov_mm[0] / px)), int(round(scan.recon_fov_mm[1] / px))
    z0, z1 = scan.z_range_mm
    nz = max(1, int(round((z1 - z0) / T)))
    geom = GridGeometry(shape=(nz, ny, nx), spacing=(px / 10, px / 10, T / 10),
                        origin=((cx - nx * px / 2) / 10, (cy - ny * px / 2) / 10, z0 / 10))
    xc, yc, zc = (10 * geom.centers(a) for a in range(3))

    # spectrum and attenuation
    energies, weights = _spectrum(scan.kvp, scan.filtration_mm_al, library)
    mu_w = _mu_per_mm(library["water"], energies)
    mu_ref = float(weights @ mu_w)                          # water at L -> 0 (the HU reference)
    metal_names = sorted(set(s.material for s in model.solids if s.material != "air")
                         | ({implant.screw.material} if implant.screw else set()))
    mu_m = {m: _mu_per_mm(library[m], energies) for m in metal_names}
    # water transmission curve and its inverse (water beam-hardening correction)
    lw_grid = np.linspace(0.0, 1200.0, 2401)
    tw_grid = np.exp(-np.outer(lw_grid, mu_w)) @ weights

    def water_thickness(t):
        lt = -np.log(np.clip(t, 1e-300, 1.0))
        return np.interp(lt, -np.log(tw_grid), lw_grid)

    # metal samples
    sp, sname, svol = _seed_samples(model, implant.seeds_mm, implant.directions, library)
    sp_keep = sname != "air"
    sp, sname = sp[sp_keep], sname[sp_keep]
    svols = np.full(len(sp), svol)
    if implant.screw is not None:
        wp, wvol = _screw_samples(implant.screw)
        sp = np.concatenate([sp, wp])
        sname = np.concatenate([sname, np.full(len(wp), implant.screw.material)])
        svols = np.concatenate([svols, np.full(len(wp), wvol)])
    mat_index = {m: i for i, m in enumerate(metal_names)}
    sidx = np.array([mat_index[m] for m in sname], dtype=np.int64)

    half_width = 0.5 * float(np.hypot(230.0 + 2 * abs(cx), 190.0 + 2 * abs(cy))) + 10.0
    proj = _Projector(scan.n_views, scan.detector_bin_mm, half_width)
    sigma_psf = proj.psf_sigma_mm()
    u_fine = proj.bins()
    ds_coarse = 2.0
    u_coarse = proj.bins(ds_coarse)

    # coarse anatomy grid for the projections (full body)
    ga = np.arange(-120.0 + 1.0, 120.0, 2.0)
    gb = np.arange(-100.0 + 1.0, 100.0, 2.0)
    AY, AX = np.meshgrid(gb, ga, indexing="ij")

    # ROI: pixels within roi_margin of metal, as a box in x, y
    if len(sp):
        lo = sp[:, :2].min(0) - scan.roi_margin_mm
        hi = sp[:, :2].max(0) + scan.roi_margin_mm
    else:
        lo = hi = np.array([cx, cy])
    ix0, ix1 = np.searchsorted(xc, lo[0]), np.searchsorted(xc, hi[0])
    iy0, iy1 = np.searchsorted(yc, lo[1]), np.searchsorted(yc, hi[1])
    RY, RX = np.meshgrid(yc[iy0:iy1], xc[ix0:ix1], indexing="ij")

    # fine anatomy sampling (3 x 3 per pixel) for the blurred anatomy image
    sub = (np.arange(3) - 1) / 3.0 * px
    fx = (xc[:, None] + sub[None, :]).ravel()
    fy = (yc[:, None] + sub[None, :]).ravel()
    FY, FX = np.meshgrid(fy, fx, indexing="ij")
    sig_fine = sigma_psf / (px / 3.0)

    hu_out = np.zeros((nz, ny, nx), np.float32)
    anatomy_out = np.zeros((nz, ny, nx), np.float32) if keep_anatomy else None
    noise_std = []
    masks = {k: np.zeros((nz, ny, nx), bool) for k in ("Body", "Vertebra", "SpinalCord", "GTV")}
    for k, z in enumerate(zc):
        zs, ws, h = _slice_profile(float(z), T)
        # anatomy image: profile-weighted over 3 planes (thin slices) to 5 (thick ones)
        nzp = 3 if T <= 1.5 else 5
        zp = z + (np.arange(nzp) - (nzp - 1) / 2) * (T / nzp)
        img = np.zeros(FX.shape)
        for zz in zp:
            hu_a, _ = _anatomy(FX, FY, np.full(FX.shape, zz))
            g = _gtv(FX, FY, np.full(FX.shape, zz))
            hu_a[g] = 40.0
            img += hu_a / nzp
        img = ndimage.gaussian_filter(img, sig_fine, mode="nearest")
        hu_anat = img[1::3, 1::3]
        if anatomy_out is not None:
            anatomy_out[k] = hu_anat
        xx, yy = np.meshgrid(xc, yc, indexing="xy")
        hu_m, m = _anatomy(xx, yy, np.full(xx.shape, z))
        for name in ("Body", "Vertebra", "SpinalCord"):
            masks[name][k] = m[name]
        masks["GTV"][k] = _gtv(xx, yy, np.full(xx.shape, z))

        # water-equivalent path of the anatomy (slice centre), on the fine detector
        hu_c, _ = _anatomy(AX, AY, np.full(AX.shape, z))
        rel = np.clip(1.0 + hu_c / 1000.0, 0.0, None) * 4.0            # x pixel area 4 mm^2
        lw_c = proj.project(np.column_stack([AX.ravel(), AY.ravel()]), rel.ravel(), ds_coarse)
        lw = np.array([np.interp(u_fine, u_coarse, row) for row in lw_c])

        # metal line integrals per sub-slice; intensity averaged over the profile
        t_slice = np.zeros_like(lw)
        tw = np.interp(lw, lw_grid, tw_grid)
        for zsub, wsub in zip(zs, ws):
            sel = np.abs(sp[:, 2] - zsub) < h / 2 if len(sp) else np.zeros(0, bool)
            if not np.any(sel):
                t_slice += wsub * tw
                continue
            lm = np.zeros((len(metal_names),) + lw.shape)
            for mi in range(len(metal_names)):
                s2 = sel & (sidx == mi)
                if np.any(s2):
                    lm[mi] = proj.project(sp[s2, :2], svols[s2] / h)
            hit = np.any(lm > 0, axis=0)
            t = tw.copy()
            if np.any(hit):
                att = np.outer(lw[hit], mu_w)
                for mi, m in enumerate(metal_names):
                    att += np.outer(lm[mi][hit], mu_m[m])
                t[hit] = np.exp(-att) @ weights
            t_slice += wsub * t
        n0 = scan.photons_per_ray * T
        counts = rng.poisson(n0 * t_slice).astype(float)
        counts = np.maximum(counts, 0.5)
        p_meas = mu_ref * water_thickness(counts / n0)
        err = p_meas - mu_ref * lw
        q = proj.filtered(err)
        d_mu = proj.backproject(q, RX, RY)
        d_hu = 1000.0 * d_mu / mu_ref
        sl = hu_anat.copy()
        # noise outside the ROI: PSF-filtered white noise with the ROI's standard deviation far from metal
        far = np.ones(RX.shape, bool)
        if len(sp):
            near_pts = sp[np.abs(sp[:, 2] - z) < T][:, :2]
            if len(near_pts):
                step = max(1, len(near_pts) // 2000)
                for pxy in near_pts[::step]:
                    far &= (RX - pxy[0]) ** 2 + (RY - pxy[1]) ** 2 > 20.0 ** 2
        sd = float(np.std(d_hu[far])) if far.sum() > 100 else float(np.std(d_hu))
        noise_std.append(sd)
        white = ndimage.gaussian_filter(rng.standard_normal((ny, nx)), sigma_psf / px)
        white *= sd / max(float(np.std(white)), 1e-12)
        sl += white
        sl[iy0:iy1, ix0:ix1] = hu_anat[iy0:iy1, ix0:ix1] + d_hu
        hu_out[k] = sl
    top = 64511.0 if scan.extended_hu else 3071.0
    hu_out = np.clip(hu_out, -1024.0, top).astype(np.float32)
    ct = CTVolume(hu=hu_out, geometry=geom, patient_id="BRACHYMC-SEEDSIM", patient_name="Sim^PostImplant",
                  source=f"brachymc post-implant CT simulator ({T:g} mm slices, {px:g} mm pixels)")
    notes = {"psf_sigma_mm": sigma_psf, "noise_hu": float(np.median(noise_std)), "mu_water_per_mm": mu_ref,
             "mu_per_mm_70kev_equiv": {m: float(weights @ v) for m, v in mu_m.items()}}
    return SimulatedCT(ct=ct, implant=implant, masks=masks, scan=scan, notes=notes, anatomy_hu=anatomy_out)
