"""Monte Carlo against TG-43: gamma pass rates, dose ratio maps, ratios by tissue and DVH metrics.

All functions work on dose arrays (Gy) indexed ``[iz, iy, ix]`` on the same
:class:`~brachymc.geometry.phantom.GridGeometry`. Voxels without a dose (NaN, e.g. the interiors
of modelled seeds, which score nothing) are left out of every comparison.

Conventions:

* **Reference = Monte Carlo, evaluated = TG-43.** The gamma index asks, for each MC voxel, how
  far (in dose and distance) the TG-43 distribution is from it; the MC dose is the better
  estimate of the truth in a heterogeneous patient, TG-43 the clinical approximation under test.
* **Ratios are MC / TG-43**: below 1 where heterogeneities (bone, calcifications, inter-seed
  shielding) lower the dose that the water-based TG-43 formalism predicts.

The gamma index is computed by :func:`pymedphys.gamma` (Low et al., Med. Phys. 25 (1998) 656;
search with interpolated evaluation grid after Wendling et al., Med. Phys. 34 (2007) 1647),
never by hand here. Global gamma normalises dose differences to the maximum reference dose over
the compared voxels (or to a given dose, e.g. the prescription); local gamma to the reference
dose of each voxel. Points below ``lower_dose_cutoff_percent`` of the normalisation dose are not
evaluated (AAPM TG-218 practice).
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Iterable, Mapping, Sequence

import numpy as np

from brachymc.dvh import dvh_metrics
from brachymc.errors import ConfigError
from brachymc.geometry.phantom import GridGeometry

__all__ = [
    "gamma_pass_rates",
    "dose_ratio_map",
    "dose_difference_map",
    "ratio_by_tissue",
    "dvh_comparison",
    "weighted_quantile",
]


# --------------------------------------------------------------------------------------- helpers

def _as_dose(name: str, a, shape: tuple[int, ...] | None = None) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.ndim != 3:
        raise ConfigError(f"{name}: expected a 3-D dose array (nz, ny, nx) in Gy, got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise ConfigError(f"{name}: shape {arr.shape} differs from the expected grid shape {tuple(shape)}")
    return arr


def _as_weights(name: str, w, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(w)
    if arr.shape != tuple(shape):
        raise ConfigError(f"structure {name!r}: weights shape {arr.shape} differs from the dose grid {tuple(shape)}")
    arr = arr.astype(float)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1 + 1e-9):
        raise ConfigError(f"structure {name!r}: weights must be finite and lie in [0, 1]")
    return np.minimum(arr, 1.0)


@contextlib.contextmanager
def _silenced_and_seeded(seed: int):
    """Silence pymedphys (root-logger INFO messages, prints of old versions) and seed NumPy's global RNG.

    ``pymedphys.gamma`` draws its ``random_subset`` with ``np.random.shuffle``; the global state is
    restored afterwards so callers' random streams are untouched.
    """
    state = np.random.get_state()
    previous_disable = logging.root.manager.disable
    logging.disable(logging.INFO)
    np.random.seed(seed)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous_disable)
        np.random.set_state(state)


def _fill_nearest(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Copy of ``a`` whose invalid voxels take the value of the nearest valid voxel (index space)."""
    if valid.all():
        return a
    from scipy import ndimage

    idx = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return a[tuple(idx)]


def _criterion_label(dose_percent: float, distance_mm: float) -> str:
    return f"{dose_percent:g}%/{distance_mm:g}mm"


# ----------------------------------------------------------------------------------------- gamma

