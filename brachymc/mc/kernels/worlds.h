// worlds.h -- the geometry of one step in the kernel's two worlds (twins of geometry/world.py,
// geometry/seeded_phantom.py and geometry/single_seed.py):
//
//  * voxel phantom: exact DDA to the next voxel face; in voxels that meet a seed's bounding sphere
//    also the surfaces of those seeds (every seed present, or only the emitting one in superposition
//    mode); the medium of the step is the seed solid holding its midpoint, else the voxel's;
//  * one seed at the origin along z in a sphere of medium: the seed's surfaces, its bounding sphere
//    and the neighbouring spheres and cones of the (r, cos theta) scoring bins.
#pragma once
#include "seed.h"

struct BmcPhoton {
    // voxel world: pos is where the current straight flight started, t the distance flown since, and
    // tmax[a] the distance from pos to the next voxel face across axis a (incremental DDA); the
    // single-seed world moves pos itself (t = 0)
    double pos[3], dir[3], inv[3];   // cm, direction, 1/direction (0 components: BIG)
    double t, tmax[3];
    double e, ln_e, fe, wt, nmfp;    // energy (keV), ln E, grid fraction, weight, mean free paths left
    long long flat;                  // voxel (voxel world): flat index and indices
    int ie;                          // grid interval of ln E
    int ivox[3];
    int src;                         // emitting seed, -1: none
    int scat;                        // has interacted
    int cm;                          // material of the cached coefficients (-1: none)
    double mu_rho, muen_rho, muen_w; // cached mu/rho, mu_en/rho of cm and of water at e (cm2/g)
};

// What the world says about the next step.
struct BmcStep {
    double t;          // distance to the next boundary (cm)
    double rho;        // density on the step (g/cm3)
    long long bin;     // scoring bin, -1: not scored (inside a seed)
    int m;             // material on the step
    int axis;          // voxel world: axis of the face reached at t, -1: a seed surface
};

BMC_DEVICE void bmc_set_direction(BmcPhoton* ph) {
    for (int a = 0; a < 3; ++a) ph->inv[a] = ph->dir[a] != 0 ? 1.0 / ph->dir[a] : BMC_BIG;
}

BMC_DEVICE void bmc_init_voxel(const BmcParams* P, BmcPhoton* ph) {
    const double o[3] = {P->ox, P->oy, P->oz}, s[3] = {P->sx, P->sy, P->sz};
    const long long n[3] = {P->nx, P->ny, P->nz};
    for (int a = 0; a < 3; ++a) {
        const double x = (ph->pos[a] - o[a]) / s[a];
        int i = x < 0 ? 0 : (int)x;
        if (i > (int)n[a] - 1) i = (int)n[a] - 1;
        ph->ivox[a] = i;
    }
    ph->flat = ((long long)ph->ivox[2] * P->ny + ph->ivox[1]) * P->nx + ph->ivox[0];
}

