// philox.h -- counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel
// random numbers: as easy as 1, 2, 3", SC'11), the generator of Random123, cuRAND and JAX.
//
// A stream is keyed by the batch (64 bits drawn from the batch's numpy SeedSequence, so batches keep
// their SeedSequence-derived, independent streams) and by the history number: the counter of history h
// is (n, h_lo, h_hi, 0) with n = 0, 1, 2, ... Every history therefore owns its random numbers whatever
// thread, core or GPU transports it, and the CPU and GPU builds follow the same histories.
#pragma once
#include "portability.h"

struct BmcRng {
    bmc_u32 k0, k1;        // key
    bmc_u32 h0, h1;        // history number
    bmc_u32 n;             // block counter
    bmc_u32 buf[4];        // last block
    int used;              // words taken from buf (0..4)
};

BMC_DEVICE void bmc_philox4x32_10(const bmc_u32 ctr[4], bmc_u32 k0, bmc_u32 k1, bmc_u32 out[4]) {
    const bmc_u32 M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    bmc_u32 c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    for (int r = 0; r < 10; ++r) {
        if (r > 0) { k0 += W0; k1 += W1; }
        const bmc_u64 p0 = (bmc_u64)M0 * c0, p1 = (bmc_u64)M1 * c2;   // 32 x 32 -> 64 bits
        const bmc_u32 hi0 = (bmc_u32)(p0 >> 32), lo0 = (bmc_u32)p0;
        const bmc_u32 hi1 = (bmc_u32)(p1 >> 32), lo1 = (bmc_u32)p1;
        bmc_u32 n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

BMC_DEVICE void bmc_rng_init(BmcRng* g, bmc_u32 k0, bmc_u32 k1, long long history) {
    g->k0 = k0; g->k1 = k1;
    g->h0 = (bmc_u32)((bmc_u64)history & 0xffffffffu);
    g->h1 = (bmc_u32)((bmc_u64)history >> 32);
    g->n = 0;
    g->used = 4;
}

// Uniform double in (0, 1) from one 32-bit word: (x + 1/2) 2^-32, never 0 or 1. A resolution of 2^-32
// is far below any statistical effect of the transport (the longest free flight it allows,
// -ln(2^-33) = 22.9 mean free paths, is exceeded with probability 1e-10), and one Philox block
// gives four numbers.
BMC_DEVICE double bmc_uniform(BmcRng* g) {
    if (g->used == 4) {
        bmc_u32 ctr[4] = {g->n, g->h0, g->h1, 0u};
        bmc_philox4x32_10(ctr, g->k0, g->k1, g->buf);
        g->n += 1u;
        g->used = 0;
    }
    const int k = g->used;                         // the word, chosen without indexing (GPU registers)
    const bmc_u32 x = k == 0 ? g->buf[0] : (k == 1 ? g->buf[1] : (k == 2 ? g->buf[2] : g->buf[3]));
    g->used += 1;
    return ((double)x + 0.5) * (1.0 / 4294967296.0);
}
