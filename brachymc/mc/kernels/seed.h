// seed.h -- a seed model's solids of revolution in the seed frame (z along the axis), the kernel twin
// of geometry/seed.py: point location and the distance to the next bounding surface ("next
// surface" rule: every crossing of any surface stops a step; the medium of a step is the solid that
// holds its midpoint). A ray is described by z, r^2 = x^2 + y^2, w (axial direction cosine) and
// pd = x u + y v; no local frame is built.
#pragma once
#include "params.h"
#include "portability.h"

// Bit i set: the point satisfies the constraints of solid i (ignoring what it subtracts), for the
// solids in mask.
BMC_DEVICE unsigned int bmc_solid_constraints(const BmcParams* P, double z, double r2, unsigned int mask) {
    unsigned int bits = 0u;
    for (int i = 0; i < (int)P->n_solids; ++i) {
        if (!((mask >> i) & 1u)) continue;
        const double* b = P->solid_box + 4 * i;
        bool ok = (r2 <= b[0]) && (r2 >= b[1]) && (z >= b[2]) && (z <= b[3]);
        const int nc = P->solid_counts[2 * i], ns = P->solid_counts[2 * i + 1];
        for (int c = 0; ok && c < nc; ++c) {
            const double lim = P->solid_cone[8 * i + 2 * c] + P->solid_cone[8 * i + 2 * c + 1] * z;
            ok = (lim >= 0) && (r2 <= lim * lim);
        }
        for (int s = 0; ok && s < ns; ++s) {
            const double dz = z - P->solid_sph[4 * i + 2 * s];
            ok = r2 + dz * dz <= P->solid_sph[4 * i + 2 * s + 1];
        }
        if (ok) bits |= (1u << i);
    }
    return bits;
}

// Bit i set: the point is inside solid i with its subtractions applied, for the solids in mask (a
// mask closed under subtraction: solid_closure).
BMC_DEVICE unsigned int bmc_solid_inside(const BmcParams* P, double z, double r2, unsigned int mask) {
    const unsigned int c = bmc_solid_constraints(P, z, r2, mask);
    unsigned int in = 0u;
    for (int k = 0; k < (int)P->n_solids; ++k) {
        const int i = P->solid_order[k];
        if ((c >> i) & 1u) {
            if ((in & (unsigned int)P->solid_sub[i]) == 0u) in |= (1u << i);
        }
    }
    return in;
}

BMC_DEVICE int bmc_in_envelope(const BmcParams* P, double z, double r2) {
    return r2 <= P->env_r2 && z >= P->env_zlo && z <= P->env_zhi;
}

// Index of the solid containing the point, -1 outside the seed (the lowest index if several).
BMC_DEVICE int bmc_seed_locate(const BmcParams* P, double z, double r2) {
    if (!bmc_in_envelope(P, z, r2)) return -1;
    const unsigned int in = bmc_solid_inside(P, z, r2, 0xffffffffu);
    if (in == 0u) return -1;
    int i = 0;
    while (!((in >> i) & 1u)) ++i;
    return i;
}

// Smallest root > eps of a t^2 + b t + c = 0 that is below best (numerically stable form: the roots
// are qq / a and c / qq). A discriminant negative by rounding only is a tangency: its double root
// stays a stop. A root is divided out only when its sign is positive (most are not).
BMC_DEVICE double bmc_quad_next(double a, double b, double c, double best) {
    const double bb = b * b, ac4 = 4.0 * a * c;
    const double disc = bb - ac4;
    if (!(disc >= -1e-12 * (bb + (ac4 < 0 ? -ac4 : ac4)))) return best;
    const double sq = bmc_sqrt(disc > 0 ? disc : 0.0);
    const double qq = -0.5 * (b + (b >= 0 ? sq : -sq));
    if (a != 0 && qq != 0 && ((qq > 0) == (a > 0))) {
        const double t1 = qq / a;
        if (t1 > BMC_SURFACE_EPS && t1 < best) best = t1;
    }
    if (qq != 0 && c != 0 && ((c > 0) == (qq > 0))) {
        const double t2 = c / qq;
        if (t2 > BMC_SURFACE_EPS && t2 < best) best = t2;
    }
    return best;
}

