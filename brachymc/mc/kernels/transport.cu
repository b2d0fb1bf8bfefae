// transport.cu -- brachymc's kernel engine: one thread takes one source photon from birth to death.
//
// Built twice from this one source (brachymc/mc/kernel_build.py): by NVRTC through CuPy for GPUs,
// and by the system C++ compiler with OpenMP for CPUs (portability.h), so the tests on a machine
// without a GPU run the code the GPU runs. The physics is the array engine's (mc/array_engine.py,
// mc/interactions.py) with the same tables: photoelectric absorption with K/L fluorescence,
// incoherent scattering with S(x, Z), coherent scattering with F(x, Z); a cutoff with local deposit;
// the track-length estimator of collision kerma (Dm,m; optionally Dw,m, primary and the collision
// estimator). One photoabsorption emits at most one fluorescence photon and ends its parent, so the
// secondary takes over the parent's slot: the per-thread stack of secondaries has depth one.
#include "sources.h"

struct BmcTally {
    double* kerma;
    double* primary;
    double* collision;
    double* water;
    int atomic;
};

BMC_DEVICE void bmc_add(const BmcTally& T, double* a, long long i, double v) {
    if (T.atomic) bmc_atomic_add(a + i, v); else a[i] += v;
}

BMC_DEVICE void bmc_set_energy(const BmcParams* P, BmcPhoton* ph, double e) {
    ph->e = e;
    ph->ln_e = bmc_log(e);
    bmc_energy_position(P, ph->ln_e, &ph->ie, &ph->fe);
    ph->cm = -1;
}

BMC_DEVICE void bmc_coefficients(const BmcParams* P, BmcPhoton* ph, int m) {
    if (m == ph->cm) return;
    ph->mu_rho = bmc_interp_log(P->ln_mu, P, m, ph->ie, ph->fe);
    ph->muen_rho = bmc_interp_log(P->ln_muen, P, m, ph->ie, ph->fe);
    if (P->score_water) ph->muen_w = bmc_interp_log(P->ln_muen, P, (int)P->water_index, ph->ie, ph->fe);
    ph->cm = m;
}

BMC_DEVICE void bmc_escape(const BmcParams* P, const BmcPhoton* ph, double* acc) {
    const double we = ph->wt * ph->e;
    acc[BMC_ACC_ESCAPED] += we;
    if (!ph->scat) acc[BMC_ACC_ESCAPED_PRIMARY] += we;
    if (P->n_esc_bins > 0 && ph->scat) {
        const int k = bmc_upper_bound(P->esc_edges, (int)P->n_esc_bins + 1, ph->e) - 1;
        if (k >= 0 && k < (int)P->n_esc_bins) bmc_atomic_add(P->esc_hist + k, ph->wt);
    }
    if (!P->score_air_kerma) return;
    // S_K in vacuo (mc/air_kerma.py AirKermaScorer): the crossing of the cylinder of radius d about
    // the seed axis at height zh and angle a to its normal adds w E (mu_en/rho)_air g(beta) / (2 pi cos a)
    acc[BMC_ACC_ESC_N] += ph->wt;
    acc[BMC_ACC_ESC_E] += we;
    if (!(ph->e >= P->ak_cutoff)) return;
    acc[BMC_ACC_ESC_N5] += ph->wt;
    acc[BMC_ACC_ESC_E5] += we;
    const double* p = ph->pos;
    const double* d = ph->dir;
    const double a = d[0] * d[0] + d[1] * d[1];
    if (!(a > 0)) return;
    const double bq = p[0] * d[0] + p[1] * d[1];
    const double muen = bmc_interp_log(P->ln_muen, P, (int)P->ak_air_mat, ph->ie, ph->fe);
    const int nt = (int)P->n_ak_tab;
    for (int k = 0; k < (int)P->score_air_kerma && k < BMC_MAX_AK; ++k) {
        const double dd = P->ak_det[3 * k], hw = P->ak_det[3 * k + 1];
        const double c = p[0] * p[0] + p[1] * p[1] - dd * dd;
        const double disc = bq * bq - a * c;
        if (!(disc >= 0)) continue;
        const double t = (-bq + bmc_sqrt(disc)) / a;
        const double zh = p[2] + t * d[2];
        const double xh = p[0] + t * d[0], yh = p[1] + t * d[1];
        const double cos_a = (xh * d[0] + yh * d[1]) / dd;
        if (!(cos_a > 0) || !((zh < 0 ? -zh : zh) <= hw)) continue;
        // g / (2 pi) from its table over -hw..hw (linear interpolation)
        const double x = (zh + hw) * P->ak_det[3 * k + 2];
        int i = x < 0 ? 0 : (int)x;
        if (i > nt - 2) i = nt - 2;
        const double f = x - (double)i;
        const double* gt = P->ak_gtab + (long long)k * nt;
        const double g = gt[i] + f * (gt[i + 1] - gt[i]);
        const double s = we * muen * g / cos_a;
        acc[BMC_ACC_AK + 2 * k] += s;
        if (!ph->scat) acc[BMC_ACC_AK + 2 * k + 1] += s;
    }
}

