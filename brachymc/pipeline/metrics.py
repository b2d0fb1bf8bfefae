"""DVH metrics of a patient run: MC vs TG-43 per ROI, their statistical uncertainty, whole-ROI TG-43.

For every ROI that gets a DVH (:meth:`brachymc.pipeline.rois.RoiSet.with_dvh`):

* ``mc`` and ``tg43``: metrics of the MC and the TG-43 dose over the same voxels, the ROI's
  part on the calculation grid minus the voxels inside seeds (:func:`brachymc.compare.dvh_comparison`),
  with ``diff`` (MC vs TG-43) and ``excluded_cc`` (volume inside seeds);
* ``mc_unc``: the 1-sigma statistical uncertainty of each MC metric, by the delete-a-group
  jackknife over G groups of batches (:class:`brachymc.pipeline.runner.BatchGroups`): the metric
  is recomputed from the mean dose of all batches but one group's, and
  sigma^2 = (G - 1)/G sum_g (m_(g) - mean m)^2. It includes the correlation between voxels (the
  same photons dose neighbouring voxels) that a voxel-by-voxel propagation would miss;
* ``tg43_whole``: TG-43 metrics of the whole ROI (within the CT) where the calculation grid covers
  only part of it (``covered_fraction`` < 1) or none of it; TG-43 needs no phantom, so it is
  evaluated at the uncovered voxels too.
"""

from __future__ import annotations

import math

import numpy as np

from brachymc.compare import dvh_comparison
from brachymc.dvh import cumulative_dvh, dvh_metrics
from brachymc.pipeline.notes import Note

#: metrics that get a statistical uncertainty (Gy or % of the volume)
UNCERTAIN_KEYS = ("D90_Gy", "D100_Gy", "Dmean_Gy", "Dmax_Gy", "D2cc_Gy", "D0.1cc_Gy", "V100_percent",
                  "V150_percent", "V200_percent")


def jackknife_sigma(values: list[float]) -> float | None:
    """Delete-a-group jackknife standard error from the leave-one-group-out values."""
    v = np.asarray([x for x in values if x is not None], float)
    g = v.size
    if g < 2 or g != len(values):
        return None
    return float(math.sqrt((g - 1) / g * np.sum((v - v.mean()) ** 2)))


def _grid_weights(r, dose: np.ndarray, tg43: np.ndarray) -> np.ndarray | None:
    """The ROI's weights on the grid where both doses exist (outside the seeds); None if none."""
    if not r.on_grid:
        return None
    w = np.where(np.isfinite(dose) & np.isfinite(tg43), r.mask, 0.0).astype(np.float64)
    return w if np.any(w > 0) else None


def _whole_roi_tg43(r, tg43: np.ndarray, w_grid, beyond) -> tuple[np.ndarray, np.ndarray] | None:
    """TG-43 doses and weights of the whole ROI: its grid part (outside seeds) and its voxels beyond."""
    if beyond is None or r.outside_weights is None:
        return None
    ok = np.isfinite(beyond)
    d_parts, w_parts = [beyond[ok]], [r.outside_weights[ok]]
    if w_grid is not None:
        k = np.flatnonzero(w_grid.reshape(-1) > 0)
        d_parts.insert(0, tg43.reshape(-1)[k])
        w_parts.insert(0, w_grid.reshape(-1)[k])
    d, w = np.concatenate(d_parts), np.minimum(np.concatenate(w_parts).astype(np.float64), 1.0)
    return (d, w) if np.any(w > 0) else None


