"""QA figure of a seed search: maximum-intensity projections with the found seeds and their axes.

Three panels (axial: x-y, coronal: x-z, sagittal: y-z) of the CT's maximum-intensity projection
over the region holding the metal (+ 15 mm), in DICOM patient coordinates (mm). Each seed is
drawn as a segment of the seed's length along its axis, numbered as in the output files; doubtful
seeds in orange, other metal outlined in cyan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brachymc.files import atomic_path
from brachymc.geometry.ct import CTVolume
from brachymc.seedfinder.finder import SeedFindResult


def plot_seed_qa(path: str | Path, ct: CTVolume, result: SeedFindResult, margin_mm: float = 15.0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    g = ct.geometry
    vox = np.array([10.0 * s for s in g.spacing])
    org = np.array([10.0 * o for o in g.origin])
    pos = result.positions_mm()
    pts = [pos] + [np.array([m.centroid_mm]) for m in result.other_metal]
    allp = np.concatenate([p for p in pts if len(p)]) if any(len(p) for p in pts) else org[None] + vox * 0
    lo = np.floor((allp.min(0) - margin_mm - org) / vox).astype(int)
    hi = np.ceil((allp.max(0) + margin_mm - org) / vox).astype(int)
    n = np.array([g.nx, g.ny, g.nz])
    lo, hi = np.clip(lo, 0, n - 1), np.clip(hi, 1, n)
    sub = np.asarray(ct.hu)[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    edges = [org[a] + np.array([lo[a], hi[a]]) * vox[a] for a in range(3)]
    top = max(float(np.percentile(sub, 99.9)), 1500.0)
    half = 0.5 * result.appearance.capsule_length_mm
    views = (("axial (x-y)", sub.max(axis=0), 0, 1), ("coronal (x-z)", sub.max(axis=1), 0, 2),
             ("sagittal (y-z)", sub.max(axis=2), 1, 2))
    fig, axes = plt.subplots(1, 3, figsize=(16, 6))
    for ax, (title, img, a, b) in zip(axes, views):
        ax.imshow(img, cmap="gray", vmin=-200, vmax=top, origin="lower",
                  extent=(edges[a][0], edges[a][1], edges[b][0], edges[b][1]), interpolation="nearest",
                  aspect="equal")
        for i, s in enumerate(result.seeds):
            p, u = np.array(s.position_mm), np.array(s.direction)
            e0, e1 = p - half * u, p + half * u
            color = "orange" if s.is_doubtful else "red"
            ax.plot([e0[a], e1[a]], [e0[b], e1[b]], "-", color=color, lw=1.5)
            ax.text(p[a], p[b], f" {i + 1}", color=color, fontsize=6, va="bottom")
        for m in result.other_metal:
            ax.plot(m.centroid_mm[a], m.centroid_mm[b], "s", mfc="none", mec="cyan", ms=14)
        ax.set_title(title)
        ax.set_xlabel("xyz"[a] + " (mm)")
        ax.set_ylabel("xyz"[b] + " (mm)")
        if b == 1:
            ax.invert_yaxis()            # patient y (posterior) down, as on an axial CT slice
    fig.suptitle(f"{result.n_seeds} seeds found in {Path(result.source).name}: maximum-intensity projections "
                 f"({result.clusters_split()} clusters split, {len(result.doubtful())} doubtful in orange)",
                 fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)
    return path