def gamma_pass_rates(
    reference,
    evaluated,
    geometry: GridGeometry,
    criteria: Sequence[tuple[float, float]] = ((3, 2), (2, 2)),
    modes: Iterable[str] = ("global", "local"),
    lower_dose_cutoff_percent: float = 10.0,
    mask: np.ndarray | None = None,
    max_gamma: float = 1.1,
    random_subset: int | None = None,
    seed: int = 0,
    interp_fraction: int = 10,
    normalisation_gy: float | None = None,
) -> list[dict]:
    """Gamma pass rates of ``evaluated`` (TG-43) against ``reference`` (MC), both (nz, ny, nx) in Gy.

    Args:
        reference: reference dose (the Monte Carlo dose), Gy. NaN voxels are not evaluated.
        evaluated: evaluated dose (TG-43), Gy, on the same grid. Its NaN voxels are excluded as
            reference points too, and are filled with the nearest valid dose only so that the
            interpolated search around neighbouring points stays defined.
        geometry: the common grid; coordinates are passed to pymedphys in mm as (z, y, x).
        criteria: (dose %, distance mm) pairs, e.g. ``((3, 2), (2, 2))`` for 3 %/2 mm and 2 %/2 mm.
        modes: ``"global"`` and/or ``"local"`` normalisation.
        lower_dose_cutoff_percent: reference points below this % of the maximum reference dose
            (over the compared voxels) are not evaluated.
        mask: boolean (nz, ny, nx), **True where voxels are excluded** (e.g.
            ``SeededWorld.mask``, the seed interiors), or None.
        max_gamma: search stops beyond this gamma (gamma values above it are reported as it);
            must be >= 1 so that pass/fail (gamma <= 1) is exact.
        random_subset: evaluate only this many randomly chosen reference points (above the
            cutoff) to bound the time on large grids; drawn reproducibly from ``seed``.
        interp_fraction: the distance criterion is divided into this many steps for the search.
        normalisation_gy: dose to which global dose differences and the lower cutoff are
            relative; default the maximum reference dose over the compared voxels. Near seeds
            that maximum is many times the prescription, so passing the prescription dose gives
            the clinically meaningful global criterion for brachytherapy.

    Returns:
        One dict per (criterion, mode): ``criterion`` ("3%/2mm"), ``mode``, ``dose_percent``,
        ``distance_mm``, ``pass_rate_percent`` (share of evaluated points with gamma <= 1),
        ``n_points`` (evaluated points), ``n_pass``, ``threshold`` (the lower dose cutoff, Gy),
        ``lower_dose_cutoff_percent``, ``normalisation_gy``, ``reference``
        and ``evaluated`` ("MC", "TG-43"), ``max_gamma``.
    """
    import pymedphys

    ref = _as_dose("reference dose", reference, geometry.shape).copy()
    ev = _as_dose("evaluated dose", evaluated, geometry.shape)
    modes = tuple(modes)
    for m in modes:
        if m not in ("global", "local"):
            raise ConfigError(f"gamma mode must be 'global' or 'local', got {m!r}")
    crit = [(float(d), float(r)) for d, r in criteria]
    if not crit or any(not (d > 0 and r > 0) for d, r in crit):
        raise ConfigError(f"gamma criteria must be positive (dose %, distance mm) pairs, got {criteria!r}")
    if not max_gamma >= 1.0:
        raise ConfigError(f"max_gamma must be >= 1 (pass means gamma <= 1), got {max_gamma}")
    if not 0.0 <= lower_dose_cutoff_percent < 100.0:
        raise ConfigError(f"lower_dose_cutoff_percent must lie in [0, 100), got {lower_dose_cutoff_percent}")
    if random_subset is not None and int(random_subset) < 1:
        raise ConfigError(f"random_subset must be a positive number of points, got {random_subset}")

    excluded = ~np.isfinite(ref) | ~np.isfinite(ev)
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != tuple(geometry.shape) or m.dtype != bool:
            raise ConfigError(f"gamma mask must be a boolean array of the grid shape {geometry.shape}, "
                              f"got {m.dtype} {m.shape}")
        excluded |= m
    ref[excluded] = np.nan
    valid_ev = np.isfinite(ev)
    if not valid_ev.any() or excluded.all():
        raise ConfigError("gamma: no voxel has both a reference and an evaluated dose")
    norm = float(np.nanmax(ref)) if normalisation_gy is None else float(normalisation_gy)
    if not norm > 0:
        raise ConfigError(f"gamma: the normalisation dose must be positive, got {norm} Gy "
                          + ("(reference dose is zero everywhere it is defined)" if normalisation_gy is None
                             else "(normalisation_gy)"))
    ev_filled = _fill_nearest(ev, valid_ev)

    axes = tuple(geometry.centers(a) * 10.0 for a in (2, 1, 0))   # (z, y, x) in mm
    dose_thresholds = sorted({d for d, _ in crit})
    dist_thresholds = sorted({r for _, r in crit})
    threshold_gy = lower_dose_cutoff_percent / 100.0 * norm

    out: list[dict] = []
    for mode in modes:
        with _silenced_and_seeded(seed), np.errstate(invalid="ignore", divide="ignore"):
            res = pymedphys.gamma(
                axes, ref, axes, ev_filled,
                dose_percent_threshold=dose_thresholds,
                distance_mm_threshold=dist_thresholds,
                lower_percent_dose_cutoff=lower_dose_cutoff_percent,
                interp_fraction=interp_fraction,
                max_gamma=max_gamma,
                local_gamma=(mode == "local"),
                global_normalisation=norm,
                random_subset=None if random_subset is None else int(random_subset),
            )
        if not isinstance(res, dict):
            res = {(dose_thresholds[0], dist_thresholds[0]): res}
        by_key = {(float(k[0]), float(k[1])): v for k, v in res.items()}
        for d, r in crit:
            g = np.asarray(by_key[(d, r)])
            g = g[np.isfinite(g) & ~excluded]
            n = int(g.size)
            n_pass = int(np.count_nonzero(g <= 1.0))
            out.append({
                "criterion": _criterion_label(d, r),
                "mode": mode,
                "dose_percent": d,
                "distance_mm": r,
                "pass_rate_percent": 100.0 * n_pass / n if n else float("nan"),
                "n_points": n,
                "n_pass": n_pass,
                "threshold": threshold_gy,
                "lower_dose_cutoff_percent": float(lower_dose_cutoff_percent),
                "normalisation_gy": norm,
                "max_gamma": float(max_gamma),
                "reference": "MC",
                "evaluated": "TG-43",
            })
    return out


