// portability.h -- one kernel source, two builds.
//
// The transport kernel is CUDA C++. On a GPU it is compiled by NVRTC (through CuPy's RawModule);
// on a CPU by the system C++ compiler, where this header maps the CUDA vocabulary onto plain C++:
//
//   BMC_GLOBAL / BMC_DEVICE     __global__ / __device__ on the GPU; plain (inline) functions on the CPU
//   BMC_THREAD_ARGS             the CPU build's kernel gets its OpenMP thread number and count
//   BMC_FOR_EACH_HISTORY(i, n)  GPU: grid-stride loop over histories; CPU: this thread's contiguous
//                               block of histories (a static split, so the assignment of histories to
//                               threads -- and with it every sum -- is reproducible)
//   bmc_atomic_add(p, v)        atomicAdd on the GPU; an atomic compare-and-swap loop on the CPU
//
// Floating point: both builds must evaluate every expression the same way, so fused multiply-adds
// are off (NVRTC --fmad=false; g++ -ffp-contract=off), no fast-math, and the transcendental
// functions come from detmath.h rather than from the two different math libraries.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define BMC_GPU 1
#define BMC_GLOBAL extern "C" __global__
#define BMC_DEVICE __device__ __forceinline__
#define BMC_RESTRICT __restrict__
#define BMC_THREAD_ARGS
#define BMC_THREAD_ID 0
#define BMC_FOR_EACH_HISTORY(i, n)                                                        \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n);         \
         i += (long long)gridDim.x * blockDim.x)
typedef unsigned int bmc_u32;
typedef unsigned long long bmc_u64;

BMC_DEVICE void bmc_atomic_add(double* p, double v) { atomicAdd(p, v); }
BMC_DEVICE bmc_u64 bmc_double_bits(double x) { return (bmc_u64)__double_as_longlong(x); }
BMC_DEVICE double bmc_bits_double(bmc_u64 b) { return __longlong_as_double((long long)b); }
BMC_DEVICE double bmc_sqrt(double x) { return sqrt(x); }      // IEEE correctly rounded
BMC_DEVICE float bmc_bits_float(bmc_u32 b) { return __uint_as_float(b); }
#define bmc_prefetch(p) ((void)0)

#else
#define BMC_CPU 1
#include <cstdint>
#include <cstring>
#include <cmath>
#define BMC_GLOBAL static
#define BMC_DEVICE static inline
#define BMC_RESTRICT __restrict__
#define BMC_THREAD_ARGS , int bmc_tid, int bmc_nthreads
#define BMC_THREAD_ID bmc_tid
#define BMC_FOR_EACH_HISTORY(i, n)                                                        \
    for (long long i = (n) * bmc_tid / bmc_nthreads, i##_end = (n) * (bmc_tid + 1) / bmc_nthreads; \
         i < i##_end; ++i)
typedef uint32_t bmc_u32;
typedef uint64_t bmc_u64;

BMC_DEVICE void bmc_atomic_add(double* p, double v) {
    // CAS loop on the bit pattern (what atomicAdd(double*) does on GPUs without native support)
    bmc_u64* q = reinterpret_cast<bmc_u64*>(p);
    bmc_u64 old = __atomic_load_n(q, __ATOMIC_RELAXED);
    for (;;) {
        double cur;
        std::memcpy(&cur, &old, 8);
        double nxt = cur + v;
        bmc_u64 nb;
        std::memcpy(&nb, &nxt, 8);
        if (__atomic_compare_exchange_n(q, &old, nb, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return;
    }
}
BMC_DEVICE bmc_u64 bmc_double_bits(double x) { bmc_u64 b; std::memcpy(&b, &x, 8); return b; }
BMC_DEVICE double bmc_bits_double(bmc_u64 b) { double x; std::memcpy(&x, &b, 8); return x; }
BMC_DEVICE double bmc_sqrt(double x) { return std::sqrt(x); }  // IEEE correctly rounded
BMC_DEVICE float bmc_bits_float(bmc_u32 b) { float x; std::memcpy(&x, &b, 4); return x; }
#define bmc_prefetch(p) __builtin_prefetch((const void*)(p), 1, 3)
#endif

#define BMC_BIG 1e30
#define BMC_SURFACE_EPS 1e-9
#define BMC_PI 3.141592653589793
