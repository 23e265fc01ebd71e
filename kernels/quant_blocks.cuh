// Block decoders of the GGUF weight formats, for the GPU kernels and their host checks.
//
// Each format is a struct with ELEMS (weights per block), BYTES (bytes per block) and
//   static void sub(const uint8_t* block, int s, float w[32])
// writing the 32 weights s*32 .. s*32+31 of one block (s < ELEMS / 32), in element
// order, with the same float operations as gguf-py's numpy dequantizers (so the same
// bits): value = (d * scale) * q - (dmin * min) for the K formats. Every function is
// __host__ __device__ and contraction-free (compile with --fmad=false on the device and
// -ffp-contract=off on the host), so host and device decode bit for bit alike.
#pragma once
#include "common.cuh"

namespace mtpdec {

// IEEE half -> float by bits (no intrinsics, so the host compiles it too)
MTPDEC_HD float half_to_float(uint16_t h) {
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

struct F32Block {
    static constexpr int ELEMS = 32, BYTES = 128;
    MTPDEC_HD static void sub(const uint8_t* b, int, float w[32]) {
        for (int j = 0; j < 32; ++j) {
            union { uint32_t u; float f; } v;
            v.u = (uint32_t)b[4 * j] | (uint32_t)b[4 * j + 1] << 8 |
                  (uint32_t)b[4 * j + 2] << 16 | (uint32_t)b[4 * j + 3] << 24;
            w[j] = v.f;
        }
    }
};

struct F16Block {
    static constexpr int ELEMS = 32, BYTES = 64;
    MTPDEC_HD static void sub(const uint8_t* b, int, float w[32]) {
        for (int j = 0; j < 32; ++j) w[j] = load_half(b + 2 * j);
    }
};

struct Q8_0Block {
    static constexpr int ELEMS = 32, BYTES = 34;
    MTPDEC_HD static void sub(const uint8_t* b, int, float w[32]) {
        float d = load_half(b);
        for (int j = 0; j < 32; ++j) w[j] = d * (float)(int8_t)b[2 + j];
    }
};

struct Q5_0Block {
    static constexpr int ELEMS = 32, BYTES = 22;
    MTPDEC_HD static void sub(const uint8_t* b, int, float w[32]) {
        float d = load_half(b);
        uint32_t qh = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 |
                      (uint32_t)b[5] << 24;
        const uint8_t* qs = b + 6;
        for (int j = 0; j < 16; ++j) {
            int lo = (qs[j] & 15) | ((qh >> j) & 1) << 4;
            int hi = (qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
            w[j] = d * (float)(lo - 16);
            w[j + 16] = d * (float)(hi - 16);
        }
    }
};

template <bool FIFTH>
struct QK4or5Block {  // Q4_K (FIFTH false) and Q5_K (true)
    static constexpr int ELEMS = 256, BYTES = FIFTH ? 176 : 144;
    MTPDEC_HD static void sub(const uint8_t* b, int s, float w[32]) {
        float d = load_half(b), dmin = load_half(b + 2);
        int sc, m;
        scale_min_k4(b + 4, s, &sc, &m);
        float dl = d * (float)sc, ml = dmin * (float)m;
        const uint8_t* qh = b + 16;
        const uint8_t* qs = b + (FIFTH ? 48 : 16) + 32 * (s / 2);
        int shift = 4 * (s % 2);
        for (int l = 0; l < 32; ++l) {
            int q = (qs[l] >> shift) & 15;
            if (FIFTH) q |= ((qh[l] >> s) & 1) << 4;
            w[l] = dl * (float)q - ml;
        }
    }
};
typedef QK4or5Block<false> Q4_KBlock;
typedef QK4or5Block<true> Q5_KBlock;

struct Q6_KBlock {
    static constexpr int ELEMS = 256, BYTES = 210;
    MTPDEC_HD static void sub(const uint8_t* b, int s, float w[32]) {
        int half = s / 4, g = s % 4;
        const uint8_t* ql = b + 64 * half + 32 * (g % 2);
        const uint8_t* qh = b + 128 + 32 * half;
        const int8_t* scales = (const int8_t*)(b + 192) + 8 * half;
        float d = load_half(b + 208);
        int lshift = 4 * (g / 2), hshift = 2 * g;
        for (int l = 0; l < 32; ++l) {
            int q = ((ql[l] >> lshift) & 15) | ((qh[l] >> hshift) & 3) << 4;
            w[l] = (d * (float)scales[l / 16 + 2 * g]) * (float)(q - 32);
        }
    }
};

}  // namespace mtpdec