# ------------------------------------------------------------------------------------ dose maps

def dose_ratio_map(mc, tg43, floor_fraction: float = 0.05) -> np.ndarray:
    """MC / TG-43 voxel by voxel; NaN where TG-43 is below ``floor_fraction`` of its maximum or undefined."""
    a = _as_dose("MC dose", mc)
    b = _as_dose("TG-43 dose", tg43, a.shape)
    if not 0.0 <= floor_fraction < 1.0:
        raise ConfigError(f"floor_fraction must lie in [0, 1), got {floor_fraction}")
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        raise ConfigError("dose ratio: no voxel has both an MC and a TG-43 dose")
    floor = floor_fraction * float(np.max(b[ok]))
    ok &= (b > 0) & (b >= floor)
    out = np.full(a.shape, np.nan)
    out[ok] = a[ok] / b[ok]
    return out


def dose_difference_map(mc, tg43, percent_of: float | None = None) -> np.ndarray:
    """MC - TG-43 (Gy), or in % of ``percent_of`` (e.g. the prescription) when given; NaN propagates."""
    a = _as_dose("MC dose", mc)
    b = _as_dose("TG-43 dose", tg43, a.shape)
    diff = a - b
    if percent_of is not None:
        if not percent_of > 0:
            raise ConfigError(f"percent_of must be a positive dose (Gy), got {percent_of}")
        diff = 100.0 * diff / percent_of
    return diff


# --------------------------------------------------------------------------------- tissue ratios

def weighted_quantile(values, weights, q) -> np.ndarray:
    """Quantiles ``q`` (0..1) of ``values`` with non-negative ``weights`` (midpoint rule).

    Each value holds the interval of cumulative weight it represents and is placed at its
    middle; quantiles between those points are interpolated linearly. With equal weights this
    is the Hazen definition (``np.quantile(..., method="hazen")``).
    """
    v = np.asarray(values, float).ravel()
    w = np.asarray(weights, float).ravel()
    keep = w > 0
    v, w = v[keep], w[keep]
    if v.size == 0:
        return np.full(np.shape(q), np.nan)
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
    cum = np.cumsum(w)
    pos = (cum - 0.5 * w) / cum[-1]
    return np.interp(q, pos, v)


