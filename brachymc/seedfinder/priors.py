"""Optional knowledge about the implant: body, region of interest, expected count, needle tracks.

None of these removes a seed. A seed outside the body or the ROI, or beyond the expected count,
stays in the output with the reason it is doubtful; the user decides.

* **Expected count** N: when fewer seeds were found, the clusters whose intensity says most
  clearly that they hold one more seed than fitted (r - k largest, at least 0.25; r the summed
  excess in seeds of the fitted tilts) get k + 1 seeds, one at a time, until N is reached or no
  cluster qualifies; when more were found, the lowest-confidence seeds beyond N are flagged.
* **Needle tracks**: runs of >= 3 seeds on one straight line along their own in-plane axes
  (within 20 deg, at most 14 mm apart), found one line at a time (:func:`track_lines`); reported,
  and in thick slices their seeds take the track's direction (:func:`apply_track_prior`).
"""

from __future__ import annotations

import numpy as np


def _voxel_index(p_mm, voxel, origin):
    return np.floor((np.asarray(p_mm) - origin) / voxel).astype(int)


def flag_outside_body(seeds: list[dict], body_small: np.ndarray, voxel, origin, step: int) -> None:
    """Flag seeds whose centre is outside the (coarse) body mask."""
    for s in seeds:
        ix, iy, iz = _voxel_index(s["position_mm"], voxel, origin)
        iz = int(np.clip(iz, 0, body_small.shape[0] - 1))
        jy = int(np.clip(int(round(iy / step)), 0, body_small.shape[1] - 1))
        jx = int(np.clip(int(round(ix / step)), 0, body_small.shape[2] - 1))
        if not body_small[iz, jy, jx]:
            s["doubtful"].append("outside the body (on the skin, the table or in air)")
            s["confidence"] = min(s["confidence"], 0.2)


def flag_outside_roi(seeds: list[dict], roi_mask: np.ndarray, voxel, origin, margin_mm: float, name: str) -> None:
    """Flag seeds farther than ``margin_mm`` outside the ROI (mask on the CT grid)."""
    from scipy import ndimage

    m = np.asarray(roi_mask) >= 0.5
    if not m.any():
        for s in seeds:
            s["doubtful"].append(f"ROI {name} is empty on this CT")
        return
    dist = ndimage.distance_transform_edt(~m, sampling=(voxel[2], voxel[1], voxel[0]))
    for s in seeds:
        ix, iy, iz = _voxel_index(s["position_mm"], voxel, origin)
        if not (0 <= iz < m.shape[0] and 0 <= iy < m.shape[1] and 0 <= ix < m.shape[2]):
            s["doubtful"].append(f"outside ROI {name}")
            continue
        d = float(dist[iz, iy, ix])
        if d > margin_mm:
            s["doubtful"].append(f"{d:.0f} mm outside ROI {name}")


def flag_beyond_expected(seeds: list[dict], expected: int, notes: list[str]) -> None:
    """More seeds than expected: flag the lowest-confidence ones beyond the count."""
    n = len(seeds)
    if n > expected:
        order = np.argsort([s["confidence"] for s in seeds])
        for i in order[: n - expected]:
            seeds[int(i)]["doubtful"].append(f"beyond the expected {expected} seeds (among the {n - expected} least "
                                             "confident)")
        notes.append(f"{n} seeds found, {expected} expected: the {n - expected} least confident are flagged doubtful")
    elif n < expected:
        notes.append(f"{n} seeds found, {expected} expected: {expected - n} not found (check the QA figure)")


