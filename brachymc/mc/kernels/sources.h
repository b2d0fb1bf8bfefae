// sources.h -- birth of a source photon (twins of sources/simple.py and sources/seed_source.py):
// isotropic point and line sources, a pencil beam, and seeds (seed chosen by its air-kerma strength,
// decay position uniform in the active solids, sampled cell by cell from the (z, r^2) cells that meet
// the solid -- the same distribution as rejection from the solid's bounding cylinder).
#pragma once
#include "philox.h"
#include "physics.h"
#include "worlds.h"

// number of cum[0..n-1] <= u (numpy searchsorted side='right'): the index drawn from a CDF
BMC_DEVICE int bmc_pick(const double* cum, int n, double u) { return bmc_upper_bound(cum, n, u); }

BMC_DEVICE void bmc_sample_active(const BmcParams* P, BmcRng* g, double* z, double* x, double* y) {
    const int j = bmc_pick(P->active_cum, (int)P->n_active - 1, bmc_uniform(g));
    const int solid = P->active_solid[j];
    const double* cell = P->active_cell + 4 * j;          // z_lo, dz, dr2, nr
    const long long off = P->cell_offset[j];
    const long long ncell = P->cell_offset[j + 1] - off;
    const int nr = (int)cell[3];
    const unsigned int need = (unsigned int)P->solid_closure[solid];
    for (int tries = 0;; ++tries) {
        long long k = (long long)(bmc_uniform(g) * (double)ncell);
        if (k > ncell - 1) k = ncell - 1;
        const int c = P->cells[off + k];
        const int iz = c / nr, ir = c % nr;
        const double zz = cell[0] + (iz + bmc_uniform(g)) * cell[1];
        const double r2 = (ir + bmc_uniform(g)) * cell[2];
        // tries cap: acceptance is > 30 % by construction of the cells; never reached in practice
        if (((bmc_solid_inside(P, zz, r2, need) >> solid) & 1u) || tries > 100000) {
            double cp, sp;                        // the azimuth only for an accepted point
            bmc_cos_sin_2pi(bmc_uniform(g), &cp, &sp);
            const double rr = bmc_sqrt(r2);
            *z = zz; *x = rr * cp; *y = rr * sp;
            return;
        }
    }
}

BMC_DEVICE void bmc_sample_source(const BmcParams* P, BmcRng* g, BmcPhoton* ph) {
    ph->src = -1;
    if (P->source_kind == 3) {
        const int k = P->n_src_seeds > 1 ? bmc_pick(P->src_seed_cum, (int)P->n_src_seeds - 1, bmc_uniform(g)) : 0;
        double z, x, y;
        bmc_sample_active(P, g, &z, &x, &y);
        const double* f = P->src_seed_frame + 12 * (long long)k;   // centre, e1, e2, axis
        for (int a = 0; a < 3; ++a) ph->pos[a] = f[a] + f[3 + a] * x + f[6 + a] * y + f[9 + a] * z;
        ph->src = k;
        const double u1 = bmc_uniform(g), u2 = bmc_uniform(g);
        bmc_isotropic(ph->dir, u1, u2);
    } else if (P->source_kind == 2) {
        ph->pos[0] = P->src_ax; ph->pos[1] = P->src_ay; ph->pos[2] = P->src_az;
        ph->dir[0] = P->src_bx; ph->dir[1] = P->src_by; ph->dir[2] = P->src_bz;
    } else {
        ph->pos[0] = P->src_ax; ph->pos[1] = P->src_ay; ph->pos[2] = P->src_az;
        if (P->source_kind == 1) {
            const double u = bmc_uniform(g);
            ph->pos[0] += (P->src_bx - P->src_ax) * u;
            ph->pos[1] += (P->src_by - P->src_ay) * u;
            ph->pos[2] += (P->src_bz - P->src_az) * u;
        }
        const double u1 = bmc_uniform(g), u2 = bmc_uniform(g);
        bmc_isotropic(ph->dir, u1, u2);
    }
    const int line = P->n_spec > 1 ? bmc_pick(P->spec_cum, (int)P->n_spec - 1, bmc_uniform(g)) : 0;
    ph->e = P->spec_energy[line];
    ph->wt = 1.0;
}
