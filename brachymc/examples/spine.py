"""The built-in synthetic post-implant spine case (thoracolumbar, osteolytic metastasis, I-125 seeds).

Everything is defined analytically in millimetres in DICOM patient coordinates (LPS: +x patient
left, +y posterior, +z superior), so any voxel size works; :func:`make_spine_case` samples it at
voxel centres. Anatomy (typical adult lumbar dimensions):

* body: ellipse 230 x 190 mm with a 12-15 mm subcutaneous fat layer (-100 HU), viscera/soft tissue
  (35 HU), psoas and erector spinae muscles (50 HU);
* three vertebrae (L1 in the middle) 34 mm apart: vertebral bodies as elliptical cylinders
  44 x 32 mm, 25 mm high, 1.5 mm cortical shell and endplates (1200 HU) around cancellous bone
  (220 HU); intervertebral discs (90 HU); posterior elements (pedicles, laminae, spinous and
  transverse processes, 900 HU);
* spinal canal (CSF, 12 HU) with the spinal cord (10 x 8 mm ellipse, 35 HU);
* GTV (~25 cc): a lobulated osteolytic metastasis (40 HU) filling most of the middle vertebral
  body, breaching its posterior wall into the anterior epidural space (at least 2 mm from the
  cord) and its left lateral cortex into a paravertebral soft-tissue mass in the psoas;
* seeds: 32 6711-type seeds (4.5 mm long, 0.8 mm wide; 0.6 mCi, 0.762 U each) on 7 posterolateral
  needle tracks: 5 transpedicular (25 deg from the AP axis; 3 from the left, 2 from the right, at
  interleaved heights 4-8 mm apart) and 2 into the paravertebral mass (8 deg), seeds 7 mm apart
  centre to centre where a needle crosses the GTV (+2 mm). Seed strength and spacing are those of
  published CT-guided I-125 implants of spinal tumours: 0.5-0.8 mCi per seed (median 0.7 mCi;
  7-122 seeds; post-implant D90 90-183 Gy, median 137 Gy; Radiat Oncol 9:301 (2014),
  doi:10.1186/s13014-014-0301-8) with seeds 5-10 mm apart along the needles; within those ranges
  0.6 mCi at 7 mm gives the clinical goal: TG-43 (consensus 6711 data) D90 of the GTV ~110 Gy
  for the permanent implant (measured values in README.md, "The built-in spine case"), so the MC
  vs TG-43 table of ``brachymc demo`` is the comparison a physicist makes for such a plan;
* post-implant CT appearance: voxels on the seeds at 3071 HU, radial bright/dark streaks decaying
  over ~1 cm around each seed in its slices, and 10 HU Gaussian noise.

Masks (voxel centres inside): Body, Vertebra (the involved vertebra: body and posterior elements),
GTV, SpinalCord.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from brachymc.geometry.ct import CTVolume
from brachymc.geometry.phantom import GridGeometry

#: field of view (mm): x, y extent centred on 0; z from -Z_HALF to Z_HALF
FOV_X_MM, FOV_Y_MM, Z_HALF_MM = 240.0, 200.0, 48.0
VERTEBRA_Z_MM = (-34.0, 0.0, 34.0)
BODY_HALF_HEIGHT_MM = 12.5
SEED_LENGTH_MM, SEED_RADIUS_MM = 4.5, 0.4
#: seed strength (apparent activity, mCi; 0.762 U) and centre-to-centre spacing along a needle (mm)
SEED_ACTIVITY_MCI, SEED_SPACING_MM = 0.6, 7.0


@dataclass(frozen=True)
class SpineCase:
    """The synthetic case: CT, structure masks, seeds (cm, LPS) on needles."""

    ct: CTVolume
    masks: dict
    seeds_cm: np.ndarray
    seed_directions: np.ndarray
    needles: tuple
    activity_mci: float = SEED_ACTIVITY_MCI
    prescription_gy: float = 110.0
    notes: dict = field(default_factory=dict)


def _ellipse(x, y, cx, cy, ax, ay):
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0


def _ellipsoid(x, y, z, c, s):
    return ((x - c[0]) / s[0]) ** 2 + ((y - c[1]) / s[1]) ** 2 + ((z - c[2]) / s[2]) ** 2 <= 1.0


def _vertebral_body(x, y, z, zc, inset=0.0):
    return _ellipse(x, y, 0.0, 25.0, 22.0 - inset, 16.0 - inset) & (np.abs(z - zc) <= BODY_HALF_HEIGHT_MM - inset)


def _posterior_elements(x, y, z, zc):
    dz = np.abs(z - zc)
    pedicles = (_ellipse(np.abs(x), y, 15.0, 42.0, 4.0, 7.0)) & (dz <= 7.0)
    laminae = (y >= 60.0) & (y <= 67.0) & (np.abs(x) <= 17.0) & (dz <= 9.0) & ~_ellipse(x, y, 0, 52, 11, 9)
    lamina_side = (np.abs(x) >= 10.0) & (np.abs(x) <= 17.0) & (y >= 46.0) & (y <= 67.0) & (dz <= 8.0) & \
        ~_ellipse(x, y, 0, 52, 11, 9)
    spinous = (np.abs(x) <= 3.5) & (y >= 60.0) & (y <= 88.0) & (dz <= 10.0 - 0.15 * np.maximum(y - 60.0, 0))
    transverse = (np.abs(x) >= 15.0) & (np.abs(x) <= 44.0) & (y >= 40.0) & (y <= 47.0) & (dz <= 5.0)
    return pedicles | laminae | lamina_side | spinous | transverse


def _anatomy(x, y, z):
    """HU (without GTV, seeds, noise) and masks at points (mm)."""
    hu = np.full(x.shape, -1000.0)
    body = _ellipse(x, y, 0.0, 0.0, 115.0, 95.0)
    inner = _ellipse(x, y, 0.0, -3.0, 101.0, 82.0)
    hu[body] = -100.0                                   # subcutaneous fat
    hu[inner] = 35.0                                    # viscera / soft tissue
    hu[inner & _ellipse(x, y, 0.0, -40.0, 60.0, 30.0)] = -60.0   # retroperitoneal/visceral fat pad
    muscle = (_ellipse(np.abs(x), y, 35.0, 22.0, 14.0, 17.0)     # psoas
              | _ellipse(np.abs(x), y, 33.0, 68.0, 27.0, 17.0))  # erector spinae
    hu[muscle & inner] = 50.0
    vert_all = np.zeros(x.shape, bool)
    involved = np.zeros(x.shape, bool)
    for k, zc in enumerate(VERTEBRA_Z_MM):
        vb = _vertebral_body(x, y, z, zc)
        cancellous = _vertebral_body(x, y, z, zc, inset=1.5)
        pe = _posterior_elements(x, y, z, zc)
        hu[pe] = 900.0
        hu[vb] = 1200.0
        hu[cancellous] = 220.0
        vert_all |= vb | pe
        if zc == 0.0:
            involved = vb | pe
    # discs between bodies
    for z0 in (-17.0, 17.0):
        disc = _ellipse(x, y, 0.0, 25.0, 23.0, 17.0) & (np.abs(z - z0) < 17.0 - BODY_HALF_HEIGHT_MM)
        hu[disc] = 90.0
    canal = _ellipse(x, y, 0.0, 52.0, 11.0, 9.0)
    hu[canal] = 12.0
    cord = _ellipse(x, y, 0.0, 53.0, 5.0, 4.0)
    hu[cord] = 35.0
    return hu, {"Body": body, "Vertebra": involved, "SpinalCord": cord, "_canal": canal}


def _gtv(x, y, z):
    lobes = (_ellipsoid(x, y, z, (4.0, 26.0, 0.0), (19.0, 14.0, 14.0))
             | _ellipsoid(x, y, z, (10.0, 36.0, 3.0), (8.0, 7.0, 9.0))
             | _ellipsoid(x, y, z, (4.0, 43.0, 0.0), (9.0, 4.5, 9.0)))
    in_bone = _vertebral_body(x, y, z, 0.0)
    epidural = (y >= 38.0) & (y < 48.0) & (np.abs(x) < 12.0)
    cord_margin = _ellipse(x, y, 0.0, 53.0, 7.0, 6.0)
    # left paravertebral soft-tissue extension through the lateral cortex into the psoas
    paravertebral = _ellipsoid(x, y, z, (27.0, 24.0, 0.0), (13.0, 12.0, 15.0)) & ~_posterior_elements(x, y, z, 0.0)
    return ((lobes & (in_bone | epidural)) | paravertebral) & ~cord_margin


def _needles():
    """(point inside the GTV, unit direction) of each needle; tips point anteromedially."""
    out = []
    a = np.radians(25.0)
    for side, zs in ((+1, (-8.0, 0.0, 8.0)), (-1, (-4.0, 4.0))):       # transpedicular
        for k, z0 in enumerate(zs):
            x0 = side * (3.0 if k % 2 == 0 else 11.0) + 5.0
            d = np.array([-side * np.sin(a), -np.cos(a), 0.0])
            out.append((np.array([x0, 27.0, z0]), d))
    b = np.radians(8.0)
    for z0 in (-6.0, 6.0):                                                   # paravertebral mass
        out.append((np.array([28.0, 24.0, z0]), np.array([-np.sin(b), -np.cos(b), 0.0])))
    return out


def _seeds_on_needle(p0, d, gtv_dilated_fn, spacing=SEED_SPACING_MM):
    t = np.arange(-60.0, 60.0, 0.25)
    pts = p0[None, :] + t[:, None] * d[None, :]
    inside = gtv_dilated_fn(pts[:, 0], pts[:, 1], pts[:, 2])
    if not inside.any():
        return []
    t_in = t[inside]
    lo, hi = t_in.min(), t_in.max()
    n = int(np.floor((hi - lo) / spacing)) + 1
    mid = 0.5 * (lo + hi)
    ts = mid + (np.arange(n) - (n - 1) / 2.0) * spacing
    # needles enter from posterior: order seeds from the tip (anterior, largest t) backwards
    return [p0 + tt * d for tt in sorted(ts, reverse=True)]


def _dist_to_ellipse_region(px, py, cx, cy, ax, ay, n=720):
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ex, ey = cx + ax * np.cos(ang), cy + ay * np.sin(ang)
    inside = ((px - cx) / ax) ** 2 + ((py - cy) / ay) ** 2 <= 1
    return 0.0 if inside else float(np.min(np.hypot(ex - px, ey - py)))


def make_spine_case(voxel_mm=(1.0, 1.0, 2.0), seed: int = 2026, with_artefacts: bool = True) -> SpineCase:
    """Sample the case on a grid of ``voxel_mm`` (dx, dy, dz); deterministic for a given ``seed``."""
    dx, dy, dz = (float(v) for v in voxel_mm)
    nx, ny, nz = int(round(FOV_X_MM / dx)), int(round(FOV_Y_MM / dy)), int(round(2 * Z_HALF_MM / dz))
    geom = GridGeometry(shape=(nz, ny, nx), spacing=(dx / 10, dy / 10, dz / 10),
                        origin=(-nx * dx / 20, -ny * dy / 20, -nz * dz / 20))
    xc, yc, zc = (10 * geom.centers(a) for a in range(3))
    z, y, x = np.meshgrid(zc, yc, xc, indexing="ij")
    hu, masks = _anatomy(x, y, z)
    gtv = _gtv(x, y, z)
    hu[gtv] = 40.0
    masks["GTV"] = gtv
    canal = masks.pop("_canal")

    # seeds on the needles, where each crosses the GTV dilated by 2 mm
    def gtv_dilated(px, py, pz):
        inside = np.zeros(px.shape, bool)
        for ox, oy, oz in ((0, 0, 0), (2, 0, 0), (-2, 0, 0), (0, 2, 0), (0, -2, 0), (0, 0, 2), (0, 0, -2)):
            inside |= _gtv(px + ox, py + oy, pz + oz)
        return inside

    seeds, dirs, needles = [], [], []
    for p0, d in _needles():
        idx = []
        for p in _seeds_on_needle(p0, d, gtv_dilated):
            if _dist_to_ellipse_region(p[0], p[1], 0.0, 53.0, 5.0, 4.0) < 3.0 + SEED_LENGTH_MM / 2:
                continue                      # keep the capsule >= 3 mm from the cord
            idx.append(len(seeds))
            seeds.append(p)
            dirs.append(d)
        if idx:
            needles.append(tuple(idx))
    seeds_mm = np.array(seeds)
    dirs = np.array(dirs)

    rng = np.random.default_rng(seed)
    hu = hu + rng.normal(0.0, 10.0, hu.shape) * (hu > -990)
    if with_artefacts:
        hu = _add_seed_artefacts(hu, x, y, z, seeds_mm, dirs, (dx, dy, dz), rng)
    hu = np.clip(hu, -1024, 3071).astype(np.float32)
    ct = CTVolume(hu=hu, geometry=geom, patient_id="BRACHYMC-SPINE-DEMO", patient_name="Demo^Spine",
                  source="brachymc synthetic spine case")
    notes = {"canal_voxels": int(canal.sum()), "voxel_mm": (dx, dy, dz), "seed": seed}
    return SpineCase(ct=ct, masks=masks, seeds_cm=seeds_mm / 10.0, seed_directions=dirs, needles=tuple(needles),
                     notes=notes)


def _add_seed_artefacts(hu, x, y, z, seeds_mm, dirs, voxel_mm, rng):
    """Bright seed voxels and radial streaks in the slices of each seed."""
    out = hu.copy()
    reach = 12.0
    half = 0.5 * np.array(voxel_mm)
    bright_voxels = []
    for p, d in zip(seeds_mm, dirs):
        sel = (np.abs(x - p[0]) <= reach) & (np.abs(y - p[1]) <= reach) & (np.abs(z - p[2]) <= SEED_LENGTH_MM)
        ix = np.nonzero(sel)
        rx, ry, rz = x[ix] - p[0], y[ix] - p[1], z[ix] - p[2]
        t = np.clip(rx * d[0] + ry * d[1] + rz * d[2], -SEED_LENGTH_MM / 2, SEED_LENGTH_MM / 2)
        dist = np.sqrt((rx - t * d[0]) ** 2 + (ry - t * d[1]) ** 2 + (rz - t * d[2]) ** 2)
        r_in = np.hypot(rx, ry)
        phase = rng.uniform(0, np.pi)
        streak = 450.0 * np.cos(8 * np.arctan2(ry, rx) + phase) * np.exp(-r_in / 4.0) * (np.abs(rz) <= max(half[2], 1.0))
        out[ix] += streak
        bright = dist <= max(SEED_RADIUS_MM + 0.3, float(np.min(half)))
        bright[np.argmin(rx * rx + ry * ry + rz * rz)] = True    # at least the voxel holding the centre
        bright_voxels.append(tuple(a[bright] for a in ix))
    for b in bright_voxels:                     # metal wins over every streak
        out[b] = 3071.0
    return out


def describe(case: SpineCase) -> str:
    g = case.ct.geometry
    vox = g.voxel_volume
    lines = [f"synthetic spine CT {g.shape[::-1]} voxels (x, y, z) of {tuple(round(10 * s, 2) for s in g.spacing)} mm"]
    for k, m in case.masks.items():
        lines.append(f"  {k:<11s} {m.sum() * vox:8.1f} cc")
    lines.append(f"  {len(case.seeds_cm)} seeds on {len(case.needles)} needles, {case.activity_mci} mCi each")
    return "\n".join(lines)
