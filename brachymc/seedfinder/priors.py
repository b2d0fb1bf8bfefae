"""Optional knowledge about the implant: body, region of interest, expected count, needle tracks.

None of these removes a seed. A seed outside the body or the ROI, or beyond the expected count,
stays in the output with the reason it is doubtful; the user decides.

* **Expected count** N: when fewer seeds were found, the clusters whose intensity says most
  clearly that they hold one more seed than fitted (r - k largest, at least 0.25; r the summed
  excess in seeds of the fitted tilts) get k + 1 seeds, one at a time, until N is reached or no
  cluster qualifies; when more were found, the lowest-confidence seeds beyond N are flagged.
* **Needle tracks**: seeds whose axes line up with the line joining them (within 20 deg, at most
  12 mm apart) are linked; chains of >= 3 are tracks (reported; a seed on a track is
  corroborated by its neighbours).
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


def apply_expected_count(work, expected, refit, count_of, notes, k_max) -> None:
    """Fewer seeds than expected: give k + 1 seeds to the clusters whose intensity argues most for it
    (``count_of(w)``: the cluster's summed excess in seeds of its fitted tilts, at least k + 0.25;
    ``refit(w, k)`` returns the component's k-seed fit), one at a time."""
    total = sum(w.fit.k for w in work)
    added = 0
    while total < expected:
        cands = [(count_of(w) - w.fit.k, w) for w in work if w.fit.k < k_max]
        cands = [c for c in cands if c[0] >= 0.25]
        if not cands:
            break
        _, w = max(cands, key=lambda c: c[0])
        k = w.fit.k + 1
        w.fit, w.k = refit(w, k), k
        total += 1
        added += 1
    if added:
        notes.append(f"expected {expected} seeds: {added} cluster(s) given one more seed than the fit preferred")


def _linked_groups(adj: list[list[int]]) -> list[list[int]]:
    """Connected groups of an adjacency list (depth first, in index order)."""
    seen = [False] * len(adj)
    groups = []
    for i in range(len(adj)):
        if seen[i]:
            continue
        stack, comp = [i], []
        seen[i] = True
        while stack:
            a = stack.pop()
            comp.append(a)
            for b in adj[a]:
                if not seen[b]:
                    seen[b] = True
                    stack.append(b)
        groups.append(comp)
    return groups


def needle_tracks(seeds: list[dict], max_gap_mm: float = 12.0, max_angle_deg: float = 20.0):
    """Chains of >= 3 seeds along their own axes (see the module docstring); sets ``seed['track']``."""
    n = len(seeds)
    if n < 3:
        return ()
    p = np.array([s["position_mm"] for s in seeds])
    u = np.array([s["direction"] for s in seeds])
    cosmax = np.cos(np.radians(max_angle_deg))
    adj = [[] for _ in range(n)]
    for i in range(n):
        d = p - p[i]
        dist = np.linalg.norm(d, axis=1)
        for j in np.flatnonzero((dist > 1.0) & (dist <= max_gap_mm)):
            if j <= i:
                continue
            e = d[j] / dist[j]
            if abs(e @ u[i]) >= cosmax and abs(e @ u[j]) >= cosmax:
                adj[i].append(int(j))
                adj[int(j)].append(i)
    tracks = []
    for comp in _linked_groups(adj):
        if len(comp) >= 3:
            for a in comp:
                seeds[a]["track"] = len(tracks)
            tracks.append(tuple(sorted(comp)))
    return tuple(tracks)


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


def track_lines(seeds: list[dict], slice_mm: float, max_gap_mm: float = 14.0, max_angle_deg: float = 20.0,
                max_tilt_deg: float = 35.0):
    """Needle tracks seen in thick slices: chains of >= 3 seeds lying (in-plane) on one line along
    their own in-plane axes, at most ``max_gap_mm`` apart, rising by at most ``max_tilt_deg`` out of
    the slice plane plus a slice. Each track as (seed indices, point, unit direction, in-plane
    residual RMS mm): the line fitted to the in-plane positions (principal axis), its z as a
    straight line in the distance along it (least squares)."""
    n = len(seeds)
    if n < 3:
        return []
    p = np.array([s["position_mm"] for s in seeds], float)
    a2 = [_inplane(np.asarray(s["direction"], float)) for s in seeds]
    cosmax = np.cos(np.radians(max_angle_deg))
    adj = [[] for _ in range(n)]
    for i in range(n):
        if a2[i] is None:
            continue
        for j in range(i + 1, n):
            if a2[j] is None:
                continue
            d = p[j, :2] - p[i, :2]
            dist = float(np.linalg.norm(d))
            if not 3.0 <= dist <= max_gap_mm:
                continue
            e = d / dist
            if abs(e @ a2[i]) < cosmax or abs(e @ a2[j]) < cosmax:
                continue
            if abs(p[j, 2] - p[i, 2]) > np.tan(np.radians(max_tilt_deg)) * dist + slice_mm:
                continue
            adj[i].append(j)
            adj[j].append(i)
    out = []
    for comp in _linked_groups(adj):
        if len(comp) < 3:
            continue
        q = p[comp]
        c2 = q[:, :2].mean(axis=0)
        w, v = np.linalg.eigh(np.cov((q[:, :2] - c2).T))
        e = v[:, -1]
        s = (q[:, :2] - c2) @ e
        perp = (q[:, :2] - c2) @ np.array([-e[1], e[0]])
        rms = float(np.sqrt(np.mean(perp ** 2)))
        A = np.column_stack([np.ones(len(s)), s])
        (z0, slope), *_ = np.linalg.lstsq(A, q[:, 2], rcond=None)
        d = np.array([e[0], e[1], slope])
        d /= np.linalg.norm(d)
        out.append((tuple(sorted(comp)), np.array([c2[0], c2[1], z0]), d, rms, float(s.min()), float(s.max())))
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
    tracks = [t for t in track_lines(seeds, slice_mm, max_gap_mm) if t[3] <= max_offset_mm]
    refined = 0
    for idx, point, d, rms, s_lo, s_hi in tracks:
        u = d if d[2] >= 0 else -d
        for i in idx:
            seeds[i]["direction"] = tuple(float(v) for v in u)
            refined += 1
    if refined:
        notes.append(f"needle tracks (thick slices): {refined} seed(s) on {len(tracks)} track(s) take the track's direction")
    return refined
