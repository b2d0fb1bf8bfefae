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

import functools
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from brachymc.dvh import DVH
from brachymc.errors import ConfigError
from brachymc.geometry.phantom import GridGeometry
from brachymc.files import atomic_path

__all__ = ["plot_slices", "plot_dvh", "plot_difference", "write_summary_pdf", "write_patient_report",
           "ISODOSE_LEVELS"]

CT_WINDOW_HU = (-200.0, 1200.0)
#: isodose levels (% of the prescription) and their colours
ISODOSE_LEVELS = {50: "tab:blue", 100: "tab:green", 150: "tab:orange", 200: "tab:red"}
RATIO_RANGE = (0.7, 1.3)          # MC/TG-43 colour range when the map has no data
RATIO_MIN_SPAN = 0.15             # the colour range covers at least 1 -/+ this
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
    colours: Mapping[str, object] | None = None,
) -> Path:
    """Axial, sagittal and coronal planes through ``center_cm`` (x, y, z; cm) with isodoses.

    CT (HU, may be None) in grey, isodose lines at 50/100/150/200 % of ``prescription_gy``
    (labelled), structure outlines (weights contoured at 0.5; ``colours``: name -> matplotlib
    colour, e.g. the RTSTRUCT's ROIDisplayColor) and the seeds (``seeds_cm`` (n, 3) in cm) lying
    within max(half a voxel, 2.5 mm) of each plane. Written to ``path``.
    """
    if not prescription_gy or prescription_gy <= 0:
        raise ConfigError(f"prescription_gy must be a positive dose (Gy), got {prescription_gy}")
    shape = geometry.shape
    dose = _check_volume("dose", dose_gy, shape)
    ct = None if ct_hu is None else _check_volume("CT (HU)", ct_hu, shape)
    structs = {n: _check_volume(f"structure {n!r}", w, shape) for n, w in (structures or {}).items()}
    seeds = np.asarray(seeds_cm if seeds_cm is not None else np.zeros((0, 3)), float).reshape(-1, 3)
    index = _center_index(geometry, center_cm)
    colour_of = {n: (colours or {}).get(n, STRUCTURE_COLOURS[k % len(STRUCTURE_COLOURS)]) for k, n in enumerate(structs)}

    fig = Figure(figsize=(13.0, 5.0), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, kind in zip(axes, ("axial", "sagittal", "coronal")):
        view = _View(kind, geometry, index)
        _draw_ct(ax, view, ct)
        dplane = view.take(dose)
        for pct, colour in ISODOSE_LEVELS.items():
            cs = _contour(ax, view, dplane, prescription_gy * pct / 100.0, colors=colour, linewidths=0.9,
                          linestyles="dashed")
            if cs is not None:
                ax.clabel(cs, fmt={cs.levels[0]: f"{pct}%"}, fontsize=6, inline=True)
        for name, w in structs.items():
            _contour(ax, view, view.take(w), 0.5, colors=[colour_of[name]], linewidths=1.6, linestyles="solid")
        if len(seeds):
            near = np.abs(seeds[:, view.normal] - view.position) <= _seed_tolerance_cm(view)
            if near.any():
                ax.plot(10 * seeds[near, view.h_axis], 10 * seeds[near, view.v_axis], marker="o", ms=3.5,
                        mfc="gold", mec="black", mew=0.5, ls="none")
        view.setup(ax)
    handles = [Line2D([], [], color=c, lw=0.9, ls="--", label=f"{p}% ({prescription_gy * p / 100:.3g} Gy)")
               for p, c in ISODOSE_LEVELS.items()]
    handles += [Line2D([], [], color=colour_of[n], lw=1.6, label=n) for n in structs]
    if len(seeds):
        handles.append(Line2D([], [], marker="o", ms=3.5, mfc="gold", mec="black", ls="none", label="seeds"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------ DVH

def plot_dvh(
    path: str | Path,
    dvhs: Mapping[str, tuple[DVH | None, ...] | DVH],
    prescription_gy: float | None,
    title: str = "Cumulative DVH (solid: MC, dashed: TG-43)",
    colours: Mapping[str, object] | None = None,
) -> Path:
    """Cumulative DVHs (relative volume) of each structure: MC solid, TG-43 dashed, prescription line.

    ``dvhs``: name -> (MC DVH, TG-43 DVH or None[, TG-43 DVH of the whole ROI, drawn dotted]), or
    a single DVH; ``colours``: name -> matplotlib colour (default: the C0..C9 cycle).
    """
    if not dvhs:
        raise ConfigError("plot_dvh: no DVH given")
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = fig.subplots()
    xmax = 0.0
    for k, (name, pair) in enumerate(dvhs.items()):
        parts = tuple(pair) if isinstance(pair, tuple) else (pair,)
        mc, tg, whole = (parts + (None, None))[:3]
        colour = (colours or {}).get(name, f"C{k % 10}")
        if mc is not None:
            ax.plot(mc.dose, mc.volume_percent, color=colour, lw=1.4, label=f"{name} MC")
            xmax = max(xmax, float(mc.dose[-1]))
        if tg is not None:
            ax.plot(tg.dose, tg.volume_percent, color=colour, lw=1.2, ls="--", label=f"{name} TG-43")
            xmax = max(xmax, float(tg.dose[-1]))
        if whole is not None:
            ax.plot(whole.dose, whole.volume_percent, color=colour, lw=1.0, ls=":", label=f"{name} TG-43 whole ROI")
            xmax = max(xmax, float(whole.dose[-1]))
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

def ratio_scale(ratios: np.ndarray) -> tuple[float, float]:
    """Colour range of an MC/TG-43 map: the 1st and 99th percentiles of the ratios, widened to
    include at least 1 -/+ ``RATIO_MIN_SPAN`` (so a map of ratios near 1 is not all noise)."""
    r = np.asarray(ratios, float)
    r = r[np.isfinite(r) & (r > 0)]
    if r.size == 0:
        return RATIO_RANGE
    lo = min(float(np.percentile(r, 1.0)), 1.0 - RATIO_MIN_SPAN)
    hi = max(float(np.percentile(r, 99.0)), 1.0 + RATIO_MIN_SPAN)
    return min(lo, 0.999), max(hi, 1.001)


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
    finite = np.isfinite(a) & np.isfinite(b) & (b > 0)
    level = 0.1 * (prescription_gy if prescription_gy else float(np.max(b[finite])) if finite.any() else 0.0)
    sel = finite & (b > level)
    lo, hi = ratio_scale(a[sel] / b[sel] if sel.any() else np.ones(1))
    norm = mcolors.TwoSlopeNorm(vcenter=1.0, vmin=lo, vmax=hi)

    fig = Figure(figsize=(13.0, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
    im = None
    for ax, kind in zip(axes[:2], ("axial", "sagittal")):
        view = _View(kind, geometry, index)
        _draw_ct(ax, view, ct)
        im = ax.imshow(np.ma.masked_invalid(view.take(ratio)), cmap="RdBu_r", norm=norm, alpha=0.75,
                       extent=view.extent, origin=view.origin, interpolation="nearest")
        view.setup(ax)
    nice = (0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.3, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0)
    below = [v for v in nice if lo <= v < 1.0][-4:]
    above = [v for v in nice if 1.0 < v <= hi][:4] if hi < 2.0 else [v for v in nice if 1.0 < v <= hi and
                                                                        v in (1.2, 1.5, 2.0, 3.0, 5.0, 10.0)]
    ticks = below + [1.0] + above
    fig.colorbar(im, ax=list(axes[:2]), shrink=0.85, label="MC / TG-43", extend="both", ticks=ticks)

    ax = axes[2]
    if sel.any():
        r = a[sel] / b[sel]
        h_lo, h_hi = min(lo, float(np.percentile(r, 0.5))), max(hi, float(np.percentile(r, 99.5)))
        ax.hist(np.clip(r, h_lo, h_hi), bins=80, range=(h_lo, h_hi), color="0.4")
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


def _dose(v, unc=None) -> str:
    """A dose or volume percentage (1 decimal; 2 below 10; none from 1000), +- its sigma."""
    if v is None or not math.isfinite(float(v)):
        return "-"
    v = float(v)
    dec = 0 if abs(v) >= 1000 else 1 if abs(v) >= 10 else 2
    text = f"{v:.{dec}f}"
    if unc is not None and math.isfinite(float(unc)):
        u = float(unc)
        text += f" \u00b1 {u:.{dec}f}" if u >= 0.5 * 10.0 ** -dec else f" \u00b1 <{10.0 ** -dec:g}"
    return text


PAGE_MARGIN_IN = 0.55
FONT_PT = 6.8
LINE_IN = 1.32 * FONT_PT / 72.0


@functools.lru_cache(maxsize=4)
def _measure(bold: bool):
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    return TextToPath(), FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal")


@functools.lru_cache(maxsize=20000)
def _width_in(text: str, font_pt: float, bold: bool = False) -> float:
    """Width (inches) of ``text`` in the report font: unhinted outline metrics, as the PDF draws
    them (plus 2 %)."""
    ttp, prop = _measure(bold)
    prop = prop.copy()
    prop.set_size(font_pt)
    return 1.02 * ttp.get_text_width_height_descent(text, prop, ismath=False)[0] / 72.0


def _wrap(text: str, width_in: float, font_pt: float = FONT_PT, bold: bool = False) -> list[str]:
    """Lines of ``text`` no wider than ``width_in`` (words broken only when one alone is wider)."""
    out: list[str] = []
    for para in str(text).split("\n"):
        line = ""
        for word in para.split(" "):
            trial = f"{line} {word}" if line else word
            if _width_in(trial, font_pt, bold) <= width_in or not line:
                line = trial
            else:
                out.append(line)
                line = word
            while _width_in(line, font_pt, bold) > width_in and len(line) > 1:      # a word wider than the cell
                k = len(line)
                while k > 1 and _width_in(line[:k], font_pt, bold) > width_in:
                    k -= 1
                out.append(line[:k])
                line = line[k:]
        out.append(line)
    return out


class _Table:
    """A table drawn cell by cell: text wrapped to the column widths, so nothing overflows.

    ``widths``: column widths as fractions of the text width; ``fills``: {(row, col): colour}.
    """

    def __init__(self, heading: str, columns: Sequence[str] | None, rows: Sequence[Sequence], widths=None,
                 note: str | None = None, fills: Mapping | None = None, bold_rows: Sequence[int] = (),
                 font_pt: float = FONT_PT):
        self.heading, self.columns, self.note = heading, list(columns) if columns else None, note
        self.rows = [[str(c) for c in r] for r in rows]
        n = len(self.columns) if self.columns else (len(self.rows[0]) if self.rows else 1)
        self.widths = list(widths) if widths else [1.0 / n] * n
        self.fills, self.bold_rows, self.font_pt = dict(fills or {}), set(bold_rows), font_pt

    def _layout(self, text_w: float):
        pad = 0.05
        line = 1.32 * self.font_pt / 72.0
        cells = []
        for r, row in enumerate(([self.columns] if self.columns else []) + self.rows):
            bold = (self.columns is not None and r == 0) or (r - (1 if self.columns else 0)) in self.bold_rows
            wrapped = [_wrap(c, max(self.widths[k] * text_w - 2 * pad, 0.2), self.font_pt, bold)
                       for k, c in enumerate(row)]
            cells.append((wrapped, max(len(w) for w in wrapped) * line + 2 * pad * 0.6))
        note = _wrap(self.note, text_w, self.font_pt - 0.3) if self.note else []
        return cells, note, line

    def height_in(self, text_w: float) -> float:
        cells, note, line = self._layout(text_w)
        return 0.30 + sum(h for _, h in cells) + (len(note) * line + 0.06 if note else 0.0) + 0.16

    def draw(self, fig: Figure, top_in: float, page: tuple[float, float], margin: float) -> None:
        pw, ph = page
        text_w = pw - 2 * margin
        cells, note, line = self._layout(text_w)
        X = lambda x: x / pw  # noqa: E731
        Y = lambda y: 1 - y / ph  # noqa: E731
        fig.text(X(margin), Y(top_in + 0.16), self.heading, fontsize=9.5, fontweight="bold", va="center")
        y = top_in + 0.30
        for r, (wrapped, h) in enumerate(cells):
            header = self.columns is not None and r == 0
            data_r = r - (1 if self.columns else 0)
            x = margin
            for k, lines in enumerate(wrapped):
                w = self.widths[k] * text_w
                fill = "0.88" if header else self.fills.get((data_r, k))
                if fill is not None:
                    fig.patches.append(Rectangle((X(x), Y(y + h)), w / pw, h / ph, transform=fig.transFigure,
                                                 facecolor=fill, edgecolor="none", zorder=0))
                bold = header or data_r in self.bold_rows
                for j, t in enumerate(lines):
                    fig.text(X(x + 0.05), Y(y + 0.04 + (j + 0.5) * line), t, fontsize=self.font_pt, va="center",
                             fontweight="bold" if bold else "normal")
                x += w
            fig.add_artist(Line2D([X(margin), X(pw - margin)], [Y(y + h), Y(y + h)], lw=0.3, color="0.6"))
            y += h
        fig.add_artist(Line2D([X(margin), X(pw - margin)], [Y(top_in + 0.30)] * 2, lw=0.6, color="0.3"))
        if note:
            for j, t in enumerate(note):
                fig.text(X(margin), Y(y + 0.06 + (j + 0.5) * line), t, fontsize=self.font_pt - 0.3, style="italic",
                         va="center")


class _Text:
    """A heading and wrapped paragraphs (bullets when ``bullets``)."""

    def __init__(self, heading: str, paragraphs: Sequence[str], bullets: bool = False, font_pt: float = FONT_PT):
        self.heading, self.paragraphs, self.bullets, self.font_pt = heading, list(paragraphs), bullets, font_pt

    def _lines(self, text_w: float) -> list[str]:
        out = []
        for p in self.paragraphs:
            lines = _wrap(p, text_w - (0.15 if self.bullets else 0.0), self.font_pt)
            out += [("\u2022 " if self.bullets and k == 0 else ("   " if self.bullets else "")) + t
                    for k, t in enumerate(lines)]
        return out

    def height_in(self, text_w: float) -> float:
        return 0.30 + len(self._lines(text_w)) * 1.32 * self.font_pt / 72.0 + 0.16

    def draw(self, fig: Figure, top_in: float, page: tuple[float, float], margin: float) -> None:
        pw, ph = page
        fig.text(margin / pw, 1 - (top_in + 0.16) / ph, self.heading, fontsize=9.5, fontweight="bold", va="center")
        line = 1.32 * self.font_pt / 72.0
        for j, t in enumerate(self._lines(pw - 2 * margin)):
            fig.text(margin / pw, 1 - (top_in + 0.32 + (j + 0.5) * line) / ph, t, fontsize=self.font_pt, va="center")


def _pages(title: str, subtitle: str, blocks: list) -> list[Figure]:
    """A4 pages holding the blocks top-down; a block that does not fit opens a new page."""
    page = A4_PORTRAIT_IN
    pw, ph = page
    margin = PAGE_MARGIN_IN
    pages: list[Figure] = []
    remaining = list(blocks)
    while not pages or remaining:
        fig = Figure(figsize=page)
        head = title if not pages else f"{title} (continued)"
        fig.text(0.5, 1 - 0.42 / ph, head, ha="center", va="center", fontsize=13, fontweight="bold")
        if subtitle:
            fig.text(0.5, 1 - 0.66 / ph, subtitle, ha="center", va="center", fontsize=8)
        top, placed = 0.85, 0
        while remaining:
            b = remaining[0]
            h = b.height_in(pw - 2 * margin)
            if placed and top + h > ph - margin:
                break
            b.draw(fig, top, page, margin)
            top += h
            remaining.pop(0)
            placed += 1
        pages.append(fig)
    return pages


def _settings_block(settings: Mapping) -> _Table:
    items = [(str(k), _fmt(v)) for k, v in settings.items()]
    half = (len(items) + 1) // 2
    left, right = items[:half], items[half:] + [("", "")] * (half - len(items[half:]))
    rows = [[a, b, c, d] for (a, b), (c, d) in zip(left, right)]
    return _Table("Run settings and uncertainties", None, rows, widths=[0.22, 0.28, 0.22, 0.28])


def _generic_block(heading: str, table: Mapping[str, Mapping]) -> _Table:
    keys: list[str] = []
    for row in table.values():
        for k in row:
            if k not in keys:
                keys.append(k)
    rows = [[str(name)] + [_fmt(row.get(k)) for k in keys] for name, row in table.items()]
    n = len(keys) + 1
    return _Table(heading, ["structure"] + [k.replace("_", " ") for k in keys], rows,
                  widths=[0.3] + [0.7 / max(n - 1, 1)] * (n - 1))


_DVH_COLUMNS = (("D90_Gy", "D90"), ("D100_Gy", "D100"), ("V100_percent", "V100"), ("V150_percent", "V150"),
                ("V200_percent", "V200"), ("D2cc_Gy", "D2cc"), ("D0.1cc_Gy", "D0.1cc"), ("Dmax_Gy", "Dmax*"),
                ("Dmean_Gy", "Dmean"), ("volume_cc", "volume"))


def _diff_cell(key: str, d) -> str:
    if d is None:
        return ""
    return f"{d:+.1f} pp" if key.endswith("_percent") else f"{d:+.1f} %"


def _comparison_block(comparison: Mapping[str, Mapping], heading: str = "DVH metrics, Monte Carlo vs TG-43",
                      columns=_DVH_COLUMNS, note: str | None = None) -> _Table:
    cols = [(k, label) for k, label in columns
            if any((c.get("mc") or c.get("tg43_whole") or {}).get(k) is not None for c in comparison.values())]
    rows, bold = [], []
    for name, c in comparison.items():
        unc = c.get("mc_unc") or {}
        if c.get("mc"):
            bold.append(len(rows))
            rows.append([name, "MC"] + [_dose(c["mc"].get(k), unc.get(k)) if k != "volume_cc" else
                                        _fmt(c["mc"].get(k), 4) for k, _ in cols])
            rows.append(["", "TG-43"] + [_dose(c["tg43"].get(k)) if k != "volume_cc" else _fmt(c["tg43"].get(k), 4)
                                         for k, _ in cols])
            rows.append(["", "\u0394"] + [_diff_cell(k, (c.get("diff") or {}).get(k)) for k, _ in cols])
        if c.get("tg43_whole"):
            label = "TG-43, whole ROI"
            if not c.get("mc"):
                bold.append(len(rows))
            rows.append([name if not c.get("mc") else "", label] +
                        [_dose(c["tg43_whole"].get(k)) if k != "volume_cc" else _fmt(c["tg43_whole"].get(k), 4)
                         for k, _ in cols])
    note = note or ("D in Gy, V in % of the ROI, volume in cm3; MC values \u00b1 1 sigma (statistical). \u0394: D in % "
                    "of TG-43, V in percentage points (MC - TG-43); voxels inside seeds excluded from both. "
                    "Dmax*: the highest single-voxel dose among the voxels wholly inside the ROI.")
    return _Table(heading, ["ROI", "dose"] + [label for _, label in cols], rows,
                  widths=[0.14, 0.15] + [0.71 / max(len(cols), 1)] * len(cols), note=note, bold_rows=bold)


def _gamma_block(gamma: Sequence[Mapping]) -> _Table:
    def norm(g):
        if g.get("mode") == "global" and g.get("normalisation_gy") is not None:
            return f"global ({_fmt(g['normalisation_gy'], 4)} Gy)"
        return str(g.get("mode", ""))

    rows = [[g.get("criterion", ""), norm(g), _fmt(g.get("pass_rate_percent"), 4),
             _fmt(g.get("n_points")), _fmt(g.get("threshold"), 3)] for g in gamma]
    ref = gamma[0].get("reference", "MC") if gamma else "MC"
    ev = gamma[0].get("evaluated", "TG-43") if gamma else "TG-43"
    return _Table("Gamma analysis", ["criterion", "normalisation", "pass rate (%)", "points", "low-dose cutoff (Gy)"],
                  rows, widths=[0.16, 0.26, 0.18, 0.16, 0.24],
                  note=f"Reference {ref}, evaluated {ev} (pymedphys.gamma): the share of voxels above the low-dose "
                       "cutoff where the TG-43 dose agrees with the MC dose within the dose difference or the "
                       "distance. TG-43 treats the patient as water, so low pass rates measure how much the "
                       "heterogeneities (bone, marrow, inter-seed attenuation) matter; they are not a fault of "
                       "either calculation.")


def _tissue_block(tissue: Mapping[str, Mapping]) -> _Table:
    rows = []
    for name, t in tissue.items():
        mean = _fmt(t.get("mean_ratio"), 4)
        if t.get("mean_ratio_unc") is not None and math.isfinite(t.get("mean_ratio_unc", float("nan"))):
            mean += f" \u00b1 {t['mean_ratio_unc']:.2g}"
        rows.append([name, mean, _fmt(t.get("median_ratio"), 4), _fmt(t.get("p5"), 4), _fmt(t.get("p95"), 4),
                     _fmt(t.get("n_voxels")), _fmt(t.get("volume_cc"), 4)])
    return _Table("MC / TG-43 dose ratio by tissue",
                  ["class", "mean ratio", "median", "p5", "p95", "voxels", "volume (cm3)"], rows,
                  widths=[0.2, 0.2, 0.12, 0.12, 0.12, 0.1, 0.14],
                  note="mean ratio: sum(MC) / sum(TG-43) over the class (\u00b1 1 sigma statistical); "
                       "median and percentiles of the voxel ratios.")


def _footer(fig: Figure, text: str) -> None:
    fig.text(0.5, 0.012, text, ha="center", va="bottom", fontsize=6.5, color="0.35")


def _figure_page(pdf: PdfPages, item, caption: str | None = None, footer: str = "") -> None:
    if isinstance(item, Figure):
        pdf.savefig(item)
        return
    p = Path(item)
    if not p.is_file():
        raise ConfigError(f"summary PDF: figure file {p} does not exist")
    import matplotlib.image as mimage

    img = mimage.imread(p)
    wide = img.shape[1] >= img.shape[0]
    size = A4_PORTRAIT_IN[::-1] if wide else A4_PORTRAIT_IN
    fig = Figure(figsize=size)
    ax = fig.add_axes((0.03, 0.12 if caption else 0.03, 0.94, 0.82 if caption else 0.91))
    ax.imshow(img, interpolation="antialiased")
    ax.axis("off")
    if caption:
        for j, t in enumerate(_wrap(caption, size[0] - 1.0, 8)):
            fig.text(0.5 / size[0], 0.10 - j * 0.025, t, fontsize=8, va="top")
    if footer:
        _footer(fig, footer)
    pdf.savefig(fig)


def _write_pdf(path: Path, title: str, pages: list[Figure], figures: Sequence, captions: Sequence,
               footer: str = "") -> Path:
    """Pages, then one page per figure; "page k of n" on each when ``footer`` is given."""
    figures = list(figures)
    for f in figures:  # fail before writing anything
        if not isinstance(f, Figure) and not Path(f).is_file():
            raise ConfigError(f"summary PDF: figure file {f} does not exist")
    path = Path(path)
    with atomic_path(path) as tmp:
        with PdfPages(tmp) as pdf:
            total = len(pages) + len(figures)
            for k, fig in enumerate(pages):
                if footer:
                    _footer(fig, f"{footer}  -  page {k + 1} of {total}")
                pdf.savefig(fig)
            for k, item in enumerate(figures):
                _figure_page(pdf, item, captions[k] if k < len(captions) else None,
                             f"{footer}  -  page {len(pages) + k + 1} of {total}" if footer else "")
            info = pdf.infodict()
            info["Title"] = title
            info["Creator"] = "brachymc"
    return path


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
        settings: run settings shown as key/value pairs.
        figures: png paths or matplotlib figures, one page each.

    The PDF is written to a temporary file and renamed onto ``path`` only when complete: an
    error (e.g. a missing figure) leaves no PDF behind. A patient run writes its report with
    :func:`write_patient_report`.
    """
    blocks: list = []
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
    return _write_pdf(Path(path), title, _pages(title, "", blocks), figures, ())


# ------------------------------------------------------------------------------ patient report

_TARGET_COLUMNS = (("D90_Gy", "D90"), ("D100_Gy", "D100"), ("V100_percent", "V100"), ("V150_percent", "V150"),
                   ("V200_percent", "V200"), ("Dmean_Gy", "Dmean"), ("volume_cc", "volume"))
_OAR_COLUMNS = (("D0.1cc_Gy", "D0.1cc"), ("D2cc_Gy", "D2cc"), ("Dmax_Gy", "Dmax*"), ("Dmean_Gy", "Dmean"),
                ("D90_Gy", "D90"), ("volume_cc", "volume"))

_STATUS_TEXT = {"evaluated": "evaluated", "partial": "partly covered", "outside_grid": "outside the grid",
                "outside_ct": "outside the CT", "empty": "empty", "excluded": "not evaluated"}
_STOP_TEXT = {"histories": "history limit reached", "target": "target uncertainty reached",
              "time": "time budget spent"}


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def _per_seed(plan: Mapping) -> str:
    lo, hi = (list(plan.get("sk_per_seed_U_at_implant") or []) + [None, None])[:2]
    if lo is None:
        return "-"
    return _fmt(lo, 4) if hi is None or abs(hi - lo) <= 1e-6 * max(abs(hi), 1e-30) else f"{_fmt(lo, 4)}-{_fmt(hi, 4)}"


def _case_block(s: Mapping) -> _Table:
    pat, plan, st = s.get("patient") or {}, s.get("plan") or {}, s.get("statistics") or {}
    sw = s.get("software") or {}
    rows = [
        ["patient", (f"{pat.get('name') or '-'} (ID {pat.get('id')})" if pat.get("id") else
                     "not given (the CT input has no patient data)"), "plan label", plan.get("label") or "-"],
        ["plan file", Path(str(plan.get("file", "-"))).name, "plan UID", plan.get("uid") or "-"],
        ["seeds", f"{plan.get('n_seeds')} x {plan.get('seed_model_name') or plan.get('seed_model')} "
                  f"({plan.get('seed_model')})", "air-kerma strength",
         f"{_fmt(plan.get('sk_total_U_at_implant'), 4)} U in all at implant ({_per_seed(plan)} U per seed)"],
        ["implant date", _fmt(plan.get("implant_date")), "dose", f"{s.get('dose_unit', '')}"
         + (f"; prescription {s['prescription_gy']:g} Gy" if s.get("prescription_gy") else "")],
        ["software", f"{sw.get('name', 'brachymc')} {sw.get('version', s.get('version', ''))}", "calculated",
         f"{s.get('created', '-')} on {s.get('device', '-')}"
         + (f" ({s.get('backend')})" if s.get("backend") and s.get("backend") != s.get("device") else "")],
        ["run file", Path(str(s.get("config", "-"))).name, "stop",
         f"{_STOP_TEXT.get(st.get('stopped_by'), st.get('stopped_by'))}"],
    ]
    return _Table("Patient, plan and run", None, rows, widths=[0.13, 0.37, 0.15, 0.35])


def _dataset_text(d: Mapping) -> str:
    kind, src = d.get("dataset"), str(d.get("dataset_source") or "")
    if kind == "brachymc":
        return f"brachymc's own Monte Carlo TG-43 dataset for the {d.get('seed_model')} (configs/tg43)"
    if kind == "tg43u1":
        return src.split(";")[0] if src else "AAPM TG-43U1 consensus"
    return f"{Path(kind).name} ({src.split(';')[0]})" if kind else src


def _doses_block(s: Mapping) -> _Table:
    doses = s.get("doses") or {}
    rows = []
    for key in ("mc", "mc_water", "tg43"):
        d = doses.get(key)
        if not d:
            continue
        how = d.get("description", "")
        if key == "tg43":
            lam = d.get("lambda_cGy_per_h_per_U")
            own = d.get("brachymc_mc_lambda") or {}
            how += (f". Dataset: {_dataset_text(d)}; dose-rate constant Λ = "
                    f"{_fmt(lam, 4)} cGy h-1 U-1")
            if own.get("lambda_cGy_per_h_per_U"):
                u = own.get("rel_unc")
                how += (f"; brachymc's own MC Λ for the {d.get('seed_model')}: "
                        f"{own['lambda_cGy_per_h_per_U']:.4f} cGy h-1 U-1" + (f" (\u00b1 {100 * u:.1f} %)" if u else "")
                        + (f", the dataset's is {d['lambda_vs_brachymc_percent']:+.1f} %"
                           if d.get("lambda_vs_brachymc_percent") is not None else ""))
        rows.append([d.get("quantity", key), d.get("name", ""), how])
    return _Table("What each dose is", ["quantity", "dose", "how it is computed"], rows, widths=[0.1, 0.24, 0.66])


def _seeds_text(seeds: Sequence[int]) -> str:
    seeds = list(seeds)
    names = ", ".join(f"#{i}" for i in seeds[:6]) + (" ..." if len(seeds) > 6 else "")
    return f"seed {names} reaches" if len(seeds) == 1 else f"seeds {names} reach"


def _calc_block(s: Mapping) -> _Table:
    g, st = s.get("grid") or {}, s.get("statistics") or {}
    vox = " x ".join(f"{v:g}" for v in g.get("voxel_mm", [])) or "-"
    shape = g.get("shape_zyx") or []
    crop = g.get("crop_margin_mm")
    pad = g.get("padding_voxels") or {}
    unc = st.get("target_mean_rel_uncertainty")
    goal = st.get("target_uncertainty_goal")
    resumed = ("no" if not st.get("resumed") else
               (f"yes: {st.get('checkpoint_batches')} batches from the checkpoint, the run had already stopped"
                if st.get("checkpoint_had_stopped") else
                f"yes: {st.get('checkpoint_batches')} batches from the checkpoint, continued with batch "
                f"{st.get('continued_from_batch')}"))
    rows = [
        ["calculation grid", f"{shape[2] if shape else '-'} x {shape[1] if shape else '-'} x {shape[0] if shape else '-'}"
                             f" voxels of {vox} mm", "extent", g.get("extent", "-")],
        ["crop", f"seeds \u00b1 {crop:g} mm" if crop is not None else "none (whole CT)", "resampling",
         (" x ".join(f"{v:g}" for v in g["resampled_to_mm"]) + " mm, mean HU") if g.get("resampled_to_mm")
         else "none (CT voxels)"],
        ["CT", f"{' x '.join(str(v) for v in (g.get('ct_shape_zyx') or [])[::-1])} voxels of "
               f"{' x '.join(f'{v:g}' for v in g.get('ct_voxel_mm', []))} mm", "padding",
         ("; ".join(f"{n} voxel{'s' if n > 1 else ''} at {k}" for k, n in pad.items()) + " of the adjacent medium: "
          + _seeds_text(g.get("padded_for_seeds", [])) + " past the CT edge") if pad else "none"],
        ["media", f"{s.get('calibration', '-')}", "transport", f"{s.get('mode', '-')} (every seed modelled)"
         if s.get("mode") == "full" else f"{s.get('mode', '-')}"],
        ["histories", f"{_fmt(st.get('histories'))} in {_fmt(st.get('batches'))} batches (seed {st.get('seed')})",
         "uncertainty", (f"{100 * unc:.2f} % mean in {st.get('target_roi')}" if unc is not None else "-")
         + (f" (goal {100 * goal:g} %)" if goal else "")],
        ["transport time", f"{_fmt(st.get('transport_time_s'), 3)} s", "resumed", resumed],
    ]
    return _Table("Calculation", None, rows, widths=[0.13, 0.37, 0.12, 0.38])


def _roi_block(s: Mapping) -> _Table:
    rows, fills = [], {}
    for k, r in enumerate(s.get("rois") or []):
        cf = r.get("covered_fraction")
        fills[(k, 0)] = _hex(r.get("color_rgb", (200, 200, 200)))
        rows.append(["", r["name"], r.get("type") or "-", (r.get("role") or "").replace("cord", "organ at risk"),
                     _STATUS_TEXT.get(r["status"], r["status"]), _fmt(r.get("contour_volume_cc"), 4),
                     _fmt(r.get("volume_on_grid_cc"), 4), f"{100 * cf:.1f}" if cf is not None else "-"])
    return _Table("Structures (RTSTRUCT)", ["", "ROI", "type", "role", "status", "contoured (cm3)", "on grid (cm3)",
                                            "covered (%)"], rows,
                  widths=[0.03, 0.2, 0.1, 0.12, 0.17, 0.13, 0.13, 0.12], fills=fills,
                  note="colours: ROIDisplayColor of the structure set; covered: share of the ROI within the CT that "
                       "the calculation grid holds (the MC DVH is of that part).")


def _notes_block(s: Mapping) -> _Text | None:
    notes = s.get("notes") or []
    if not notes:
        return None
    order = sorted(notes, key=lambda n: 0 if n.get("level") == "warning" else 1)
    return _Text("Notes", [("(!) " if n.get("level") == "warning" else "") + str(n.get("message", ""))
                           for n in order], bullets=True)


def write_patient_report(path: str | Path, summary: Mapping, figures: Sequence = ()) -> Path:
    """The patient report: what each dose is, the grid and statistics, target and OAR metrics with
    their uncertainties, every ROI and what happened to it, notes; then the comparison details
    (tissue ratios, CT corrections, gamma with its meaning) and the figures (slices, DVH, MC/TG-43).

    ``summary``: the run's ``summary.json`` content; ``figures``: the png files, in that order.
    """
    s = summary
    metrics = s.get("metrics") or {}
    targets = {n: m for n, m in metrics.items() if m.get("role") == "target" or m.get("type") in ("GTV", "CTV", "PTV")}
    oars = {n: m for n, m in metrics.items() if n not in targets}
    blocks: list = [_case_block(s), _doses_block(s), _calc_block(s)]
    unc_note = ("MC: Dm,m. MC values \u00b1 1 sigma statistical (delete-a-group jackknife over the batches); D in Gy, V in % of "
                "the ROI, volume in cm3. \u0394: D in % of TG-43, V in percentage points. MC and TG-43 rows cover the "
                "same voxels (the ROI on the calculation grid outside the seeds).")
    if targets:
        blocks.append(_comparison_block(targets, "Target", _TARGET_COLUMNS, note=unc_note))
    if oars:
        blocks.append(_comparison_block(oars, "Organs at risk and other ROIs", _OAR_COLUMNS, note=(
            "D0.1cc, D2cc: minimum dose to the hottest 0.1 / 2 cm3 (the OAR metrics). Dmax*: a single-voxel value, "
            "the highest dose among the voxels wholly inside the ROI; it carries one voxel's statistical noise. "
            "TG-43 whole ROI: the ROI's part beyond the calculation grid included (TG-43 needs no phantom).")))
    blocks.append(_roi_block(s))
    nb = _notes_block(s)
    if nb is not None:
        blocks.append(nb)
    details: list = []
    if s.get("tissue_ratios"):
        details.append(_tissue_block(s["tissue_ratios"]))
    if s.get("ct_corrections_table"):
        details.append(_generic_block("CT corrections (HU -> media)", s["ct_corrections_table"]))
    if s.get("gamma"):
        details.append(_gamma_block(s["gamma"]))
    pat, plan = s.get("patient") or {}, s.get("plan") or {}
    title = "brachymc patient dose report"
    subtitle = "  |  ".join(([f"patient {pat['id']}"] if pat.get("id") else [])
                            + [f"plan {plan.get('label') or Path(str(plan.get('file', ''))).name}",
                               str(s.get("created", "")), f"brachymc {s.get('version', '')}"])
    pages = _pages(title, subtitle, blocks)
    if details:
        pages += _pages("Comparison details", subtitle, details)
    captions = ["CT with the Monte Carlo dose (Dm,m): isodose lines in % of the prescription, ROI outlines in their "
                "ROIDisplayColor, seeds within the plane (gold).",
                "Cumulative DVHs: MC solid, TG-43 dashed (same voxels); dotted: TG-43 over the whole ROI where the "
                "calculation grid covers only part of it.",
                "MC / TG-43 dose ratio on the axial and sagittal planes through the target (colour scale from the "
                "data: 1st to 99th percentile about 1), and its histogram in voxels above 10 % of the prescription."]
    footer = "  -  ".join([f"brachymc {s.get('version', '')}"] + ([f"patient {pat['id']}"] if pat.get("id") else [])
                          + ([f"plan {plan['label']}"] if plan.get("label") else []))
    return _write_pdf(Path(path), title, pages, figures, captions, footer=footer)