BMC_DEVICE double bmc_dot3(const double* a, const double* b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

// Distance from pos to the face of voxel ivox across axis a, in the flight direction.
BMC_DEVICE double bmc_face_t(const BmcParams* P, const BmcPhoton* ph, int a) {
    const double d = ph->dir[a];
    if (d == 0) return BMC_BIG;
    const double o = a == 0 ? P->ox : (a == 1 ? P->oy : P->oz);
    const double s = a == 0 ? P->sx : (a == 1 ? P->sy : P->sz);
    const double plane = o + (ph->ivox[a] + (d > 0 ? 1 : 0)) * s;
    const double t = (plane - ph->pos[a]) * ph->inv[a];
    return t > 0 ? t : 0.0;
}

// A new straight flight from pos (after birth or an interaction): reset the incremental DDA.
BMC_DEVICE void bmc_start_flight(const BmcParams* P, BmcPhoton* ph) {
    ph->t = 0.0;
    for (int a = 0; a < 3; ++a) ph->tmax[a] = bmc_face_t(P, ph, a);
}

BMC_DEVICE void bmc_voxel_step(const BmcParams* P, const BmcPhoton* ph, BmcStep* st) {
    const int axis = ph->tmax[0] <= ph->tmax[1] ? (ph->tmax[0] <= ph->tmax[2] ? 0 : 2)
                                                 : (ph->tmax[1] <= ph->tmax[2] ? 1 : 2);
    double t_face = ph->tmax[axis] - ph->t;
    if (t_face < 0) t_face = 0.0;
    const long long flat = ph->flat;
    {   // the voxel across the nearest face is very likely the next one: start loading it now
        const long long stride = axis == 0 ? 1 : (axis == 1 ? P->nx : P->nx * P->ny);
        const long long next = flat + (ph->dir[axis] > 0 ? stride : -stride);
        if (next >= 0 && next < P->n_scores) { bmc_prefetch(P->vox + next); bmc_prefetch(P->kerma + next); }
    }
    const bmc_u64 word = (bmc_u64)P->vox[flat];
    const int matflag = (int)(word >> 32);
    st->m = matflag & BMC_VOX_MAT;
    st->rho = (double)bmc_bits_float((bmc_u32)(word & 0xffffffffu));
    st->bin = flat;
    st->t = t_face;
    st->axis = axis;
    if (!(matflag & BMC_VOX_SEEDS)) return;
    const int row = P->flag_row[flat];
    if (row < 0) return;
    const double pos[3] = {ph->pos[0] + ph->dir[0] * ph->t, ph->pos[1] + ph->dir[1] * ph->t,
                           ph->pos[2] + ph->dir[2] * ph->t};
    const int K = (int)P->max_per_voxel;
    const int* cand = P->flag_table + (long long)row * K;
    const double R = P->seed_radius;
    double tt = t_face;
    for (int j = 0; j < K; ++j) {
        const int sid = cand[j];
        if (sid < 0 || (P->superposition && sid != ph->src)) continue;
        const double* f = P->seed_frame + 12 * (long long)sid;
        const double rel[3] = {pos[0] - f[0], pos[1] - f[1], pos[2] - f[2]};
        const double p2 = bmc_dot3(rel, rel);
        const double pdf = bmc_dot3(rel, ph->dir);
        double tj;
        if (p2 < R * R) {
            const double z = bmc_dot3(rel, f + 9), w = bmc_dot3(ph->dir, f + 9);
            const double r2 = p2 - z * z > 0 ? p2 - z * z : 0.0;
            tj = bmc_seed_next(P, z, r2, w, pdf - z * w);
        } else {
            tj = bmc_sphere_next(pdf, p2, R);
        }
        if (tj < tt) tt = tj;
    }
    // medium on the step from its midpoint
    const double h = tt * 0.5;
    const double mid[3] = {pos[0] + ph->dir[0] * h, pos[1] + ph->dir[1] * h, pos[2] + ph->dir[2] * h};
    for (int j = 0; j < K; ++j) {
        const int sid = cand[j];
        if (sid < 0 || (P->superposition && sid != ph->src)) continue;
        const double* f = P->seed_frame + 12 * (long long)sid;
        const double rel[3] = {mid[0] - f[0], mid[1] - f[1], mid[2] - f[2]};
        const double zm = bmc_dot3(rel, f + 9);
        const double q = bmc_dot3(rel, rel) - zm * zm;
        const int loc = bmc_seed_locate(P, zm, q > 0 ? q : 0.0);
        if (loc >= 0) {
            st->m = P->solid_mat[loc];
            st->rho = P->solid_rho[loc];
            st->bin = -1;
        }
    }
    st->t = tt;
    st->axis = tt >= t_face ? axis : -1;
}

// After a step of length d that did not end in an interaction: cross the voxel face on axis (or go on
// in the same voxel after a seed surface, axis < 0). Returns 0 when the photon left the grid.
BMC_DEVICE int bmc_voxel_advance(const BmcParams* P, BmcPhoton* ph, int axis, double d) {
    if (axis < 0) { ph->t += d; return 1; }
    const long long n = axis == 0 ? P->nx : (axis == 1 ? P->ny : P->nz);
    const long long stride = axis == 0 ? 1 : (axis == 1 ? P->nx : P->nx * P->ny);
    ph->t = ph->tmax[axis];
    if (ph->dir[axis] > 0) {
        ph->ivox[axis] += 1;
        ph->flat += stride;
        if (ph->ivox[axis] >= (int)n) return 0;
    } else {
        ph->ivox[axis] -= 1;
        ph->flat -= stride;
        if (ph->ivox[axis] < 0) return 0;
    }
    ph->tmax[axis] = bmc_face_t(P, ph, axis);
    return 1;
}

// Where the photon is now (voxel world: pos + t dir), made the start of its next flight.
BMC_DEVICE void bmc_settle(BmcPhoton* ph) {
    for (int a = 0; a < 3; ++a) ph->pos[a] += ph->dir[a] * ph->t;
    ph->t = 0.0;
}

// first index with a[i] >= x (numpy searchsorted side='left') / > x (side='right')
BMC_DEVICE int bmc_lower_bound(const double* a, int n, double x) {
    int lo = 0, hi = n;
    while (lo < hi) { const int mid = (lo + hi) >> 1; if (a[mid] < x) lo = mid + 1; else hi = mid; }
    return lo;
}
BMC_DEVICE int bmc_upper_bound(const double* a, int n, double x) {
    int lo = 0, hi = n;
    while (lo < hi) { const int mid = (lo + hi) >> 1; if (a[mid] <= x) lo = mid + 1; else hi = mid; }
    return lo;
}

// Smallest root > eps of the double cone z^2 = c^2 |p|^2 (the plane z = 0 for c = 0).
BMC_DEVICE double bmc_cone_next(double z, double w, double p2, double pdf, double c) {
    if (c == 0) {
        const double tz = w != 0 ? -z / w : BMC_BIG;
        return tz > BMC_SURFACE_EPS ? tz : BMC_BIG;
    }
    const double c2 = c * c;
    const double a = w * w - c2;
    const double b = 2.0 * (z * w - c2 * pdf);
    const double cc = z * z - c2 * p2;
    const double disc = b * b - 4.0 * a * cc;
    if (!(disc >= 0)) return BMC_BIG;
    const double sq = bmc_sqrt(disc);
    const double q = -0.5 * (b + (b >= 0 ? sq : -sq));
    const double t1 = a != 0 ? q / a : BMC_BIG;
    const double t2 = q != 0 ? cc / q : BMC_BIG;
    double best = BMC_BIG;
    if (t1 > BMC_SURFACE_EPS && t1 < best) best = t1;
    if (t2 > BMC_SURFACE_EPS && t2 < best) best = t2;
    return best;
}

BMC_DEVICE long long bmc_polar_bin(const BmcParams* P, const double* p) {
    const double r = bmc_sqrt(bmc_dot3(p, p));
    const double c = r > 0 ? p[2] / r : 1.0;
    const int ir = bmc_upper_bound(P->r_edges, (int)P->n_r + 1, r) - 1;
    int ic = bmc_upper_bound(P->cos_edges, (int)P->n_c + 1, c) - 1;
    if (ic < 0) ic = 0;
    if (ic > (int)P->n_c - 1) ic = (int)P->n_c - 1;
    if (ir < 0 || ir >= (int)P->n_r) return -1;
    return (long long)ir * P->n_c + ic;
}

BMC_DEVICE void bmc_seed_world_step(const BmcParams* P, const BmcPhoton* ph, BmcStep* st) {
    const double* pos = ph->pos;
    const double* d = ph->dir;
    const double p2 = bmc_dot3(pos, pos), pdf = bmc_dot3(pos, d);
    const double z = pos[2], w = d[2];
    const double r = bmc_sqrt(p2);
    double t = BMC_BIG;
    const int ns = (int)P->n_spheres;
    const int i = bmc_lower_bound(P->spheres, ns, r);
    for (int k = -1; k <= 1; ++k) {
        int j = i + k; j = j < 0 ? 0 : (j > ns - 1 ? ns - 1 : j);
        const double tk = bmc_sphere_next(pdf, p2, P->spheres[j]);
        if (tk < t) t = tk;
    }
    const int nc = (int)P->n_cones;
    if (nc > 0) {
        const double c = r > 0 ? z / r : 1.0;
        const int jc = bmc_lower_bound(P->cones, nc, c);
        for (int k = -1; k <= 1; ++k) {
            int j = jc + k; j = j < 0 ? 0 : (j > nc - 1 ? nc - 1 : j);
            const double tk = bmc_cone_next(z, w, p2, pdf, P->cones[j]);
            if (tk < t) t = tk;
        }
    }
    const double R2 = P->seed_radius * P->seed_radius;
    if (p2 < R2) {
        const double r2 = p2 - z * z > 0 ? p2 - z * z : 0.0;
        const double ts = bmc_seed_next(P, z, r2, w, pdf - z * w);
        if (ts < t) t = ts;
    }
    const double h = t * 0.5;
    const double mid[3] = {pos[0] + d[0] * h, pos[1] + d[1] * h, pos[2] + d[2] * h};
    const double m2 = bmc_dot3(mid, mid);
    int loc = -1;
    if (m2 < R2) {
        const double q = m2 - mid[2] * mid[2];
        loc = bmc_seed_locate(P, mid[2], q > 0 ? q : 0.0);
    }
    st->t = t;
    st->axis = -1;
    if (loc >= 0) {
        st->m = P->solid_mat[loc];
        st->rho = P->solid_rho[loc];
        st->bin = -1;
    } else {
        st->m = (int)P->medium_mat;
        st->rho = P->medium_rho;
        st->bin = bmc_polar_bin(P, mid);
    }
}

// After a boundary step in the single-seed world: 1 while inside the world sphere.
BMC_DEVICE int bmc_seed_world_inside(const BmcParams* P, const BmcPhoton* ph) {
    const double R = P->world_radius;
    return !(bmc_dot3(ph->pos, ph->pos) >= R * R * (1 - 1e-12) && bmc_dot3(ph->pos, ph->dir) > 0);
}
