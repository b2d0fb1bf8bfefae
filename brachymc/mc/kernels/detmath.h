// detmath.h -- exp, log and sin/cos of 2 pi u evaluated with basic IEEE operations only (+ - * / and
// sqrt, which both builds round identically), so that the CPU and GPU builds of the kernel compute
// bit-identical results and follow identical histories. CUDA's libdevice and the host's libm differ in
// the last bit of some results, and one different bit can send a history down another branch.
//
// The algorithms are the classic argument reduction + minimax polynomial of Sun's fdlibm
// (e_exp.c, e_log.c, k_sin.c, k_cos.c; coefficients as published there): errors below 1 ulp.
// Domain used by the transport: exp of arguments in (-700, 700), log of positive normal numbers.
#pragma once
#include "portability.h"

BMC_DEVICE double bmc_ldexp_int(double x, int k) {
    // x * 2^k for results in the normal range: add k to the exponent field
    bmc_u64 b = bmc_double_bits(x);
    b += (bmc_u64)((long long)k) << 52;
    return bmc_bits_double(b);
}

BMC_DEVICE double bmc_exp(double x) {
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double inv_ln2 = 1.44269504088896338700e+00;
    const double P1 = 1.66666666666666019037e-01, P2 = -2.77777777770155933842e-03,
                 P3 = 6.61375632143793436117e-05, P4 = -1.65339022054652515390e-06,
                 P5 = 4.13813679705723846039e-08;
    if (x > 709.0) return BMC_BIG * BMC_BIG;
    if (x < -708.0) return 0.0;
    // k = nearest integer to x / ln 2
    const double kd = (double)(long long)(x * inv_ln2 + (x >= 0 ? 0.5 : -0.5));
    const int k = (int)kd;
    const double hi = x - kd * ln2_hi;
    const double lo = kd * ln2_lo;
    const double r = hi - lo;
    const double t = r * r;
    const double c = r - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
    const double y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
    return bmc_ldexp_int(y, k);
}

BMC_DEVICE double bmc_log(double x) {
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01,
                 Lg3 = 2.857142874366239149e-01, Lg4 = 2.222219843214978396e-01,
                 Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
                 Lg7 = 1.479819860511658591e-01;
    if (!(x > 0.0)) return x == 0.0 ? -BMC_BIG * BMC_BIG : (x - x) / (x - x);
    bmc_u64 b = bmc_double_bits(x);
    int k = (int)((b >> 52) & 0x7ff) - 1023;
    if (k == -1023) {                     // subnormal: scale into the normal range
        x *= 18014398509481984.0;         // 2^54
        b = bmc_double_bits(x);
        k = (int)((b >> 52) & 0x7ff) - 1023 - 54;
    }
    // m in [sqrt(2)/2, sqrt(2)): m = mantissa with exponent 0, or halved
    b = (b & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
    double m = bmc_bits_double(b);
    if (m > 1.4142135623730951) { m *= 0.5; k += 1; }
    const double f = m - 1.0;
    const double s = f / (2.0 + f);
    const double z = s * s, w = z * z;
    const double t1 = w * (Lg2 + w * (Lg4 + w * Lg6));
    const double t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)));
    const double R = t2 + t1;
    const double hfsq = 0.5 * f * f;
    const double dk = (double)k;
    return dk * ln2_hi - ((hfsq - (s * (hfsq + R) + dk * ln2_lo)) - f);
}

BMC_DEVICE double bmc_kernel_sin(double x) {       // |x| <= pi/4
    const double S1 = -1.66666666666666324348e-01, S2 = 8.33333333332248946124e-03,
                 S3 = -1.98412698298579493134e-04, S4 = 2.75573137070700676789e-06,
                 S5 = -2.50507602534068634195e-08, S6 = 1.58969099521155010221e-10;
    const double z = x * x;
    const double r = S2 + z * (S3 + z * (S4 + z * (S5 + z * S6)));
    return x + x * z * (S1 + z * r);
}

BMC_DEVICE double bmc_kernel_cos(double x) {       // |x| <= pi/4
    const double C1 = 4.16666666666666019037e-02, C2 = -1.38888888888741095749e-03,
                 C3 = 2.48015872894767294178e-05, C4 = -2.75573143513906633035e-07,
                 C5 = 2.08757232129817482790e-09, C6 = -1.13596475577881948265e-11;
    const double z = x * x;
    const double r = z * (C1 + z * (C2 + z * (C3 + z * (C4 + z * (C5 + z * C6)))));
    const double hz = 0.5 * z;
    const double w = 1.0 - hz;
    return w + (((1.0 - w) - hz) + z * r);
}

// cos and sin of the angle 2 pi u for u in [0, 1): the reduction is exact (u = (x + 1/2) 2^-32 is a
// dyadic rational of 33 bits, so 4u and its fractional part are exact)
BMC_DEVICE void bmc_cos_sin_2pi(double u, double* c, double* s) {
    const double q4 = u * 4.0;                    // exact
    const int q = (int)q4;                        // quadrant 0..3
    double r = q4 - (double)q;                    // exact, in [0, 1): angle r pi/2 within the quadrant
    double cr, sr;
    if (r <= 0.5) {
        const double a = r * (BMC_PI / 2.0);
        cr = bmc_kernel_cos(a); sr = bmc_kernel_sin(a);
    } else {
        const double a = (1.0 - r) * (BMC_PI / 2.0);   // 1 - r exact
        cr = bmc_kernel_sin(a); sr = bmc_kernel_cos(a);
    }
    switch (q) {
        case 0: *c = cr; *s = sr; break;
        case 1: *c = -sr; *s = cr; break;
        case 2: *c = -cr; *s = -sr; break;
        default: *c = sr; *s = -cr; break;
    }
}