// The interaction at the end of a step in medium (m, rho) of scoring bin `bin`. Returns 1 while the
// photon (or the fluorescence photon that replaces it) goes on.
BMC_DEVICE int bmc_interact(const BmcParams* P, BmcRng* g, BmcPhoton* ph, const BmcStep& st, const BmcTally& T,
                            double* acc) {
    const double r = bmc_uniform(g);
    const double pp = bmc_interp_lin(P->p_photo, P, st.m, ph->ie, ph->fe);
    const double pi = bmc_interp_lin(P->p_incoh, P, st.m, ph->ie, ph->fe);
    const int scored = st.bin >= 0;
    const double e = ph->e, wt = ph->wt;
    double dep;
    int alive;
    double e_new = e;
    if (r < pp) {                                         // photoelectric absorption
        const double uc = bmc_uniform(g), ul = bmc_uniform(g);
        double e_fl = 0.0;
        alive = bmc_fluorescence(P, st.m, ph->ie, uc, ul, &e_fl);
        dep = e - (alive ? e_fl : 0.0);
        if (alive) {
            const double u1 = bmc_uniform(g), u2 = bmc_uniform(g);
            bmc_isotropic(ph->dir, u1, u2);
            e_new = e_fl;
        }
    } else {                                              // incoherent or coherent scattering
        const int incoh = r < pp + pi;
        const double ua = bmc_uniform(g);
        const double cos_t = incoh ? bmc_sample_cos(P, P->compton_q, P->compton_pdf, st.m, ph->ln_e, ua)
                                   : bmc_sample_cos(P, P->rayleigh_q, P->rayleigh_pdf, st.m, ph->ln_e, ua);
        const double e_out = incoh ? bmc_compton_energy(P, e, cos_t) : e;
        const double u_phi = bmc_uniform(g);
        dep = e - e_out;
        if (e_out < P->cutoff_kev) {                      // below the cutoff: deposited here
            if (scored) bmc_add(T, T.kerma, st.bin, wt * e_out / st.rho);
            acc[BMC_ACC_LOCAL] += wt * e_out;
            dep += e_out;
            alive = 0;
        } else {
            bmc_rotate(ph->dir, cos_t, u_phi);
            e_new = e_out;
            alive = 1;
        }
    }
    if (!scored) acc[BMC_ACC_UNSCORED] += wt * dep;
    if (T.collision && scored) bmc_add(T, T.collision, st.bin, wt * dep / st.rho);
    if (!alive) return 0;
    ph->scat = 1;
    if (e_new != e) bmc_set_energy(P, ph, e_new);
    bmc_set_direction(ph);
    ph->nmfp = -bmc_log(1.0 - bmc_uniform(g));
    return 1;
}

#define BMC_MAX_STEPS 100000000LL

