"""What a seed looks like in a CT: its physical size, and the blurred line-segment image model.

A seed's CT image is dominated by its radio-opaque marker (the 6711's silver rod: mu ~ 400 x
water at CT energies, against ~25 x for the titanium capsule), so the image of one seed is well
described as a line segment of length ``L`` along the seed axis ``u`` through the centre ``c``
with a line density ``A`` (HU mm^2), convolved with the scan's point-spread function: a Gaussian
of standard deviation ``sigma_xy`` in-plane and ``sigma_z`` along z (the slice profile). In
whitened coordinates x' = x / sigma (per axis) the convolution has the closed form::

    f(x) = A / (4 pi sx sy sz a) exp(-rho^2 / 2) [erf((tau + a L / 2) / sqrt 2) - erf((tau - a L / 2) / sqrt 2)]

with u' = u / sigma, a = |u'|, tau the coordinate of x' - c' along u' / a and rho the distance
from that line; the integral of f over space is A L. On scanners whose scale saturates (3071 HU
on 12-bit images) the image is ``min(background + f, clip)``.

``L``, ``sigma_xy``, ``sigma_z`` and ``A`` of a scan are estimated from its isolated seeds
(:mod:`brachymc.seedfinder.fit`); :class:`SeedAppearance` gives the starting values from the
seed model (``configs/seeds``) and the voxel size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from brachymc.geometry.seed import SeedModel

SQRT2 = np.sqrt(2.0)
#: |u_z| at which the tilt-dependent line density and seed unit are tabulated (piecewise linear)
TILT_KNOTS = (0.0, 0.2, 0.45, 1.0)


@dataclass(frozen=True)
class SeedAppearance:
    """Physical size of a seed model (mm) and the image-model parameters of one scan.

    ``capsule_length_mm``/``capsule_diameter_mm``: overall seed size; ``marker_length_mm``: the
    length of the radio-opaque solids (role ``marker``/``active``, the rod) that dominate the
    image; ``length_mm``, ``sigma_xy_mm``, ``sigma_z_mm``, ``amplitude``: the blurred-segment
    model (set from the scan's isolated seeds by :func:`~brachymc.seedfinder.fit.calibrate`).
    """

    model: str
    capsule_length_mm: float
    capsule_diameter_mm: float
    marker_length_mm: float
    length_mm: float
    sigma_xy_mm: float
    sigma_z_mm: float
    amplitude: float | None = None          # line density A of one seed lying in-plane (HU mm^2), None: unknown
    amplitude_knots: tuple[float, ...] = () # A at |u_z| = TILT_KNOTS (thick slices: partial-volume non-linearity)
    amplitude_sd: float = 0.3               # spread (log) of one seed's A about that curve, from the scan's seeds
    intensity_knots: tuple[float, ...] = () # integrated model intensity A x L (HU mm^3) of one seed at TILT_KNOTS
    intensity_sd: float = 0.3               # spread (log) of one seed's A x L about that curve
    unit_knots: tuple[float, ...] = ()      # summed excess S1 (HU mm^3) of one seed at |u_z| = TILT_KNOTS
    unit_sd: float = 0.3                    # spread (log) of one seed's S1 about that curve
    calibrated_from: int = 0                # isolated seeds the values come from (0: defaults)
    slice_mm: float = 0.0                   # width of the rectangular part of the slice profile

    def z_offsets(self) -> np.ndarray:
        """Points (mm) across the slice profile's rectangular part, each weighted equally.

        A CT voxel averages the image over its slice profile: a rectangle of the slice width
        (its ramps and the seed's own thickness are in ``sigma_z``); the model samples it at
        ``n`` points, enough for the Gaussian of ``sigma_z`` to join them smoothly.
        """
        w = float(self.slice_mm)
        if w <= 0:
            return np.zeros(1)
        n = int(np.clip(np.ceil(w / (2.0 * max(self.sigma_z_mm, 0.25))), 1, 7))
        return ((np.arange(n) + 0.5) / n - 0.5) * w

    @classmethod
    def from_model(cls, model: SeedModel, voxel_mm) -> "SeedAppearance":
        """Defaults for a scan of ``voxel_mm`` (dx, dy, dz): PSF ~ the voxel size, L = marker length."""
        zlo, zhi, rs = model.bounds()
        opaque = [s for s in model.solids if s.role in ("marker", "active", "core")]
        if opaque:
            lo = min(s.bounds()[0] for s in opaque)
            hi = max(s.bounds()[1] for s in opaque)
            marker = 10 * (hi - lo)
        else:
            marker = 10 * (zhi - zlo)
        dx, dy, dz = (float(v) for v in voxel_mm)
        return cls(model=model.key, capsule_length_mm=10 * (zhi - zlo), capsule_diameter_mm=20 * rs,
                   marker_length_mm=marker, length_mm=marker, sigma_xy_mm=0.6 * max(dx, dy),
                   sigma_z_mm=0.6 * max(dx, dy), slice_mm=dz)

    def amplitude_of(self, axes) -> np.ndarray:
        """Expected line density of one seed with axis ``axes`` (k, 3): the scan's calibrated curve in
        |u_z| (piecewise linear between TILT_KNOTS), or one value where the scan gave none."""
        return self._tilt_curve(axes, self.amplitude_knots, self.amplitude if self.amplitude is not None else 1.0)

    def intensity_of(self, axes) -> np.ndarray:
        """Expected integrated model intensity A x L (HU mm^3) of one seed with axis ``axes`` (k, 3)."""
        default = (self.amplitude if self.amplitude is not None else 1.0) * self.length_mm
        return self._tilt_curve(axes, self.intensity_knots, default)

    def unit_of(self, axes) -> np.ndarray:
        """Expected summed excess (HU mm^3) of one seed with axis ``axes`` (k, 3)."""
        return self._tilt_curve(axes, self.unit_knots, np.nan)

    @staticmethod
    def _tilt_curve(axes, knots, default) -> np.ndarray:
        uz = np.abs(np.atleast_2d(np.asarray(axes, float))[:, 2])
        if not knots:
            return np.full(len(uz), float(default))
        return np.interp(uz, TILT_KNOTS, np.asarray(knots, float))

    @property
    def sigma(self) -> np.ndarray:
        return np.array([self.sigma_xy_mm, self.sigma_xy_mm, self.sigma_z_mm])

    def covariance_of_one(self) -> np.ndarray:
        """Covariance (mm^2) of the intensity of one seed along x, y, z for an axis along x."""
        return np.diag(self.sigma ** 2 + np.array([self.length_mm ** 2 / 12.0, 0.0, self.slice_mm ** 2 / 12.0]))

    @property
    def spread(self) -> np.ndarray:
        """Standard deviation (mm) of the PSF with the slice profile, per axis."""
        return np.sqrt(self.sigma ** 2 + np.array([0.0, 0.0, self.slice_mm ** 2 / 12.0]))


def segment_image(points: np.ndarray, center: np.ndarray, axis: np.ndarray, amplitude: float, length: float,
                  sigma: np.ndarray) -> np.ndarray:
    """Blurred line segment (module docstring) at ``points`` (n, 3) mm; HU above the background."""
    s = np.asarray(sigma, float)
    up = np.asarray(axis, float) / s
    a = float(np.linalg.norm(up))
    v = up / a
    d = (points - center) / s
    tau = d @ v
    rho2 = np.einsum("ij,ij->i", d, d) - tau * tau
    half = 0.5 * a * length
    core = erf((tau + half) / SQRT2) - erf((tau - half) / SQRT2)
    return amplitude / (4.0 * np.pi * s[0] * s[1] * s[2] * a) * np.exp(-0.5 * np.maximum(rho2, 0.0)) * core


def _model_terms(points, centers, axes, amplitudes, length, sigma, z_offsets):
    """Vectorised over seeds (k) and slice-profile offsets (m): f (k, m, n) and the pieces of its
    derivatives."""
    s = np.asarray(sigma, float)
    zo = np.asarray(z_offsets, float)
    c = np.atleast_2d(np.asarray(centers, float))
    w = np.atleast_2d(np.asarray(axes, float)) / s                   # (k, 3)
    a = np.linalg.norm(w, axis=1)                                    # (k,)
    v = w / a[:, None]
    q = points[None, :, :] + np.stack([np.zeros_like(zo), np.zeros_like(zo), zo], axis=1)[:, None, :]  # (m, n, 3)
    d = (q[None, :, :, :] - c[:, None, None, :]) / s                 # (k, m, n, 3)
    tau = np.einsum("kmnj,kj->kmn", d, v)
    perp = d - tau[..., None] * v[:, None, None, :]
    rho2 = np.maximum(np.einsum("kmnj,kmnj->kmn", perp, perp), 0.0)
    lengths = np.broadcast_to(np.asarray(length, float), a.shape)
    half = (0.5 * a * lengths)[:, None, None]
    amp = np.atleast_1d(np.asarray(amplitudes, float))
    g = np.exp(-0.5 * rho2) * (amp / (4.0 * np.pi * s[0] * s[1] * s[2] * a))[:, None, None]
    tp, tm = tau + half, tau - half
    D = erf(tp / SQRT2) - erf(tm / SQRT2)
    return g, D, tau, perp, tp, tm, v, a


def seeds_image_grad(points, centers, axes, amplitudes, length, sigma, background, clip, z_offsets=(0.0,)):
    """Model (n,) of :func:`seeds_image` and per-seed derivatives averaged over the slice profile:
    f_k (k, n), df/dcenter (k, n, 3), df/dw (k, n, 3) for the whitened axis w = axis / sigma and
    df/dlength (k, n); ``length`` may be one per seed; derivatives are zeroed where the model is
    clipped. Compiled (:mod:`brachymc.seedfinder._kernel`); :func:`seeds_image_grad_reference`
    is the vectorised NumPy form it is tested against."""
    from brachymc.seedfinder._kernel import model_terms

    fk, df_dc, df_dw, df_dl = model_terms(points, centers, axes, amplitudes, length, sigma, z_offsets, True)
    return _clipped(points, fk, df_dc, df_dw, df_dl, background, clip)


def _clipped(points, fk, df_dc, df_dw, df_dl, background, clip):
    total = np.array(np.broadcast_to(np.asarray(background, float), (points.shape[0],)), float) + fk.sum(axis=0)
    if clip is not None:
        hit = total > clip
        if hit.any():
            total = np.minimum(total, clip)
            fk = np.where(hit[None, :], 0.0, fk)
            df_dc = np.where(hit[None, :, None], 0.0, df_dc)
            df_dw = np.where(hit[None, :, None], 0.0, df_dw)
            df_dl = np.where(hit[None, :], 0.0, df_dl)
    return total, fk, df_dc, df_dw, df_dl


def seeds_image_grad_reference(points, centers, axes, amplitudes, length, sigma, background, clip, z_offsets=(0.0,)):
    """NumPy reference of :func:`seeds_image_grad` (all seeds at all points)."""
    s = np.asarray(sigma, float)
    g, D, tau, perp, tp, tm, v, a = _model_terms(points, centers, axes, amplitudes, length, sigma, z_offsets)
    ep, em = np.exp(-0.5 * tp * tp), np.exp(-0.5 * tm * tm)
    k2 = np.sqrt(2.0 / np.pi)
    f = g * D                                                        # (k, m, n)
    gdt = g * k2 * (ep - em)
    gdh = g * k2 * (ep + em)
    vv = v[:, None, None, :]
    df_dd = -f[..., None] * perp + gdt[..., None] * vv
    df_dc = (-df_dd / s).mean(axis=1)                                 # (k, n, 3)
    ai = a[:, None, None, None]
    lengths = np.broadcast_to(np.asarray(length, float), a.shape)[:, None, None]
    df_dw = ((f * tau)[..., None] * perp / ai - f[..., None] * vv / ai + gdt[..., None] * perp / ai
             + (gdh * 0.5 * lengths)[..., None] * vv).mean(axis=1)
    df_dl = (gdh * 0.5 * a[:, None, None]).mean(axis=1)                # (k, n)
    return _clipped(points, f.mean(axis=1), df_dc, df_dw, df_dl, background, clip)


def seeds_image(points: np.ndarray, centers, axes, amplitudes, length: float, sigma, background,
                clip: float | None, z_offsets=(0.0,)) -> np.ndarray:
    """Background plus the blurred segments of several seeds averaged over the slice profile
    (``z_offsets``, mm), clipped at ``clip`` when saturated."""
    f = np.array(np.broadcast_to(np.asarray(background, float), (len(points),)), float)
    if len(np.atleast_1d(amplitudes)):
        from brachymc.seedfinder._kernel import model_terms

        f += model_terms(points, centers, axes, amplitudes, length, sigma, z_offsets, False)[0].sum(axis=0)
    return np.minimum(f, clip) if clip is not None else f


def seed_images(points: np.ndarray, centers, axes, amplitudes, length, sigma, z_offsets=(0.0,)) -> np.ndarray:
    """Each seed's own blurred segment (k, n) at ``points`` (unclipped, no background)."""
    from brachymc.seedfinder._kernel import model_terms

    return model_terms(points, centers, axes, amplitudes, length, sigma, z_offsets, False)[0]
