// physics.h -- interaction data look-ups and sampling, the kernel twins of mc/interactions.py.
// Same tables, same interpolation and the same sampling algorithms as the array engine.
#pragma once
#include "detmath.h"
#include "params.h"

// Position of ln E on the interaction grid: the interval i (the last grid point <= ln E; an edge
// energy takes its above-edge copy) and the fraction f in it (numpy searchsorted side='right' - 1,
// clipped to the grid).
BMC_DEVICE void bmc_energy_position(const BmcParams* P, double ln_e, int* i_out, double* f_out) {
    const double* g = P->ln_e;
    const int n = (int)P->n_e;
    // start from the look-up table (an interval at or below the answer), then step up
    const double x = (ln_e - P->eidx_lo) * P->eidx_inv;
    const int nb = (int)P->n_eidx;
    const int k = x < 0 ? 0 : (x >= (double)(nb - 1) ? nb - 1 : (int)x);
    int i = P->eidx[k];
    while (i + 1 < n && g[i + 1] <= ln_e) ++i;
    if (i < 0) i = 0;
    if (i > n - 2) i = n - 2;
    *i_out = i;
    *f_out = (ln_e - g[i]) * P->inv_dln[i];
}

BMC_DEVICE double bmc_interp_lin(const double* table, const BmcParams* P, int m, int i, double f) {
    const double* row = table + (long long)m * P->n_e;
    const double lo = row[i];
    return lo + f * (row[i + 1] - lo);
}

BMC_DEVICE double bmc_interp_log(const double* table, const BmcParams* P, int m, int i, double f) {
    return bmc_exp(bmc_interp_lin(table, P, m, i, f));
}

BMC_DEVICE double bmc_clip(double x, double lo, double hi) { return x < lo ? lo : (x > hi ? hi : x); }

// Point at probability fraction fu of [c0, c1] under a pdf linear from p0 to p1.
BMC_DEVICE double bmc_within_interval(double c0, double c1, double p0, double p1, double fu) {
    const double h = c1 - c0;
    const double area = fu * 0.5 * h * (p0 + p1);
    const double slope = (p1 - p0) / (h > 0 ? h : 1.0);
    const double disc = p0 * p0 + 2.0 * slope * area;
    const double root = bmc_sqrt(disc > 0 ? disc : 0.0);
    const double den = p0 + root;
    const double x = den > 0 ? 2.0 * area / den : fu * h;
    return c0 + bmc_clip(x, 0.0, h);
}

// cos theta from a quantile table (n_mat, n_s, n_q) with its pdf: the two neighbouring table energies
// are sampled with the same u and the results interpolated in ln E.
BMC_DEVICE double bmc_sample_cos(const BmcParams* P, const double* q, const double* pdf, int m, double ln_e,
                                 double u) {
    const int ns = (int)P->n_s, nq = (int)P->n_q;
    const double s = (ln_e - P->sample_ln_e0) / P->sample_dln;
    double sf = s < 0 ? -1.0 : (double)(long long)s;     // floor for s >= 0; negative s clips to 0
    int j = (int)bmc_clip(sf, 0.0, (double)(ns - 2));
    const double fe = bmc_clip(s - (double)j, 0.0, 1.0);
    const double v = u * (double)(nq - 1);
    int k = (int)(long long)v;
    if (k > nq - 2) k = nq - 2;
    const double fu = v - (double)k;
    double o[2];
    for (int t = 0; t < 2; ++t) {
        const long long base = ((long long)m * ns + (j + t)) * nq + k;
        o[t] = bmc_within_interval(q[base], q[base + 1], pdf[base], pdf[base + 1], fu);
    }
    return bmc_clip(o[0] + fe * (o[1] - o[0]), -1.0, 1.0);
}

BMC_DEVICE double bmc_compton_energy(const BmcParams* P, double e, double cos_t) {
    return e / (1.0 + (e / P->mec2_kev) * (1.0 - cos_t));
}

// Fluorescence after photoabsorption in material m at grid interval i: whether a photon leaves the
// atom, and its energy (mc/interactions.py sample_fluorescence).
BMC_DEVICE int bmc_fluorescence(const BmcParams* P, int m, int i, double u_channel, double u_line, double* e_fl) {
    const int nc = (int)P->n_chan, nl = (int)P->n_line;
    const double* cum = P->fl_cum + ((long long)m * P->n_e + i) * nc;
    int k = 0;
    for (int c = 0; c < nc; ++c) k += (u_channel >= cum[c]);
    const int g = P->fl_channel[(long long)m * nc + (k < nc ? k : nc - 1)];
    if (k >= nc || g < 0) return 0;
    const double* lc = P->line_cum + (long long)g * nl;
    int line = 0;
    for (int l = 0; l < nl; ++l) line += (u_line >= lc[l]);
    if (line >= nl) return 0;
    *e_fl = P->line_energy[(long long)g * nl + line];
    return 1;
}

// New direction after scattering by polar angle theta (cos_t) and azimuth 2 pi u_phi.
BMC_DEVICE void bmc_rotate(double* d, double cos_t, double u_phi) {
    const double u = d[0], v = d[1], w = d[2];
    const double s2 = 1.0 - cos_t * cos_t;
    const double sin_t = bmc_sqrt(s2 > 0 ? s2 : 0.0);
    double cp, sp;
    bmc_cos_sin_2pi(u_phi, &cp, &sp);
    const double rho2 = 1.0 - w * w;
    double un, vn, wn;
    if (rho2 > 1e-20) {
        const double rho = bmc_sqrt(rho2);
        un = u * cos_t + sin_t * (u * w * cp - v * sp) / rho;
        vn = v * cos_t + sin_t * (v * w * cp + u * sp) / rho;
        wn = w * cos_t - sin_t * rho * cp;
    } else {
        un = sin_t * cp;
        vn = sin_t * sp;
        wn = (w >= 0 ? 1.0 : -1.0) * cos_t;
    }
    const double norm = bmc_sqrt(un * un + vn * vn + wn * wn);
    d[0] = un / norm; d[1] = vn / norm; d[2] = wn / norm;
}

BMC_DEVICE void bmc_isotropic(double* d, double u_cos, double u_phi) {
    const double c = 2.0 * u_cos - 1.0;
    const double s2 = 1.0 - c * c;
    const double s = bmc_sqrt(s2 > 0 ? s2 : 0.0);
    double cp, sp;
    bmc_cos_sin_2pi(u_phi, &cp, &sp);
    d[0] = s * cp; d[1] = s * sp; d[2] = c;
}
