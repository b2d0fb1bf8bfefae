"""Patient figures and the summary PDF of a Monte Carlo vs TG-43 dose calculation.

Figures are drawn with matplotlib's object API (:class:`matplotlib.figure.Figure`, rendered by
the Agg/PDF canvases; pyplot and GUI backends are never touched) and written atomically.

Display conventions (DICOM patient coordinates, LPS: +x patient left, +y posterior, +z superior;
the grid geometry is in cm, axes are labelled in mm):

* **axial** (x-y at the target's z): radiological view, as seen from the feet -- the patient's
  left on the image right, anterior at the top;
* **sagittal** (y-z at the target's x): anterior on the left, superior (z) up;
* **coronal** (x-z at the target's y): patient's left on the image right, superior (z) up.

Extents come from the voxel edges, and the aspect is 1:1 in mm, so anisotropic voxels are shown
at their physical size. CT is shown in grey with a window of -200..1200 HU.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from brachymc.dvh import DVH
from brachymc.errors import ConfigError
from brachymc.geometry.phantom import GridGeometry
from brachymc.files import atomic_path

__all__ = ["plot_slices", "plot_dvh", "plot_difference", "write_summary_pdf", "ISODOSE_LEVELS"]

CT_WINDOW_HU = (-200.0, 1200.0)
#: isodose levels (% of the prescription) and their colours
ISODOSE_LEVELS = {50: "tab:blue", 100: "tab:green", 150: "tab:orange", 200: "tab:red"}
RATIO_RANGE = (0.7, 1.3)
STRUCTURE_COLOURS = ("magenta", "cyan", "yellow", "lime", "deepskyblue", "orangered", "white", "violet")
A4_PORTRAIT_IN = (8.27, 11.69)


# ----------------------------------------------------------------------------------- utilities

def _save(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write ``fig`` atomically; the format follows the file suffix (png by default)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return path


def _check_volume(name: str, a, shape) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.shape != tuple(shape):
        raise ConfigError(f"{name}: shape {arr.shape} differs from the grid shape {tuple(shape)}")
    return arr


def _center_index(geometry: GridGeometry, center_cm) -> tuple[int, int, int]:
    c = np.asarray(center_cm, float)
    if c.shape != (3,) or not np.all(np.isfinite(c)):
        raise ConfigError(f"center_cm must be finite (x, y, z) in cm, got {center_cm!r}")
    ix, iy, iz = (int(v) for v in geometry.voxel_of(c))
    return ix, iy, iz


class _View:
    """One orthogonal plane through the grid: how to cut a volume and where to draw it."""

    def __init__(self, kind: str, geometry: GridGeometry, index: tuple[int, int, int]):
        ix, iy, iz = index
        g = geometry
        mm = [g.edges(a) * 10.0 for a in range(3)]
        cmm = [g.centers(a) * 10.0 for a in range(3)]
        self.kind = kind
        if kind == "axial":
            self.cut = (iz, slice(None), slice(None))              # (ny, nx)
            self.h_axis, self.v_axis, self.normal = 0, 1, 2
            self.extent = (mm[0][0], mm[0][-1], mm[1][-1], mm[1][0])   # anterior (low y) at the top
            self.origin = "upper"
            self.labels = ("x (mm)  R \u2192 L", "y (mm)  A \u2192 P")
            self.position = g.centers(2)[iz]
        elif kind == "sagittal":
            self.cut = (slice(None), slice(None), ix)              # (nz, ny)
            self.h_axis, self.v_axis, self.normal = 1, 2, 0
            self.extent = (mm[1][0], mm[1][-1], mm[2][0], mm[2][-1])
            self.origin = "lower"
            self.labels = ("y (mm)  A \u2192 P", "z (mm)  I \u2192 S")
            self.position = g.centers(0)[ix]
        elif kind == "coronal":
            self.cut = (slice(None), iy, slice(None))              # (nz, nx)
            self.h_axis, self.v_axis, self.normal = 0, 2, 1
            self.extent = (mm[0][0], mm[0][-1], mm[2][0], mm[2][-1])
            self.origin = "lower"
            self.labels = ("x (mm)  R \u2192 L", "z (mm)  I \u2192 S")
            self.position = g.centers(1)[iy]
        else:  # pragma: no cover - internal
            raise ValueError(kind)
        self.h_centers, self.v_centers = cmm[self.h_axis], cmm[self.v_axis]
        self.half_voxel_cm = 0.5 * g.spacing[self.normal]

    def take(self, volume: np.ndarray) -> np.ndarray:
        return np.asarray(volume)[self.cut]

    def title(self) -> str:
        axis = "xyz"[self.normal]
        return f"{self.kind} ({axis} = {10 * self.position:.1f} mm)"

    def setup(self, ax) -> None:
        ax.set_xlim(self.extent[0], self.extent[1])
        ax.set_ylim(self.extent[2], self.extent[3])
        ax.set_aspect("equal")
        ax.set_xlabel(self.labels[0], fontsize=7)
        ax.set_ylabel(self.labels[1], fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_title(self.title(), fontsize=8)


def _draw_ct(ax, view: _View, ct_hu) -> None:
    if ct_hu is None:
        ax.set_facecolor("black")
        return
    ax.imshow(view.take(ct_hu), cmap="gray", vmin=CT_WINDOW_HU[0], vmax=CT_WINDOW_HU[1],
              extent=view.extent, origin=view.origin, interpolation="nearest")


def _contour(ax, view: _View, plane: np.ndarray, level: float, **kw):
    """Contour of ``plane`` at ``level`` if the level is crossed in it (else None)."""
    data = np.ma.masked_invalid(np.asarray(plane, float))
    if data.count() == 0:
        return None
    lo, hi = float(data.min()), float(data.max())
    if not lo < level < hi:
        return None
    return ax.contour(view.h_centers, view.v_centers, data, levels=[level], **kw)


def _seed_tolerance_cm(view: _View) -> float:
    """Seeds within this distance of the plane are drawn: half a voxel, at least 2.5 mm."""
    return max(view.half_voxel_cm, 0.25)


# --------------------------------------------------------------------------------- slice views

def plot_slices(
    path: str | Path,
    ct_hu,
    geometry: GridGeometry,
    dose_gy,
    prescription_gy: float,
    structures: Mapping[str, np.ndarray] | None,
    seeds_cm,
    center_cm: Sequence[float],
    title: str | None = None,
) -> Path:
    """Axial, sagittal and coronal planes through ``center_cm`` (x, y, z; cm) with isodoses.

    CT (HU, may be None) in grey, isodose lines at 50/100/150/200 % of ``prescription_gy``
    (labelled), structure outlines (weights contoured at 0.5) and the seeds (``seeds_cm``
    (n, 3) in cm) lying within max(half a voxel, 2.5 mm) of each plane. Written to ``path``.
    """
    if not prescription_gy or prescription_gy <= 0:
        raise ConfigError(f"prescription_gy must be a positive dose (Gy), got {prescription_gy}")
    shape = geometry.shape
    dose = _check_volume("dose", dose_gy, shape)
    ct = None if ct_hu is None else _check_volume("CT (HU)", ct_hu, shape)
    structs = {n: _check_volume(f"structure {n!r}", w, shape) for n, w in (structures or {}).items()}
    seeds = np.asarray(seeds_cm if seeds_cm is not None else np.zeros((0, 3)), float).reshape(-1, 3)
    index = _center_index(geometry, center_cm)

    fig = Figure(figsize=(13.0, 5.0), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, kind in zip(axes, ("axial", "sagittal", "coronal")):
        view = _View(kind, geometry, index)
        _draw_ct(ax, view, ct)
        dplane = view.take(dose)
        for pct, colour in ISODOSE_LEVELS.items():
            cs = _contour(ax, view, dplane, prescription_gy * pct / 100.0, colors=colour, linewidths=1.0)
            if cs is not None:
                ax.clabel(cs, fmt={cs.levels[0]: f"{pct}%"}, fontsize=6, inline=True)
        for k, (name, w) in enumerate(structs.items()):
            _contour(ax, view, view.take(w), 0.5, colors=STRUCTURE_COLOURS[k % len(STRUCTURE_COLOURS)],
                     linewidths=1.2, linestyles="solid")
        if len(seeds):
            near = np.abs(seeds[:, view.normal] - view.position) <= _seed_tolerance_cm(view)
            if near.any():
                ax.plot(10 * seeds[near, view.h_axis], 10 * seeds[near, view.v_axis], marker="o", ms=3.5,
                        mfc="gold", mec="black", mew=0.5, ls="none")
        view.setup(ax)
    handles = [Line2D([], [], color=c, lw=1.0, label=f"{p}% ({prescription_gy * p / 100:.3g} Gy)")
               for p, c in ISODOSE_LEVELS.items()]
    handles += [Line2D([], [], color=STRUCTURE_COLOURS[k % len(STRUCTURE_COLOURS)], lw=1.2, label=n)
                for k, n in enumerate(structs)]
    if len(seeds):
        handles.append(Line2D([], [], marker="o", ms=3.5, mfc="gold", mec="black", ls="none", label="seeds"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------ DVH

def plot_dvh(
    path: str | Path,
    dvhs: Mapping[str, tuple[DVH, DVH | None]],
    prescription_gy: float | None,
    title: str = "Cumulative DVH (solid: MC, dashed: TG-43)",
) -> Path:
    """Cumulative DVHs (relative volume) of each structure: MC solid, TG-43 dashed, prescription line."""
    if not dvhs:
        raise ConfigError("plot_dvh: no DVH given")
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = fig.subplots()
    xmax = 0.0
    for k, (name, pair) in enumerate(dvhs.items()):
        mc, tg = pair if isinstance(pair, tuple) else (pair, None)
        colour = f"C{k % 10}"
        ax.plot(mc.dose, mc.volume_percent, color=colour, lw=1.4, label=f"{name} MC")
        xmax = max(xmax, float(mc.dose[-1]))
        if tg is not None:
            ax.plot(tg.dose, tg.volume_percent, color=colour, lw=1.2, ls="--", label=f"{name} TG-43")
            xmax = max(xmax, float(tg.dose[-1]))
    if prescription_gy:
        ax.axvline(prescription_gy, color="black", lw=0.8, ls=":", label=f"prescription {prescription_gy:g} Gy")
        xmax = min(xmax, 4.0 * prescription_gy) if xmax > 4.0 * prescription_gy else xmax
    ax.set_xlim(0.0, xmax if xmax > 0 else 1.0)
    ax.set_ylim(0.0, 102.0)
    ax.set_xlabel("dose (Gy)")
    ax.set_ylabel("volume (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


# ------------------------------------------------------------------------------ ratio map (MC/TG-43)

def plot_difference(
    path: str | Path,
    ct_hu,
    geometry: GridGeometry,
    mc,
    tg43,
    center_cm: Sequence[float],
    prescription_gy: float | None = None,
    floor_fraction: float = 0.05,
) -> Path:
    """MC / TG-43 ratio on the axial and sagittal planes through ``center_cm``, over the CT, and
    a histogram of the ratio in voxels where TG-43 exceeds 10 % of ``prescription_gy`` (10 % of
    the maximum TG-43 dose without a prescription). The maps hide voxels below ``floor_fraction``
    of the maximum TG-43 dose (see :func:`brachymc.compare.dose_ratio_map`).
    """
    from brachymc.compare import dose_ratio_map

    shape = geometry.shape
    a = _check_volume("MC dose", mc, shape)
    b = _check_volume("TG-43 dose", tg43, shape)
    ct = None if ct_hu is None else _check_volume("CT (HU)", ct_hu, shape)
    ratio = dose_ratio_map(a, b, floor_fraction=floor_fraction)
    index = _center_index(geometry, center_cm)
    norm = mcolors.Normalize(*RATIO_RANGE)

    fig = Figure(figsize=(13.0, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
    im = None
    for ax, kind in zip(axes[:2], ("axial", "sagittal")):
        view = _View(kind, geometry, index)
        _draw_ct(ax, view, ct)
        im = ax.imshow(np.ma.masked_invalid(view.take(ratio)), cmap="RdBu_r", norm=norm, alpha=0.75,
                       extent=view.extent, origin=view.origin, interpolation="nearest")
        view.setup(ax)
    fig.colorbar(im, ax=list(axes[:2]), shrink=0.85, label="MC / TG-43", extend="both")

    finite = np.isfinite(a) & np.isfinite(b) & (b > 0)
    level = 0.1 * (prescription_gy if prescription_gy else float(np.max(b[finite])) if finite.any() else 0.0)
    sel = finite & (b > level)
    ax = axes[2]
    if sel.any():
        r = a[sel] / b[sel]
        lo, hi = min(RATIO_RANGE[0], float(np.percentile(r, 0.5))), max(RATIO_RANGE[1], float(np.percentile(r, 99.5)))
        ax.hist(np.clip(r, lo, hi), bins=80, range=(lo, hi), color="0.4")
        ax.axvline(1.0, color="black", lw=0.8)
        ax.axvline(float(np.median(r)), color="tab:red", lw=1.0, ls="--", label=f"median {np.median(r):.3f}")
        ax.legend(fontsize=7)
    ax.set_xlabel("MC / TG-43", fontsize=8)
    ax.set_ylabel("voxels", fontsize=8)
    ax.tick_params(labelsize=7)
    what = "prescription" if prescription_gy else "max TG-43"
    ax.set_title(f"voxels > 10 % of {what} ({level:.3g} Gy): {int(sel.sum())}", fontsize=8)
    return _save(fig, path)


# --------------------------------------------------------------------------------- summary PDF

def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(float(v)):
            return "-"
        return f"{float(v):.{digits}g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x, digits) for x in v)
    return str(v)


class _Block:
    """A heading and a table (or key/value list) to be placed on a summary page."""

    ROW_IN = 0.17
    HEAD_IN = 0.30

    def __init__(self, heading: str, columns: list[str] | None, rows: list[list[str]], widths=None, note=None):
        self.heading, self.columns, self.rows, self.widths, self.note = heading, columns, rows, widths, note

    def height_in(self) -> float:
        n = len(self.rows) + (1 if self.columns else 0)
        return self.HEAD_IN + n * self.ROW_IN + (0.2 if self.note else 0.0) + 0.15

    def draw(self, fig: Figure, top_in: float, page_h: float, margin_in: float, page_w: float) -> None:
        fig.text(margin_in / page_w, 1 - (top_in + 0.18) / page_h, self.heading, fontsize=9.5,
                 fontweight="bold", va="center")
        n = len(self.rows) + (1 if self.columns else 0)
        h = n * self.ROW_IN
        if n:
            ax = fig.add_axes((margin_in / page_w, 1 - (top_in + self.HEAD_IN + h) / page_h,
                               1 - 2 * margin_in / page_w, h / page_h))
            ax.axis("off")
            table = ax.table(cellText=self.rows or None, colLabels=self.columns, loc="upper left",
                             cellLoc="left", colWidths=self.widths, bbox=(0, 0, 1, 1))
            table.auto_set_font_size(False)
            table.set_fontsize(6.5)
            for (r, _c), cell in table.get_celld().items():
                cell.set_linewidth(0.3)
                if self.columns and r == 0:
                    cell.set_facecolor("0.88")
                    cell.get_text().set_fontweight("bold")
        if self.note:
            fig.text(margin_in / page_w, 1 - (top_in + self.HEAD_IN + h + 0.12) / page_h, self.note,
                     fontsize=6.5, style="italic", va="center")


def _settings_block(settings: Mapping) -> _Block:
    items = [(str(k), _fmt(v)) for k, v in settings.items()]
    half = (len(items) + 1) // 2
    left, right = items[:half], items[half:] + [("", "")] * (half - len(items[half:]))
    rows = [[a, b, c, d] for (a, b), (c, d) in zip(left, right)]
    return _Block("Run settings and uncertainties", None, rows, widths=[0.24, 0.26, 0.24, 0.26])


def _generic_block(heading: str, table: Mapping[str, Mapping]) -> _Block:
    keys: list[str] = []
    for row in table.values():
        for k in row:
            if k not in keys:
                keys.append(k)
    rows = [[str(name)] + [_fmt(row.get(k)) for k in keys] for name, row in table.items()]
    return _Block(heading, ["structure"] + keys, rows)


_DVH_COLUMNS = (("D90_Gy", "D90"), ("D100_Gy", "D100"), ("V100_percent", "V100"), ("V150_percent", "V150"),
                ("V200_percent", "V200"), ("D2cc_Gy", "D2cc"), ("D0.1cc_Gy", "D0.1cc"), ("Dmax_Gy", "Dmax"),
                ("Dmean_Gy", "Dmean"), ("volume_cc", "volume"))


def _comparison_block(comparison: Mapping[str, Mapping]) -> _Block:
    cols = [(k, label) for k, label in _DVH_COLUMNS
            if any(c["mc"].get(k) is not None for c in comparison.values())]
    rows = []
    for name, c in comparison.items():
        rows.append([f"{name}  MC"] + [_fmt(c["mc"].get(k)) for k, _ in cols])
        rows.append([f"{name}  TG-43"] + [_fmt(c["tg43"].get(k)) for k, _ in cols])
        diff = c.get("diff", {})
        cells = []
        for k, _ in cols:
            d = diff.get(k)
            if d is None:
                cells.append("")
            elif k.endswith("_percent"):
                cells.append(f"{d:+.1f} pp")
            else:
                cells.append(f"{d:+.1f}%")
        rows.append([f"{name}  \u0394"] + cells)
    note = ("D in Gy, V in % of the structure, volume in cc. \u0394: D in % of TG-43, V in percentage points "
            "(MC - TG-43); voxels inside seeds excluded from both.")
    return _Block("DVH metrics, Monte Carlo vs TG-43", ["structure"] + [label for _, label in cols], rows,
                  widths=[0.16] + [0.84 / max(len(cols), 1)] * len(cols), note=note)


def _gamma_block(gamma: Sequence[Mapping]) -> _Block:
    def norm(g):
        if g.get("mode") == "global" and g.get("normalisation_gy") is not None:
            return f"global ({_fmt(g['normalisation_gy'], 4)} Gy)"
        return str(g.get("mode", ""))

    rows = [[g.get("criterion", ""), norm(g), _fmt(g.get("pass_rate_percent"), 4),
             _fmt(g.get("n_points")), _fmt(g.get("threshold"), 3)] for g in gamma]
    ref = gamma[0].get("reference", "MC") if gamma else "MC"
    ev = gamma[0].get("evaluated", "TG-43") if gamma else "TG-43"
    return _Block("Gamma analysis", ["criterion", "normalisation", "pass rate (%)", "points", "low-dose cutoff (Gy)"],
                  rows, note=f"reference: {ref}, evaluated: {ev}; pass: gamma <= 1 (pymedphys.gamma)")


def _tissue_block(tissue: Mapping[str, Mapping]) -> _Block:
    rows = []
    for name, t in tissue.items():
        mean = _fmt(t.get("mean_ratio"), 4)
        if t.get("mean_ratio_unc") is not None and math.isfinite(t.get("mean_ratio_unc", float("nan"))):
            mean += f" \u00b1 {t['mean_ratio_unc']:.2g}"
        rows.append([name, mean, _fmt(t.get("median_ratio"), 4), _fmt(t.get("p5"), 4), _fmt(t.get("p95"), 4),
                     _fmt(t.get("n_voxels")), _fmt(t.get("volume_cc"), 4)])
    return _Block("MC / TG-43 dose ratio by tissue",
                  ["class", "mean ratio", "median", "p5", "p95", "voxels", "volume (cc)"], rows,
                  note="mean ratio: sum(MC) / sum(TG-43) over the class (\u00b1 1 sigma statistical); "
                       "median and percentiles of the voxel ratios.")


def _figure_page(pdf: PdfPages, item) -> None:
    if isinstance(item, Figure):
        pdf.savefig(item)
        return
    p = Path(item)
    if not p.is_file():
        raise ConfigError(f"summary PDF: figure file {p} does not exist")
    import matplotlib.image as mimage

    img = mimage.imread(p)
    fig = Figure(figsize=A4_PORTRAIT_IN[::-1] if img.shape[1] >= img.shape[0] else A4_PORTRAIT_IN)
    ax = fig.add_axes((0.03, 0.03, 0.94, 0.91))
    ax.imshow(img, interpolation="antialiased")
    ax.axis("off")
    fig.suptitle(p.name, fontsize=9)
    pdf.savefig(fig)


def _summary_pages(title: str, blocks: list[_Block]) -> list[Figure]:
    """A4 pages holding the blocks top-down; a block that does not fit opens a new page."""
    page_w, page_h = A4_PORTRAIT_IN
    margin = 0.55
    pages: list[Figure] = []
    remaining = list(blocks)
    while not pages or remaining:
        fig = Figure(figsize=(page_w, page_h))
        head = title if not pages else f"{title} (continued)"
        fig.text(0.5, 1 - 0.45 / page_h, head, ha="center", va="center", fontsize=13, fontweight="bold")
        top, placed = 0.8, 0
        while remaining:
            b = remaining[0]
            if placed and top + b.height_in() > page_h - margin:
                break
            b.draw(fig, top, page_h, margin, page_w)
            top += b.height_in()
            remaining.pop(0)
            placed += 1
        pages.append(fig)
    return pages


def write_summary_pdf(
    path: str | Path,
    *,
    title: str,
    metrics_table: Mapping[str, Mapping] | None = None,
    comparison: Mapping[str, Mapping] | None = None,
    gamma: Sequence[Mapping] | None = None,
    tissue_ratios: Mapping[str, Mapping] | None = None,
    settings: Mapping | None = None,
    metrics_heading: str = "Structure metrics",
    figures: Sequence = (),
) -> Path:
    """Summary report: the first page(s) list run settings, the DVH metrics MC vs TG-43 with
    differences, gamma pass rates and MC/TG-43 ratios by tissue; one page per figure follows.

    Args:
        title: report title (patient / plan).
        metrics_table: extra per-structure values (name -> {column: value}), shown as given.
        comparison: output of :func:`brachymc.compare.dvh_comparison`.
        gamma: output of :func:`brachymc.compare.gamma_pass_rates`.
        tissue_ratios: output of :func:`brachymc.compare.ratio_by_tissue`.
        settings: run settings (histories, batches, seed, backend, device, wall time, mean GTV
            uncertainty, calibration, seed model, dose kind, ...), shown as key/value pairs.
        figures: png paths or matplotlib figures, one page each.

    The PDF is written to a temporary file and renamed onto ``path`` only when complete: an
    error (e.g. a missing figure) leaves no PDF behind.
    """
    blocks: list[_Block] = []
    if settings:
        blocks.append(_settings_block(settings))
    if comparison:
        blocks.append(_comparison_block(comparison))
    if metrics_table:
        blocks.append(_generic_block(metrics_heading, metrics_table))
    if gamma:
        blocks.append(_gamma_block(gamma))
    if tissue_ratios:
        blocks.append(_tissue_block(tissue_ratios))
    figures = list(figures)
    for f in figures:  # fail before writing anything
        if not isinstance(f, Figure) and not Path(f).is_file():
            raise ConfigError(f"summary PDF: figure file {f} does not exist")

    path = Path(path)
    with atomic_path(path) as tmp:
        with PdfPages(tmp) as pdf:
            for fig in _summary_pages(title, blocks):
                pdf.savefig(fig)
            for item in figures:
                _figure_page(pdf, item)
            info = pdf.infodict()
            info["Title"] = title
            info["Creator"] = "brachymc"
    return path