BMC_DEVICE void bmc_history(const BmcParams* P, long long h, const BmcTally& T, double* acc) {
    BmcRng g;
    bmc_rng_init(&g, (bmc_u32)P->key0, (bmc_u32)P->key1, h);
    BmcPhoton ph;
    bmc_sample_source(P, &g, &ph);
    acc[BMC_ACC_EMITTED] += ph.wt * ph.e;
    ph.scat = 0;
    bmc_set_energy(P, &ph, ph.e);
    bmc_set_direction(&ph);
    ph.nmfp = -bmc_log(1.0 - bmc_uniform(&g));
    const int voxels = P->world_kind == 0;
    if (voxels) { bmc_init_voxel(P, &ph); bmc_start_flight(P, &ph); }
    BmcStep st;
    for (long long n = 1;; ++n) {
        if (n > BMC_MAX_STEPS) { acc[BMC_ACC_LOST] += 1.0; acc[BMC_ACC_STEPS] += (double)(n - 1); return; }
        if (voxels) bmc_voxel_step(P, &ph, &st); else bmc_seed_world_step(P, &ph, &st);
        bmc_coefficients(P, &ph, st.m);
        const double mu = st.rho * ph.mu_rho;
        // interaction before the boundary: nmfp < mu t (a division only where it happens)
        const int hit = ph.nmfp < mu * st.t;
        const double d = hit ? ph.nmfp / mu : st.t;
        if (st.bin >= 0) {                               // track-length estimator of collision kerma
            const double we = ph.wt * ph.e;
            const double s = we * ph.muen_rho * d;
            bmc_add(T, T.kerma, st.bin, s);
            if (T.primary && !ph.scat) bmc_add(T, T.primary, st.bin, s);
            if (T.water) bmc_add(T, T.water, st.bin, we * ph.muen_w * d);
        }
        ph.nmfp -= mu * d;
        if (!hit) {
            int inside;
            if (voxels) {
                inside = bmc_voxel_advance(P, &ph, st.axis, d);
            } else {
                for (int a = 0; a < 3; ++a) ph.pos[a] += ph.dir[a] * d;
                inside = bmc_seed_world_inside(P, &ph);
            }
            if (!inside) { bmc_escape(P, &ph, acc); acc[BMC_ACC_STEPS] += (double)n; return; }
            continue;
        }
        if (voxels) { ph.t += d; bmc_settle(&ph); }
        else for (int a = 0; a < 3; ++a) ph.pos[a] += ph.dir[a] * d;
        if (!bmc_interact(P, &g, &ph, st, T, acc)) { acc[BMC_ACC_STEPS] += (double)n; return; }
        if (voxels) bmc_start_flight(P, &ph);
    }
}

// The kernel: each thread transports its share of the launch's histories.
BMC_GLOBAL void bmc_transport(const BmcParams* BMC_RESTRICT P BMC_THREAD_ARGS) {
    BmcTally T;
    T.kerma = P->kerma; T.primary = P->primary; T.collision = P->collision; T.water = P->water;
    T.atomic = 1;
    double* acc_out = P->acc;
#if BMC_CPU
    acc_out = P->acc + (long long)bmc_tid * BMC_NACC;
    if (P->private_tallies) {
        T.atomic = 0;
        if (bmc_tid > 0) {
            double* base = P->private_buf + (long long)(bmc_tid - 1) * P->private_stride;
            const long long n = P->n_scores;
            int s = 0;
            T.kerma = base + (s++) * n;
            T.primary = P->primary ? base + (s++) * n : 0;
            T.collision = P->collision ? base + (s++) * n : 0;
            T.water = P->water ? base + (s++) * n : 0;
        }
    }
#endif
    double acc[BMC_NACC];
    for (int k = 0; k < BMC_NACC; ++k) acc[k] = 0.0;
    BMC_FOR_EACH_HISTORY(i, P->n_histories) { bmc_history(P, P->first_history + i, T, acc); }
    for (int k = 0; k < BMC_NACC; ++k) {
#if BMC_GPU
        double v = acc[k];                          // warp sum first: one atomic per warp
        for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
        if ((threadIdx.x & 31) == 0 && v != 0.0) bmc_atomic_add(acc_out + k, v);
#else
        acc_out[k] += acc[k];
#endif
    }
}

#if BMC_CPU
#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_thread_num() { return 0; }
static int omp_get_num_threads() { return 1; }
static void omp_set_dynamic(int) {}
#endif