def roi_metrics(rois, dose: np.ndarray, tg43: np.ndarray, scored: np.ndarray, voxel_cc: float,
                prescription_gy: float | None, *, loo_doses: list[np.ndarray] | None = None,
                loo_index: np.ndarray | None = None, tg43_beyond: dict | None = None) -> tuple[dict, list]:
    """Metrics of every ROI with a DVH (see the module docstring); and notes.

    ``dose``, ``tg43``: Gy on the calculation grid (TG-43 NaN inside seeds); ``scored``: voxels
    outside seeds. ``loo_doses``: leave-one-group-out MC doses (Gy) at the flat voxel indices
    ``loo_index`` (which must hold every ROI voxel outside the seeds). ``tg43_beyond``: ROI name ->
    TG-43 dose (Gy) at the ROI's outside points.
    """
    out: dict[str, dict] = {}
    notes: list = []
    mc = np.where(scored, dose, np.nan)
    for name, r in rois.with_dvh().items():
        e: dict = {"status": r.status, "role": r.role or None, "type": r.roi_type,
                   "covered_fraction": r.covered_fraction, "volume_in_ct_cc": r.volume_in_ct_cc,
                   "volume_on_grid_cc": r.volume_on_grid_cc, "mc": None, "tg43": None, "diff": {},
                   "excluded_cc": 0.0, "mc_unc": {}, "tg43_whole": None}
        w_grid = _grid_weights(r, mc, tg43)
        if r.on_grid and w_grid is None:
            notes.append(Note("roi_inside_seeds", f"ROI {name!r}: every voxel of it on the grid lies inside "
                              "a seed (no dose)", {"roi": name}, level="warning"))
        if w_grid is not None:
            c = dvh_comparison(mc, tg43, {name: r.mask}, voxel_cc, prescription_gy)[name]
            e.update(mc=c["mc"], tg43=c["tg43"], diff=c["diff"], excluded_cc=c["excluded_cc"])
            if loo_doses:
                k = np.flatnonzero(w_grid.reshape(-1) > 0)
                pos = np.searchsorted(loo_index, k)
                wk = w_grid.reshape(-1)[k]
                per = [dvh_metrics(d[pos], wk, voxel_cc, prescription_gy) for d in loo_doses]
                e["mc_unc"] = {key: jackknife_sigma([m.get(key) for m in per]) for key in UNCERTAIN_KEYS
                               if c["mc"].get(key) is not None}
                e["mc_unc_groups"] = len(loo_doses)
        whole = _whole_roi_tg43(r, tg43, w_grid, (tg43_beyond or {}).get(name))
        if whole is not None:
            e["tg43_whole"] = dvh_metrics(whole[0], whole[1], voxel_cc, prescription_gy)
        if e["mc"] is None and e["tg43_whole"] is None:
            continue
        out[name] = e
    return out, notes


def roi_dvh_curves(rois, dose: np.ndarray, tg43: np.ndarray, scored: np.ndarray, voxel_cc: float,
                   tg43_beyond: dict | None = None, points: int = 1000) -> dict:
    """Cumulative DVHs per ROI: ``mc``, ``tg43`` (grid part) and ``tg43_whole_roi`` (where the grid
    covers only part of the ROI), each ROI binned at 1/``points`` of its own highest dose."""
    out: dict[str, dict] = {}
    mc = np.where(scored, dose, np.nan)
    for name, r in rois.with_dvh().items():
        w_grid = _grid_weights(r, mc, tg43)
        parts = {}
        if w_grid is not None:
            k = np.flatnonzero(w_grid.reshape(-1) > 0)
            wk = w_grid.reshape(-1)[k]
            parts["mc"] = (mc.reshape(-1)[k], wk)
            parts["tg43"] = (tg43.reshape(-1)[k], wk)
        whole = _whole_roi_tg43(r, tg43, w_grid, (tg43_beyond or {}).get(name))
        if whole is not None:
            parts["tg43_whole_roi"] = whole
        if not parts:
            continue
        top = max(float(np.max(d[w > 0])) for d, w in parts.values())
        bin_gy = max(top / points, 1e-12)
        out[name] = {k: cumulative_dvh(name, d, w, voxel_cc, bin_gy) for k, (d, w) in parts.items()}
    return out
