// seed.h -- a seed model's solids of revolution in the seed frame (z along the axis), the kernel twin
// of geometry/seed.py: point location and the distance to the next bounding surface ("next
// surface" rule: every crossing of any surface stops a step; the medium of a step is the solid that
// holds its midpoint). A ray is described by z, r^2 = x^2 + y^2, w (axial direction cosine) and
// pd = x u + y v; no local frame is built.
#pragma once
#include "params.h"
#include "portability.h"

// Bit i set: the point satisfies the constraints of solid i (ignoring what it subtracts).
BMC_DEVICE unsigned int bmc_solid_constraints(const BmcParams* P, double z, double r2) {
    unsigned int bits = 0u;
    for (int i = 0; i < (int)P->n_solids; ++i) {
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

// Bit i set: the point is inside solid i with its subtractions applied.
BMC_DEVICE unsigned int bmc_solid_inside(const BmcParams* P, double z, double r2) {
    const unsigned int c = bmc_solid_constraints(P, z, r2);
    unsigned int in = 0u;
    for (int k = 0; k < (int)P->n_solids; ++k) {
        const int i = P->solid_order[k];
        if ((c >> i) & 1u) {
            if ((in & (unsigned int)P->solid_sub[i]) == 0u) in |= (1u << i);
        }
    }
    return in;
}

// Index of the solid containing the point, -1 outside the seed (the lowest index if several).
BMC_DEVICE int bmc_seed_locate(const BmcParams* P, double z, double r2) {
    const unsigned int in = bmc_solid_inside(P, z, r2);
    if (in == 0u) return -1;
    int i = 0;
    while (!((in >> i) & 1u)) ++i;
    return i;
}

// Smallest root > eps of a t^2 + b t + c = 0 that is below best (numerically stable form). A
// discriminant negative by rounding only is a tangency: its double root stays a stop.
BMC_DEVICE double bmc_quad_next(double a, double b, double c, double best) {
    const double disc = b * b - 4.0 * a * c;
    const double aac = a * c < 0 ? -(a * c) : a * c;
    if (!(disc >= -1e-12 * (b * b + 4.0 * aac))) return best;
    const double sq = bmc_sqrt(disc > 0 ? disc : 0.0);
    const double qq = -0.5 * (b + (b >= 0 ? sq : -sq));
    const double t1 = a != 0 ? qq / a : BMC_BIG;
    const double t2 = qq != 0 ? c / qq : BMC_BIG;
    if (t1 > BMC_SURFACE_EPS && t1 < best) best = t1;
    if (t2 > BMC_SURFACE_EPS && t2 < best) best = t2;
    return best;
}

// Distance to the next crossing of any of the seed's surfaces (BMC_BIG: none).
BMC_DEVICE double bmc_seed_distance(const BmcParams* P, double z, double r2, double w, double pd) {
    double best = BMC_BIG;
    double one_m_w2 = 1.0 - w * w;
    if (one_m_w2 < 0) one_m_w2 = 0.0;
    for (int k = 0; k < (int)P->n_cyl; ++k) best = bmc_quad_next(one_m_w2, 2.0 * pd, r2 - P->cyl_r2[k], best);
    for (int k = 0; k < (int)P->n_planes; ++k) {
        const double t = w != 0 ? (P->planes[k] - z) / w : BMC_BIG;
        if (t > BMC_SURFACE_EPS && t < best) best = t;
    }
    for (int k = 0; k < (int)P->n_cone_surf; ++k) {
        const double kk = P->cone_surf[2 * k], slope = P->cone_surf[2 * k + 1];
        const double lim = kk + slope * z;
        best = bmc_quad_next(one_m_w2 - slope * slope * w * w, 2.0 * (pd - slope * w * lim), r2 - lim * lim, best);
    }
    for (int k = 0; k < (int)P->n_sph_surf; ++k) {
        const double dz = z - P->sph_surf[2 * k];
        best = bmc_quad_next(1.0, 2.0 * (pd + dz * w), r2 + dz * dz - P->sph_surf[2 * k + 1], best);
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