def apply_expected_count(work, expected, one_more, notes, k_max) -> None:
    """Fewer seeds than expected: give one seed more, one at a time, to the cluster where it costs
    least. ``one_more(w)`` returns (cost, fit): the rise of the split's score (image misfit, the
    per-seed penalty, the intensity count, overlaps; infinite for a split with a seed of less than
    half a seed's intensity) from the cluster's k-seed fit to its k + 1-seed fit, and that fit.
    The score is the one that chose k, so the seed goes where the image and the intensity together
    argue most for it (ranking by intensity alone put it where bone had raised a cluster's excess,
    validation page)."""
    total = sum(w.fit.k for w in work)
    added = 0
    while total < expected:
        cands = []
        for i, w in enumerate(work):
            if w.fit.k >= k_max:
                continue
            cost, fit = one_more(w)
            if np.isfinite(cost):
                cands.append((cost, i, w, fit))
        if not cands:
            break
        _, _, w, fit = min(cands, key=lambda c: c[:2])            # ties: the first cluster
        w.fit, w.k = fit, fit.k
        total += 1
        added += 1
    if added:
        notes.append(f"expected {expected} seeds: {added} cluster(s) given one more seed than the fit preferred")


def needle_tracks(seeds: list[dict], slice_mm: float = 1.0, max_gap_mm: float = 14.0,
                  max_angle_deg: float = 20.0) -> tuple[tuple[int, ...], ...]:
    """Needle tracks of the final seeds, reported (the same line search as the thick-slice prior,
    :func:`track_lines`): runs of >= 3 seeds on one straight line along their own in-plane axes.
    Sets ``seed['track']`` to the track's index."""
    out = []
    for idx, *_ in track_lines(seeds, slice_mm, max_gap_mm, max_angle_deg):
        for a in idx:
            seeds[a]["track"] = len(out)
        out.append(tuple(sorted(idx)))
    return tuple(out)


def _closest_points(p1, d1, p2, d2, h):
    """Closest points of the segments p_i + t d_i, |t| <= h (unit d_i): (q1, q2)."""
    r = p1 - p2
    b = float(d1 @ d2)
    c, f = float(d1 @ r), float(d2 @ r)
    den = 1.0 - b * b
    s = np.clip((b * f - c) / den, -h, h) if den > 1e-12 else 0.0
    t = np.clip(b * s + f, -h, h)
    s = np.clip(b * t - c, -h, h)
    return p1 + s * d1, p2 + t * d2


def separate_overlaps(seeds: list[dict], capsule_length_mm: float, capsule_diameter_mm: float,
                      gap_mm: float = 0.02, iterations: int = 30) -> tuple[int, float]:
    """Seeds are solid: move capsules that intersect apart along their line of closest approach
    (each by half the overlap, ``gap_mm`` clearance) until none do. Returns the number of pairs
    that overlapped and the largest move (mm)."""
    r = 0.5 * capsule_diameter_mm
    h = 0.5 * capsule_length_mm - r
    pos = np.array([s["position_mm"] for s in seeds], float)
    dirs = np.array([s["direction"] for s in seeds], float)
    start = pos.copy()
    pairs = set()
    for _ in range(iterations):
        moved = False
        for i in range(len(pos)):
            near = np.flatnonzero(np.linalg.norm(pos - pos[i], axis=1) < 2 * (h + r) + gap_mm)
            for j in near[near > i]:
                q1, q2 = _closest_points(pos[i], dirs[i], pos[j], dirs[j], h)
                v = q1 - q2
                d = float(np.linalg.norm(v))
                need = 2 * r + gap_mm
                if d >= need:
                    continue
                if d < 1e-9:
                    v = np.cross(dirs[i], [0.0, 0.0, 1.0]) if abs(dirs[i][2]) < 0.9 else np.cross(dirs[i], [1.0, 0, 0])
                    d = 0.0
                v = v / max(np.linalg.norm(v), 1e-12)
                push = 0.5 * (need - d) + 1e-4
                pos[i] += push * v
                pos[j] -= push * v
                pairs.add((i, int(j)))
                moved = True
        if not moved:
            break
    for s, p in zip(seeds, pos):
        s["position_mm"] = tuple(float(v) for v in p)
    return len(pairs), float(np.max(np.linalg.norm(pos - start, axis=1))) if len(pos) else 0.0