def ratio_by_tissue(
    mc,
    tg43,
    weights_by_class: Mapping[str, np.ndarray],
    min_dose_gy: float | None = None,
    mc_rel_unc: np.ndarray | None = None,
    voxel_cc: float | None = None,
) -> dict[str, dict]:
    """MC / TG-43 dose ratios per tissue class (bone, marrow, cord, soft tissue, GTV, ...).

    Args:
        mc, tg43: doses (nz, ny, nx) in Gy.
        weights_by_class: class name -> boolean mask or partial-volume weights in [0, 1].
        min_dose_gy: keep only voxels whose **TG-43** dose is at least this (TG-43 is noise
            free, so the selection does not bias the MC mean), e.g. to skip the noisy low-dose tail.
        mc_rel_unc: relative 1-sigma statistical uncertainty of the MC dose per voxel.
        voxel_cc: voxel volume (cm3), for ``volume_cc``.

    Returns:
        class -> ``mean_ratio`` (dose-weighted: sum(w * mc) / sum(w * tg43)), ``median_ratio``,
        ``p5``, ``p95`` (voxelwise ratios, quantiles weighted by w), ``n_voxels`` (voxels used),
        ``volume_cc`` (sum of w x voxel_cc, None without ``voxel_cc``), ``mean_tg43_gy``,
        ``mean_mc_gy`` and, with ``mc_rel_unc``, ``mean_ratio_unc`` (1 sigma, voxels independent)
        and ``mean_mc_rel_unc`` (w-weighted mean relative uncertainty). Classes without a usable
        voxel get NaN ratios and ``n_voxels`` 0.
    """
    a = _as_dose("MC dose", mc)
    b = _as_dose("TG-43 dose", tg43, a.shape)
    u = None
    if mc_rel_unc is not None:
        u = np.asarray(mc_rel_unc, float)
        if u.shape != a.shape:
            raise ConfigError(f"mc_rel_unc: shape {u.shape} differs from the dose grid {a.shape}")
    base = np.isfinite(a) & np.isfinite(b) & (b > 0)
    if min_dose_gy is not None:
        base &= b >= float(min_dose_gy)
    out: dict[str, dict] = {}
    for name, weights in weights_by_class.items():
        w = _as_weights(name, weights, a.shape)
        sel = base & (w > 0)
        ws, ms, ts = w[sel], a[sel], b[sel]
        n = int(ws.size)
        entry = {
            "n_voxels": n,
            "volume_cc": float(ws.sum() * voxel_cc) if voxel_cc is not None else None,
            "mean_ratio": float("nan"), "median_ratio": float("nan"),
            "p5": float("nan"), "p95": float("nan"),
            "mean_mc_gy": float("nan"), "mean_tg43_gy": float("nan"),
        }
        if u is not None:
            entry["mean_ratio_unc"] = float("nan")
            entry["mean_mc_rel_unc"] = float("nan")
        if n:
            smc, stg, sw = float(np.sum(ws * ms)), float(np.sum(ws * ts)), float(ws.sum())
            r = ms / ts
            p5, med, p95 = weighted_quantile(r, ws, [0.05, 0.5, 0.95])
            entry.update(mean_ratio=smc / stg, median_ratio=float(med), p5=float(p5), p95=float(p95),
                         mean_mc_gy=smc / sw, mean_tg43_gy=stg / sw)
            if u is not None:
                us = u[sel]
                finite = np.isfinite(us)
                if finite.all():
                    entry["mean_ratio_unc"] = float(np.sqrt(np.sum((ws * ms * us) ** 2)) / stg)
                if finite.any():
                    entry["mean_mc_rel_unc"] = float(np.sum(ws[finite] * us[finite]) / ws[finite].sum())
        out[name] = entry
    return out


# ----------------------------------------------------------------------------------------- DVHs

#: metrics compared as relative differences (% of TG-43) and as differences in percentage points
DOSE_KEYS = ("D90_Gy", "D100_Gy", "D2cc_Gy", "D0.1cc_Gy", "Dmax_Gy", "Dmean_Gy")
VOLUME_PERCENT_KEYS = ("V100_percent", "V150_percent", "V200_percent")


def dvh_comparison(
    mc,
    tg43,
    structures: Mapping[str, np.ndarray],
    voxel_cc: float,
    prescription_gy: float | None,
) -> dict[str, dict]:
    """DVH metrics of each structure under MC and TG-43 (:func:`brachymc.dvh.dvh_metrics`).

    Voxels where either dose is undefined (NaN: seed interiors) are dropped from the structure
    for **both** doses, so the two sets of metrics describe the same volume.

    Returns:
        name -> ``{"mc": metrics, "tg43": metrics, "diff": {...}, "excluded_cc": float}`` where
        ``diff`` holds, for the dose metrics (``*_Gy``), 100 (MC - TG-43) / TG-43 in %, and for
        the volume metrics (``V*_percent``), MC - TG-43 in percentage points (None where a
        metric is missing or TG-43 is 0).
    """
    a = _as_dose("MC dose", mc)
    b = _as_dose("TG-43 dose", tg43, a.shape)
    if not voxel_cc > 0:
        raise ConfigError(f"voxel_cc must be a positive volume (cm3), got {voxel_cc}")
    defined = np.isfinite(a) & np.isfinite(b)
    out: dict[str, dict] = {}
    for name, weights in structures.items():
        w = _as_weights(name, weights, a.shape)
        excluded_cc = float(w[~defined].sum() * voxel_cc)
        w = np.where(defined, w, 0.0)
        if not np.any(w > 0):
            raise ConfigError(f"structure {name!r}: no voxel with both an MC and a TG-43 dose")
        am, bm = np.where(defined, a, 0.0), np.where(defined, b, 0.0)
        m_mc = dvh_metrics(am, w, voxel_cc, prescription_gy)
        m_tg = dvh_metrics(bm, w, voxel_cc, prescription_gy)
        diff: dict[str, float | None] = {}
        for k in DOSE_KEYS:
            x, y = m_mc.get(k), m_tg.get(k)
            diff[k] = 100.0 * (x - y) / y if x is not None and y else None
        for k in VOLUME_PERCENT_KEYS:
            if k in m_mc and k in m_tg:
                diff[k] = m_mc[k] - m_tg[k]
        out[name] = {"mc": m_mc, "tg43": m_tg, "diff": diff, "excluded_cc": excluded_cc}
    return out
