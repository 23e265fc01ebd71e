// Block decoders of the GGUF weight formats, for the GPU kernels and their host checks.
//
// Each format is a struct with ELEMS (weights per block), BYTES (bytes per block) and
//   static float one(const uint8_t* block, int s, int l)
// giving weight s*32 + l of one block (s < ELEMS / 32, l < 32), with the same float
// operations as gguf-py's numpy dequantizers (so the same
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
    MTPDEC_HD static float one(const uint8_t* b, int, int l) {
        union { uint32_t u; float f; } v;
        v.u = (uint32_t)b[4 * l] | (uint32_t)b[4 * l + 1] << 8 | (uint32_t)b[4 * l + 2] << 16 |
              (uint32_t)b[4 * l + 3] << 24;
        return v.f;
    }
};

struct F16Block {
    static constexpr int ELEMS = 32, BYTES = 64;
    MTPDEC_HD static float one(const uint8_t* b, int, int l) { return load_half(b + 2 * l); }
};

struct Q8_0Block {
    static constexpr int ELEMS = 32, BYTES = 34;
    MTPDEC_HD static float one(const uint8_t* b, int, int l) {
        return load_half(b) * (float)(int8_t)b[2 + l];
    }
};

struct Q5_0Block {
    static constexpr int ELEMS = 32, BYTES = 22;
    MTPDEC_HD static float one(const uint8_t* b, int, int l) {
        int fifth = (b[2 + l / 8] >> (l % 8)) & 1;  // bit l of the little-endian qh
        int low = l < 16 ? b[6 + l] & 15 : b[6 + l - 16] >> 4;
        return load_half(b) * (float)((low | fifth << 4) - 16);
    }
};

template <bool FIFTH>
struct QK4or5Block {  // Q4_K (FIFTH false) and Q5_K (true)
    static constexpr int ELEMS = 256, BYTES = FIFTH ? 176 : 144;
    MTPDEC_HD static float one(const uint8_t* b, int s, int l) {
        float d = load_half(b), dmin = load_half(b + 2);
        int sc, m;
        scale_min_k4(b + 4, s, &sc, &m);
        float dl = d * (float)sc, ml = dmin * (float)m;
        const uint8_t* qs = b + (FIFTH ? 48 : 16) + 32 * (s / 2);
        int q = (qs[l] >> (4 * (s % 2))) & 15;
        if (FIFTH) q |= ((b[16 + l] >> s) & 1) << 4;
        return dl * (float)q - ml;
    }
};
typedef QK4or5Block<false> Q4_KBlock;
typedef QK4or5Block<true> Q5_KBlock;

struct Q6_KBlock {
    static constexpr int ELEMS = 256, BYTES = 210;
    MTPDEC_HD static float one(const uint8_t* b, int s, int l) {
        int half = s / 4, g = s % 4;
        int ql = b[64 * half + 32 * (g % 2) + l], qh = b[128 + 32 * half + l];
        int q = ((ql >> (4 * (g / 2))) & 15) | ((qh >> (2 * g)) & 3) << 4;
        float scale = (float)((const int8_t*)(b + 192))[8 * half + l / 16 + 2 * g];
        return (load_half(b + 208) * scale) * (float)(q - 32);
    }
};

// the 32 weights of sub-block s of one block
template <class B>
MTPDEC_HD void decode_sub(const uint8_t* block, int s, float w[32]) {
    for (int l = 0; l < 32; ++l) w[l] = B::one(block, s, l);
}

}  // namespace mtpdec