# ----------------------------------------------------------------------------------------------
# needle tracks as a prior in thick slices

def _inplane(u: np.ndarray) -> np.ndarray | None:
    v = np.array([u[0], u[1]], float)
    n = float(np.linalg.norm(v))
    return v / n if n > 0.5 else None


#: prior spread of a needle's slope out of the slice plane (tan 20 deg): CT-guided needles are
#: advanced in or near the gantry plane, where the scan shows them whole
NEEDLE_TILT_SD = float(np.tan(np.radians(20.0)))
#: seeds on a needle track lie end to end (a 6711 capsule is 4.5 mm long): members of one track
#: are at least this far apart along it
MIN_TRACK_SPACING_MM = 3.0


def _line_fit(q: np.ndarray):
    """In-plane principal line of >= 3 points and z as a straight line along it: (centre, unit
    in-plane direction, z0, slope, distances along it, in-plane residuals)."""
    c2 = q[:, :2].mean(axis=0)
    e = np.linalg.eigh(np.cov((q[:, :2] - c2).T))[1][:, -1]
    s = (q[:, :2] - c2) @ e
    perp = (q[:, :2] - c2) @ np.array([-e[1], e[0]])
    (z0, slope), *_ = np.linalg.lstsq(np.column_stack([np.ones(len(s)), s]), q[:, 2], rcond=None)
    return c2, e, float(z0), float(slope), s, perp


