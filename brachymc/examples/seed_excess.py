"""How much of an isolated seed's intensity the seed finder sees, by tilt and height in the slice.

The seed finder counts the seeds of a cluster from its summed excess S over the local
background (``docs/seed_finding.md``). This study images isolated 6711 seeds at set tilts
(|u_z|) and heights (distance of the centre from its slice's centre) with the post-implant CT
simulator (:mod:`brachymc.examples.postimplant_ct`), keeping the metal-free, noiseless image of
each scan, and compares per seed:

* the *true excess*: the CT minus the metal-free image, summed over the voxels within 5.5 mm
  in-plane of the seed's centre and one slice plus 3 mm in z (HU mm^3), what any finder could see;
* the finder's S (:func:`brachymc.seedfinder.finder.component_backgrounds`, its patch over its
  filled-in background);
* the true excess over the finder's patch alone, and the mean error of its fill there (HU).

``python -m brachymc.examples.seed_excess [--slice-mm 5] [--scans 5]`` prints the table that
``docs/seed_finding.md`` quotes (stop 24). Seeds whose component is not theirs alone, or whose
fill is off by more than 80 HU (bone beside them), are left out of the table's medians.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from brachymc.examples.postimplant_ct import Implant, ScanSettings, simulate_postimplant_ct

#: in-plane places (mm) in the spine case's soft tissue, 12 mm apart
PLACES_MM = ((0, 14), (24, 14), (-12, 26), (0, 26), (12, 26), (24, 26), (0, 38), (12, 38), (24, 38))
TILTS = (0.0, 0.1, 0.2, 0.45, 1.0)
#: height of the centre from its slice's centre, as a fraction of the slice thickness
HEIGHTS = (0.0, 0.3, 0.5)
#: true excess counted within this distance (mm) in-plane of the seed's centre
TRUE_RADIUS_MM = 5.5
#: a fill further than this (HU, mean over the patch) from the metal-free image is bone beside the seed
MAX_FILL_ERROR_HU = 80.0


@dataclass(frozen=True)
class SeedExcess:
    """One seed: its tilt |u_z|, height (fraction of the slice from its centre), true excess,
    the finder's S, the true excess over the finder's patch (HU mm^3), the fill's mean error (HU)
    and whether its component reaches the metal level; S is NaN where no component is its own."""

    uz: float
    height: float
    true_excess: float
    finder_s: float
    patch_true_excess: float
    fill_error_hu: float
    cored: bool

    @property
    def usable(self) -> bool:
        return bool(np.isfinite(self.finder_s) and abs(self.fill_error_hu) < MAX_FILL_ERROR_HU)


def _implant(scan_index: int, slice_mm: float, rng: np.random.Generator) -> tuple[Implant, list]:
    centres = [-2.5 * slice_mm, -0.5 * slice_mm, 1.5 * slice_mm]       # slice centres when z starts at -20 mm
    confs = [(uz, h) for uz in TILTS for h in HEIGHTS]
    pos, dirs, conf = [], [], []
    for j, (x, y) in enumerate(PLACES_MM):
        uz, h = confs[(scan_index * len(PLACES_MM) + j) % len(confs)]
        z = centres[j % 3] + h * slice_mm * rng.choice([-1.0, 1.0])
        phi = rng.uniform(0.0, 2.0 * np.pi)
        r = np.sqrt(1.0 - uz * uz)
        pos.append((x + rng.uniform(-1, 1), y + rng.uniform(-1, 1), z))
        dirs.append((r * np.cos(phi), r * np.sin(phi), uz))
        conf.append((uz, h))
    return Implant(seeds_mm=np.array(pos, float), directions=np.array(dirs, float),
                   labels=("isolated",) * len(pos)), conf


def measure(slice_mm: float = 5.0, pixel_mm: float = 0.8, n_scans: int = 5, seed: int = 11) -> list[SeedExcess]:
    """Simulate ``n_scans`` scans of nine isolated seeds each (tilts and heights in turn) and
    measure every seed (module docstring)."""
    from brachymc.seedfinder.finder import component_backgrounds

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_scans):
        implant, conf = _implant(i, slice_mm, rng)
        sim = simulate_postimplant_ct(implant, ScanSettings(pixel_mm=pixel_mm, slice_mm=slice_mm,
                                                            recon_fov_mm=(120.0, 100.0), recon_center_mm=(5.0, 25.0),
                                                            seed=seed + 9 + i), keep_anatomy=True)
        hu, anat = np.asarray(sim.ct.hu, float), np.asarray(sim.anatomy_hu, float)
        g = sim.ct.geometry
        voxel, origin = 10.0 * np.array(g.spacing), 10.0 * np.array(g.origin)
        vv = float(np.prod(voxel))
        zc, yc, xc = (origin[a] + (np.arange(hu.shape[2 - a]) + 0.5) * voxel[a] for a in (2, 1, 0))
        comps = component_backgrounds(sim.ct)
        for p, (uz, h) in zip(implant.seeds_mm, conf):
            near_z = np.abs(zc - p[2]) < slice_mm + 3.0
            near_xy = (xc[None, :] - p[0]) ** 2 + (yc[:, None] - p[1]) ** 2 < TRUE_RADIUS_MM ** 2
            true = float((hu - anat)[near_z][:, near_xy].sum()) * vv
            own = [c for c in comps
                   if np.min(np.hypot(*(c.patch.points[:, :2] - p[:2]).T)) < 1.5
                   and np.min(np.abs(c.patch.points[:, 2] - p[2])) < slice_mm]
            if len(own) != 1:
                out.append(SeedExcess(uz, h, true, np.nan, np.nan, np.nan, False))
                continue
            c = own[0]
            jx, jy, jz = np.floor((c.patch.points - origin) / voxel).astype(int).T
            a = anat[jz, jy, jx]
            out.append(SeedExcess(uz, h, true, c.summed_excess, float((c.patch.hu - a).sum()) * vv,
                                  float(np.mean(c.patch.background - a)), c.n_core > 0))
    return out


def table(rows: list[SeedExcess]) -> list[str]:
    """Markdown table of the medians per tilt and height (usable seeds only); the true excess in
    units of the median true excess of the seeds tilted 0.45 or more."""
    ok = [r for r in rows if r.usable]
    ref = float(np.median([r.true_excess for r in ok if r.uz >= 0.45]))
    lines = [f"{len(rows)} seeds, {len(ok)} usable; reference true excess (|u_z| >= 0.45) {ref:.0f} HU mm^3", "",
             "| \\|u_z\\| | height (slice) | seeds | true excess / reference | finder S / true | patch true / true | "
             "fill error (HU) | cored |", "|---|---|---|---|---|---|---|---|"]
    for uz in TILTS:
        for h in HEIGHTS:
            sel = [r for r in ok if r.uz == uz and r.height == h]
            if not sel:
                continue
            med = lambda f: float(np.median([f(r) for r in sel]))  # noqa: E731
            lines.append(f"| {uz:g} | {h:g} | {len(sel)} | {med(lambda r: r.true_excess) / ref:.2f} | "
                         f"{med(lambda r: r.finder_s / r.true_excess):.2f} | "
                         f"{med(lambda r: r.patch_true_excess / r.true_excess):.2f} | {med(lambda r: r.fill_error_hu):+.0f} | "
                         f"{np.mean([r.cored for r in sel]):.1f} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slice-mm", type=float, default=5.0)
    ap.add_argument("--pixel-mm", type=float, default=0.8)
    ap.add_argument("--scans", type=int, default=5)
    args = ap.parse_args(argv)
    print("\n".join(table(measure(args.slice_mm, args.pixel_mm, args.scans))))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