extern "C" {

long long bmc_params_size() { return (long long)sizeof(BmcParams); }
long long bmc_nacc() { return BMC_NACC; }

// Transport P->n_histories histories on n_threads OpenMP threads; returns the threads used. With
// reduce = 0 the threads' private tallies are kept for the next launch of the same batch; the last
// launch of a batch reduces them (in thread order) into the outputs and zeroes them.
int bmc_run_cpu(const BmcParams* P, int n_threads, int reduce) {
    omp_set_dynamic(0);
    int used = 1;
#pragma omp parallel num_threads(n_threads)
    {
#pragma omp single
        used = omp_get_num_threads();
        bmc_transport(P, omp_get_thread_num(), omp_get_num_threads());
    }
    if (reduce && P->private_tallies && used > 1) {
        // add the private tallies of threads 1.. into the output, voxel by voxel in thread order
        double* outs[4] = {P->kerma, P->primary, P->collision, P->water};
        const long long n = P->n_scores;
        int slot = 0;
        for (int q = 0; q < 4; ++q) {
            double* out = outs[q];
            if (!out) continue;
#pragma omp parallel for num_threads(n_threads) schedule(static)
            for (long long v = 0; v < n; ++v) {
                double s = out[v];
                for (int t = 1; t < used; ++t) {
                    double* pv = P->private_buf + (long long)(t - 1) * P->private_stride + (long long)slot * n + v;
                    s += *pv;
                    *pv = 0.0;                      // ready for the next launch
                }
                out[v] = s;
            }
            slot += 1;
        }
    }
    return used;
}

// ---- test entry points: the kernel's own functions, called from the tests ----------------------
void bmc_test_philox(const unsigned int* ctr, const unsigned int* key, unsigned int* out) {
    bmc_philox4x32_10(ctr, key[0], key[1], out);
}

void bmc_test_uniform(long long key0, long long key1, long long history, long long n, double* out) {
    BmcRng g;
    bmc_rng_init(&g, (bmc_u32)key0, (bmc_u32)key1, history);
    for (long long i = 0; i < n; ++i) out[i] = bmc_uniform(&g);
}

// kind 0: exp, 1: log, 2: cos(2 pi u), 3: sin(2 pi u)
void bmc_test_math(int kind, long long n, const double* x, double* out) {
    for (long long i = 0; i < n; ++i) {
        double c, s;
        switch (kind) {
            case 0: out[i] = bmc_exp(x[i]); break;
            case 1: out[i] = bmc_log(x[i]); break;
            default: bmc_cos_sin_2pi(x[i], &c, &s); out[i] = kind == 2 ? c : s; break;
        }
    }
}

// The seed model of P: distance to the next surface and the solid at each (z, r^2, w, pd).
void bmc_test_seed(const BmcParams* P, long long n, const double* z, const double* r2, const double* w,
                   const double* pd, double* t, int* loc) {
    for (long long i = 0; i < n; ++i) {
        t[i] = bmc_seed_distance(P, z[i], r2[i], w[i], pd[i]);
        loc[i] = bmc_seed_locate(P, z[i], r2[i]);
    }
}

// The stop of a ray near a seed as the transport takes it (the envelope rule of bmc_seed_next).
void bmc_test_seed_next(const BmcParams* P, long long n, const double* z, const double* r2, const double* w,
                        const double* pd, double* t) {
    for (long long i = 0; i < n; ++i) t[i] = bmc_seed_next(P, z[i], r2[i], w[i], pd[i]);
}

// Grid interval and fraction of each ln E (the look-up table plus the upward search).
void bmc_test_energy_position(const BmcParams* P, long long n, const double* ln_e, int* i_out, double* f_out) {
    for (long long k = 0; k < n; ++k) bmc_energy_position(P, ln_e[k], i_out + k, f_out + k);
}

// Source photons of P: (x, y, z, u, v, w, E, seed) per history, histories first .. first + n - 1.
void bmc_test_source(const BmcParams* P, long long n, double* out) {
    for (long long i = 0; i < n; ++i) {
        BmcRng g;
        bmc_rng_init(&g, (bmc_u32)P->key0, (bmc_u32)P->key1, P->first_history + i);
        BmcPhoton ph;
        bmc_sample_source(P, &g, &ph);
        double* o = out + 8 * i;
        for (int a = 0; a < 3; ++a) { o[a] = ph.pos[a]; o[3 + a] = ph.dir[a]; }
        o[6] = ph.e;
        o[7] = ph.src;
    }
}

// Interaction sampling: for photons of energy e[i] in material m, (cos theta Compton, cos theta
// Rayleigh, fluorescence energy or 0) from the uniforms u[3 i .. 3 i + 2].
void bmc_test_interactions(const BmcParams* P, int m, long long n, const double* e, const double* u, double* out) {
    for (long long i = 0; i < n; ++i) {
        double ln_e = bmc_log(e[i]), f;
        int ie;
        bmc_energy_position(P, ln_e, &ie, &f);
        out[3 * i] = bmc_sample_cos(P, P->compton_q, P->compton_pdf, m, ln_e, u[3 * i]);
        out[3 * i + 1] = bmc_sample_cos(P, P->rayleigh_q, P->rayleigh_pdf, m, ln_e, u[3 * i]);
        double efl = 0.0;
        out[3 * i + 2] = bmc_fluorescence(P, m, ie, u[3 * i + 1], u[3 * i + 2], &efl) ? efl : 0.0;
    }
}

}  // extern "C"
#endif
