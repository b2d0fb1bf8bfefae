"""Foundation checks of the physics data and the transport, printed as Markdown tables.

    python -m brachymc.validation.foundation [--reference DIR] [--histories 2000000]

(reference data: the copy shipped in configs/reference, or ``--reference`` / ``BRACHYMC_REFERENCE_DIR``)

1. mu/rho and mu_en/rho against NIST (Hubbell & Seltzer) for the reference media.
2. Narrow-beam transmission of 30 keV photons through 5 cm of water.
3. Primary dose of a 30 keV point source in water and in water/cortical bone/water against the
   analytic primary dose (voxel-averaged), per region, with the batch uncertainty.
4. Energy balance in an effectively infinite water phantom (track-length vs collision estimator).
The numbers recorded in docs/physics.md come from this script.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from brachymc import default_library
from brachymc._paths import reference_dir
from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
from brachymc.mc.tables_cache import load_or_build_tables
from brachymc.mc.simulation import RunSettings, run_simulation
from brachymc.mc.transport import TransportSettings
from brachymc.sources.simple import PencilBeam, PointSource
from brachymc.sources.spectrum import Spectrum
from brachymc.validation.analytic import voxel_averaged_primary_dose

NIST_NAMES = {
    "water": "Water, Liquid", "air": "Air, Dry (near sea level)", "cortical_bone": "Bone, Cortical (ICRU-44)",
    "soft_tissue": "Tissue, Soft (ICRU-44)", "muscle": "Muscle, Skeletal (ICRU-44)",
    "adipose": "Adipose Tissue (ICRU-44)", "titanium": "Titanium (Z=22)", "silver": "Silver (Z=47)",
}


def nist_table(reference: Path) -> str:
    lib = default_library()
    tables = load_or_build_tables([lib[n] for n in NIST_NAMES])
    with (reference / "nist_mu_muen.csv").open() as fh:
        rows = list(csv.DictReader(ln for ln in fh if not ln.startswith("#")))
    out = ["| material | E (keV) | mu/rho NIST | brachymc | diff | mu_en/rho NIST | brachymc | diff |",
           "|---|---|---|---|---|---|---|---|"]
    worst = {}
    for name, nist in NIST_NAMES.items():
        for r in rows:
            if r["material"] != nist or not 10 <= float(r["energy_keV"]) <= 50 or r["note"]:
                continue
            e = float(r["energy_keV"])
            mu, muen = float(tables.interpolate("total", name, e)), float(tables.interpolate("muen", name, e))
            dm, de = mu / float(r["mu_rho"]) - 1, muen / float(r["muen_rho"]) - 1
            if 15 <= e:
                worst[name] = max(worst.get(name, (0, 0)), (abs(dm), abs(de)))
            out.append(f"| {name} | {e:g} | {float(r['mu_rho']):.4g} | {mu:.4g} | {dm:+.2%} | "
                       f"{float(r['muen_rho']):.4g} | {muen:.4g} | {de:+.2%} |")
    out.append("")
    out.append("Largest |difference| at 15-50 keV: " + "; ".join(
        f"{k} {v[0]:.2%} / {v[1]:.2%}" for k, v in worst.items()))
    return "\n".join(out)


def narrow_beam(histories: int) -> str:
    lib = default_library()
    g = GridGeometry(shape=(10, 20, 20), spacing=(1.0, 1.0, 0.5), origin=(-10, -10, 0))
    ph = VoxelPhantom.homogeneous(g, lib["water"])
    r = run_simulation(ph, PencilBeam((0, 0, 0), (0, 0, 1), Spectrum.monoenergetic(30.0)),
                       RunSettings(histories=histories, batches=10, seed=1, backend="auto"))
    t = r.batch_energy["escaped_primary"] / 30.0
    mu = float(load_or_build_tables([lib["water"]]).interpolate("total", "water", 30.0))
    exp = np.exp(-5 * mu)
    return (f"Narrow beam, 30 keV, 5 cm water, {r.histories:,} histories: unscattered fraction "
            f"{t.mean():.5f} +- {t.std(ddof=1) / np.sqrt(len(t)):.5f}; exp(-mu t) = {exp:.5f} "
            f"(NIST mu/rho 0.3756 cm2/g: {np.exp(-5 * 0.3756):.5f}).")


def primary_slab(histories: int) -> str:
    lib = default_library()
    g = GridGeometry.centered((12, 12, 12), (0.2, 0.2, 0.2))
    water = VoxelPhantom.homogeneous(g, lib["water"])
    slab = water.with_box(lib["cortical_bone"], (-6, -6, 1.0), (6, 6, 2.0))
    z, y, x = np.meshgrid(g.centers(2), g.centers(1), g.centers(0), indexing="ij")
    rr = np.sqrt(x * x + y * y + z * z)
    regions = {}
    for lo, hi in ((0.5, 0.7), (1.0, 1.2), (2.0, 2.2), (3.0, 3.3), (4.5, 5.0)):
        regions[f"water, z < 0, r {lo}-{hi} cm"] = (rr >= lo) & (rr < hi) & (z < -0.1)
        if lo >= 3.0:
            regions[f"water behind bone (z > 2), r {lo}-{hi} cm"] = (rr >= lo) & (rr < hi) & (z > 2.0)
    for zc in (1.1, 1.5, 1.9):
        regions[f"bone layer z = {zc} cm"] = (np.abs(z - zc) < 0.05) & (rr < 5) & (np.abs(x) < 1) & (np.abs(y) < 1)
    lines = ["| phantom | region | MC / analytic | batch unc. | z-score |", "|---|---|---|---|---|"]
    for label, ph in (("water", water), ("water/bone/water", slab)):
        acc = []
        st = RunSettings(histories=histories, batches=10, seed=5, backend="auto",
                         transport=TransportSettings(score_primary=True, bank_size=1 << 17))
        run_simulation(ph, PointSource((0, 0, 0), Spectrum.monoenergetic(30.0)), st,
                       on_batch=lambda b, v: acc.append({k: v["primary"][m].sum() for k, m in regions.items()}))
        tables = load_or_build_tables(list(ph.materials))
        for k, m in regions.items():
            iz, iy, ix = np.nonzero(m)
            ref = voxel_averaged_primary_dose(ph, tables, np.zeros(3), 30.0, np.stack([ix, iy, iz], 1)).sum()
            v = np.array([a[k] for a in acc])
            mean, sem = v.mean(), v.std(ddof=1) / np.sqrt(len(v))
            lines.append(f"| {label} | {k} | {mean / ref:.4f} | {sem / mean:.2%} | {(mean - ref) / sem:+.2f} |")
    return "\n".join(lines)


def energy_balance(histories: int) -> str:
    lib = default_library()
    g = GridGeometry.centered((40, 40, 40), (2, 2, 2))
    ph = VoxelPhantom.homogeneous(g, lib["water"])
    st = RunSettings(histories=histories, batches=10, seed=11, backend="auto",
                     transport=TransportSettings(score_collision=True))
    r = run_simulation(ph, PointSource((0.01, 0.02, 0.03), Spectrum.monoenergetic(30.0)), st)
    be = r.batch_energy
    tl = be["deposited"] + be["escaped"]
    col = be["collision"] + be["escaped"]
    sem = tl.std(ddof=1) / np.sqrt(len(tl))
    return (f"Energy balance, 30 keV point source in a 40 cm water cube, {r.histories:,} histories: emitted 30 keV; "
            f"track-length deposited + escaped = {tl.mean():.4f} +- {sem:.4f} keV; collision estimator + escaped = "
            f"{col.mean():.6f} keV (exact bookkeeping); escaped {r.escaped_energy_kev:.4f} keV per history.")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", default=None,
                   help="folder with the reference CSVs (default: the copy shipped in configs/reference)")
    p.add_argument("--histories", type=int, default=2_000_000)
    a = p.parse_args(argv)
    print("## NIST comparison\n")
    print(nist_table(Path(a.reference) if a.reference else reference_dir()))
    print("\n## Narrow beam\n")
    print(narrow_beam(a.histories))
    print("\n## Energy balance\n")
    print(energy_balance(a.histories // 4))
    print("\n## Primary dose against the analytic primary dose\n")
    print(primary_slab(a.histories))
    return 0


if __name__ == "__main__":
    sys.exit(main())
