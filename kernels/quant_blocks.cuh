// Block decoders of the GGUF weight formats, for the GPU kernels and their host checks.
//
// Each format is a struct with ELEMS (weights per block), BYTES (bytes per block) and a
// decoder of eight neighbouring weights (below), with the same float operations as
// gguf-py's numpy dequantizers (so the same bits): value = (d * scale) * q - (dmin * min)
// for the K formats. Every function is
// __host__ __device__ and contraction-free (compile with --fmad=false on the device and
// -ffp-contract=off on the host), so host and device decode bit for bit alike.
#pragma once
#include "common.cuh"

namespace mtpdec {

// IEEE half -> float: one exact cvt instruction on the device; by bits on the host
// (no intrinsics there), the same value for every non-NaN half
MTPDEC_HD float half_to_float(uint16_t h) {
#ifdef __CUDA_ARCH__
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#else
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  // subnormal: normalize
            int e = -1;
            do { ++e; man <<= 1; } while ((man & 1024) == 0);
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 1023) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 112) << 23 | man << 13;
    }
    union { uint32_t u; float f; } v;
    v.u = bits;
    return v.f;
#endif
}

MTPDEC_HD float load_half(const uint8_t* p) {
    return half_to_float((uint16_t)(p[0] | p[1] << 8));
}

// Q4_K / Q5_K 6-bit scale and min of sub-block j (quant-formats.md)
MTPDEC_HD void scale_min_k4(const uint8_t* q, int j, int* sc, int* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Every format: ELEMS, BYTES and
//   static void eight(const uint8_t* block, int s, int l0, float w[8])
// giving weights s*32 + l0 .. s*32 + l0 + 7 of one block (s < ELEMS / 32, l0 in
// {0, 8, 16, 24}): the block header and the sub-block's scale are decoded once for the
// eight, each weight with gguf-py's float operations.

// (float)v for |v| < 2^22: on the device one integer add and one float subtract (exact:
// 0x4B400000 is 1.5 * 2^23, where floats are spaced 1 apart), cheaper than the I2F
// conversion, which issues at a fraction of the FP32 rate; a cast on the host
MTPDEC_HD float exact_float(int v) {
#ifdef __CUDA_ARCH__
    return __int_as_float(0x4B400000 + v) - 12582912.0f;
#else
    return (float)v;
#endif
}

MTPDEC_HD float load_float(const uint8_t* p) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return v.f;
}

struct F32Block {
    static constexpr int ELEMS = 32, BYTES = 128;
    MTPDEC_HD static void eight(const uint8_t* b, int, int l0, float w[8]) {
        for (int j = 0; j < 8; ++j) w[j] = load_float(b + 4 * (l0 + j));
    }
};

struct F16Block {
    static constexpr int ELEMS = 32, BYTES = 64;
    MTPDEC_HD static void eight(const uint8_t* b, int, int l0, float w[8]) {
        for (int j = 0; j < 8; ++j) w[j] = load_half(b + 2 * (l0 + j));
    }
};

struct Q8_0Block {
    static constexpr int ELEMS = 32, BYTES = 34;
    MTPDEC_HD static void eight(const uint8_t* b, int, int l0, float w[8]) {
        const float d = load_half(b);
        for (int j = 0; j < 8; ++j) w[j] = d * exact_float((int8_t)b[2 + l0 + j]);
    }
};

struct Q5_0Block {
    static constexpr int ELEMS = 32, BYTES = 22;
    MTPDEC_HD static void eight(const uint8_t* b, int, int l0, float w[8]) {
        const float d = load_half(b);
        const int fifths = b[2 + l0 / 8];  // bits l0..l0+7 of the little-endian qh
        for (int j = 0; j < 8; ++j) {
            const int l = l0 + j;
            const int low = l < 16 ? b[6 + l] & 15 : b[6 + l - 16] >> 4;
            w[j] = d * exact_float((low | ((fifths >> j) & 1) << 4) - 16);
        }
    }
};

template <bool FIFTH>
struct QK4or5Block {  // Q4_K (FIFTH false) and Q5_K (true)
    static constexpr int ELEMS = 256, BYTES = FIFTH ? 176 : 144;
    MTPDEC_HD static void eight(const uint8_t* b, int s, int l0, float w[8]) {
        const float d = load_half(b), dmin = load_half(b + 2);
        int sc, m;
        scale_min_k4(b + 4, s, &sc, &m);
        const float dl = d * (float)sc, ml = dmin * (float)m;
        const uint8_t* qs = b + (FIFTH ? 48 : 16) + 32 * (s / 2) + l0;
        for (int j = 0; j < 8; ++j) {
            int q = (qs[j] >> (4 * (s % 2))) & 15;
            if (FIFTH) q |= ((b[16 + l0 + j] >> s) & 1) << 4;
            w[j] = dl * exact_float(q) - ml;
        }
    }
};
typedef QK4or5Block<false> Q4_KBlock;
typedef QK4or5Block<true> Q5_KBlock;

struct Q6_KBlock {
    static constexpr int ELEMS = 256, BYTES = 210;
    MTPDEC_HD static void eight(const uint8_t* b, int s, int l0, float w[8]) {
        const int half = s / 4, g = s % 4;
        const uint8_t* ql = b + 64 * half + 32 * (g % 2) + l0;
        const uint8_t* qh = b + 128 + 32 * half + l0;
        // one scale per 16 weights: l0..l0+7 share scale l0 / 16 of the sub-block
        const float scale = (float)((const int8_t*)(b + 192))[8 * half + l0 / 16 + 2 * g];
        const float ds = load_half(b + 208) * scale;
        for (int j = 0; j < 8; ++j) {
            const int q = ((ql[j] >> (4 * (g / 2))) & 15) | ((qh[j] >> (2 * g)) & 3) << 4;
            w[j] = ds * exact_float(q - 32);
        }
    }
};

// the 32 weights of sub-block s of one block
template <class B>
MTPDEC_HD void decode_sub(const uint8_t* block, int s, float w[32]) {
    for (int l0 = 0; l0 < 32; l0 += 8) B::eight(block, s, l0, w + l0);
}

}  // namespace mtpdec