// Distance to the next crossing of any of the seed's surfaces (BMC_BIG: none). Planes come first
// (cheap, and often near); a cylinder or sphere is skipped when the distance of the point from it
// (|r - R|, |rho - R|), a lower bound of the distance along any ray, already exceeds the best stop.
BMC_DEVICE double bmc_seed_distance(const BmcParams* P, double z, double r2, double w, double pd) {
    double best = BMC_BIG;
    double one_m_w2 = 1.0 - w * w;
    if (one_m_w2 < 0) one_m_w2 = 0.0;
    if (w != 0) {
        const double inv_w = 1.0 / w;
        for (int k = 0; k < (int)P->n_planes; ++k) {
            const double t = (P->planes[k] - z) * inv_w;
            if (t > BMC_SURFACE_EPS && t < best) best = t;
        }
    }
    const double r = bmc_sqrt(r2);
    const double b_cyl = 2.0 * pd;
    for (int k = 0; k < (int)P->n_cyl; ++k) {
        const double gap = r - P->cyl_r[k];
        if ((gap < 0 ? -gap : gap) >= best) continue;
        best = bmc_quad_next(one_m_w2, b_cyl, r2 - P->cyl_r2[k], best);
    }
    for (int k = 0; k < (int)P->n_sph_surf; ++k) {
        const double dz = z - P->sph_surf[2 * k];
        const double q = r2 + dz * dz;
        const double gap = bmc_sqrt(q) - P->sph_r[k];
        if ((gap < 0 ? -gap : gap) >= best) continue;
        best = bmc_quad_next(1.0, 2.0 * (pd + dz * w), q - P->sph_surf[2 * k + 1], best);
    }
    for (int k = 0; k < (int)P->n_cone_surf; ++k) {
        const double kk = P->cone_surf[2 * k], slope = P->cone_surf[2 * k + 1];
        const double lim = kk + slope * z;
        best = bmc_quad_next(one_m_w2 - slope * slope * w * w, 2.0 * (pd - slope * w * lim), r2 - lim * lim, best);
    }
    return best;
}

// Distance to the next stop of a ray near a seed. Inside the seed's envelope (the cylinder holding all
// its solids) every surface of the seed is a candidate; outside it, only the envelope itself: a ray
// that does not enter it meets no solid, and one that does stops at its entry point and is traced
// from there. (The array engine also stops where a seed surface, extended, is crossed outside the
// envelope: steps that change no medium, so both give the same transport.)
BMC_DEVICE double bmc_seed_next(const BmcParams* P, double z, double r2, double w, double pd) {
    if (bmc_in_envelope(P, z, r2)) return bmc_seed_distance(P, z, r2, w, pd);
    double best = BMC_BIG;
    double one_m_w2 = 1.0 - w * w;
    if (one_m_w2 < 0) one_m_w2 = 0.0;
    // the curved side: r^2 = R^2 entered from outside, with z inside the envelope there
    if (r2 > P->env_r2) {
        const double t = bmc_quad_next(one_m_w2, 2.0 * pd, r2 - P->env_r2, BMC_BIG);
        if (t < BMC_BIG) {
            const double zt = z + w * t;
            if (zt >= P->env_zlo && zt <= P->env_zhi) best = t;
        }
    }
    // the end planes, entered where r^2 <= R^2
    const double zp[2] = {P->env_zlo, P->env_zhi};
    for (int k = 0; k < 2; ++k) {
        const double t = w != 0 ? (zp[k] - z) / w : BMC_BIG;
        if (t > BMC_SURFACE_EPS && t < best) {
            const double rt2 = r2 + 2.0 * pd * t + one_m_w2 * t * t;
            if (rt2 <= P->env_r2) best = t;
        }
    }
    return best;
}

// Smallest root > eps of |p + t d|^2 = R^2 given pdf = p.d and p2 = |p|^2 (BMC_BIG: none).
BMC_DEVICE double bmc_sphere_next(double pdf, double p2, double radius) {
    const double c = p2 - radius * radius;
    const double disc = pdf * pdf - c;
    if (!(disc >= 0)) return BMC_BIG;
    const double sq = bmc_sqrt(disc);
    const double t1 = -pdf - sq, t2 = -pdf + sq;
    if (t1 > BMC_SURFACE_EPS) return t1;
    if (t2 > BMC_SURFACE_EPS) return t2;
    return BMC_BIG;
}