def track_lines(seeds: list[dict], slice_mm: float, max_gap_mm: float = 14.0, max_angle_deg: float = 20.0,
                max_tilt_deg: float = 35.0, max_offset_mm: float = 1.5):
    """Needle tracks seen in thick slices: runs of >= 3 seeds lying (in-plane) on one straight line
    along their own in-plane axes, at most ``max_gap_mm`` apart along it, within ``max_offset_mm``
    of it in-plane and a slice of it in z, rising by at most ``max_tilt_deg`` out of the slice
    plane. Each track as (seed indices, point, unit direction, in-plane residual RMS mm, lowest and
    highest distance along it).

    Tracks are taken one at a time, the one with the most seeds first (ties: the smaller in-plane
    residual), each seed on one track at most: every pair of neighbouring seeds proposes a line,
    the seeds close to it in a run without gaps are its members. Linking neighbours into connected
    groups instead merges parallel needles a few mm apart into one group (measured on the 2.5 mm,
    100-seed validation scan: groups of 14-20 seeds from 2-3 needles, which no line fits)."""
    n = len(seeds)
    if n < 3:
        return []
    p = np.array([s["position_mm"] for s in seeds], float)
    a2 = [_inplane(np.asarray(s["direction"], float)) for s in seeds]
    ok = np.array([a is not None for a in a2])
    A2 = np.array([a if a is not None else (0.0, 0.0) for a in a2])
    cosmax = np.cos(np.radians(max_angle_deg))
    tan_tilt = np.tan(np.radians(max_tilt_deg))
    pairs = []
    for i in range(n):
        if not ok[i]:
            continue
        for j in range(i + 1, n):
            if not ok[j]:
                continue
            d = p[j, :2] - p[i, :2]
            dist = float(np.linalg.norm(d))
            if not 3.0 <= dist <= max_gap_mm:
                continue
            e = d / dist
            if abs(e @ A2[i]) < cosmax or abs(e @ A2[j]) < cosmax:
                continue
            if abs(p[j, 2] - p[i, 2]) > tan_tilt * dist + slice_mm:
                continue
            pairs.append((i, j))
    free = ok.copy()
    # a seed lying inside a slice is placed in z to about half the slice (its flat top)
    dz_max = max(0.6 * slice_mm, 1.5)

    def members(i, j):
        """The run of free seeds on the line through seeds i and j that holds both."""
        e = (p[j, :2] - p[i, :2]) / np.linalg.norm(p[j, :2] - p[i, :2])
        slope = (p[j, 2] - p[i, 2]) / float(np.linalg.norm(p[j, :2] - p[i, :2]))
        rel = p[:, :2] - p[i, :2]
        s = rel @ e
        perp = rel @ np.array([-e[1], e[0]])
        dz = p[:, 2] - (p[i, 2] + slope * s)
        near = free & (np.abs(perp) <= max_offset_mm) & (np.abs(dz) <= dz_max) & (np.abs(A2 @ e) >= cosmax)
        near[[i, j]] = True
        idx = np.flatnonzero(near)
        idx = idx[np.argsort(s[idx], kind="stable")]
        # seeds on one needle lie end to end: of members closer than MIN_TRACK_SPACING_MM along the
        # line (a side-by-side pair) only the one nearest the line counts
        kept = []
        for a in idx:
            if kept and s[a] - s[kept[-1]] < MIN_TRACK_SPACING_MM:
                if a in (i, j) or (kept[-1] not in (i, j) and abs(perp[a]) < abs(perp[kept[-1]])):
                    kept[-1] = a
                continue
            kept.append(a)
        idx = np.array(kept, int)
        run = next(r for r in np.split(idx, np.flatnonzero(np.diff(s[idx]) > max_gap_mm) + 1) if i in r)
        return run if j in run else np.array([i, j])

    out = []
    while True:
        best = None
        for i, j in pairs:
            if not (free[i] and free[j]):
                continue
            m = members(i, j)
            if len(m) < 3:
                continue
            key = (-len(m), float(np.sqrt(np.mean(_line_fit(p[m])[5] ** 2))))
            if best is None or key < best[0]:
                best = (key, m)
        if best is None:
            break
        m = best[1]
        c2, e, z0, slope, s, perp = _line_fit(p[m])
        free[m] = False
        if abs(slope) > tan_tilt + slice_mm / max(float(s.max() - s.min()), 1e-9):
            continue
        # the seeds' heights are known to about a slice (uniform over it: sd T / sqrt(12)); the
        # slope they give is shrunk towards the slice plane with a prior sd of NEEDLE_TILT_SD
        var_slope = (slice_mm ** 2 / 12.0) / max(float(np.sum((s - s.mean()) ** 2)), 1e-9)
        slope *= NEEDLE_TILT_SD ** 2 / (NEEDLE_TILT_SD ** 2 + var_slope)
        d = np.array([e[0], e[1], slope])
        d /= np.linalg.norm(d)
        out.append((tuple(sorted(int(v) for v in m)), np.array([c2[0], c2[1], z0]), d,
                    float(np.sqrt(np.mean(perp ** 2))), float(s.min()), float(s.max())))
    return out


def apply_track_prior(seeds: list[dict], slice_mm: float, notes: list[str], max_gap_mm: float = 14.0,
                      max_offset_mm: float = 1.5) -> int:
    """Thick slices: seeds on a needle track (:func:`track_lines`, in-plane residual at most
    ``max_offset_mm``) take the track's direction. A seed lying inside one thick slice shows its
    in-plane direction but neither the sign nor the size of its tilt; a needle is straight and
    deposits its seeds along itself, and the track's tilt comes from the heights of all its seeds.
    (Their heights stay their own: measured on the 5 mm validation scans, the track's straight line
    through the seeds' heights, each known only to a slice's flat top, placed them worse.)
    Returns the number of seeds whose direction was replaced."""
    tracks = track_lines(seeds, slice_mm, max_gap_mm, max_offset_mm=max_offset_mm)
    refined = 0
    for idx, point, d, rms, s_lo, s_hi in tracks:
        u = d if d[2] >= 0 else -d
        for i in idx:
            seeds[i]["direction"] = tuple(float(v) for v in u)
            refined += 1
    if refined:
        notes.append(f"needle tracks (thick slices): {refined} seed(s) on {len(tracks)} track(s) take the track's direction")
    return refined
