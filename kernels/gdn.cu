// Gated-DeltaNet recurrences for k tokens (qwen35.md; mtpdec/cpu/gdn.py is the reference).
//
// delta_rule: one warp per (value head h, state row j) of the transposed state
// M[h, j, :] = S_h[:, j]; lane L holds elements L, L + 32, L + 64, L + 96 (d = 128).
// Per token t, with decay = exp(g[t, h]) computed by the caller (so every backend feeds
// the same bits):
//   row *= decay;  acc = row . k_t;  delta = (v[t, h, j] - acc) * beta[t, h];
//   row += delta * k_t;  out[t, h, j] = (row . q_t) * scale
// Dot products: each lane's 4 products by fmaf in element order, then the xor butterfly
// (every lane ends with the same total). After token t < count the row is written to
// ring[slots[t], h, j, :] in the same pass (fused snapshot capture, no copy pass).
// A token's results and states do not depend on how many tokens the call has.
//   m:     float32 (H_v, D, D) states, updated in place
//   q, k:  float32 (n, H_k, D), l2-normalized; value head h reads key head h % H_k
//   v:     float32 (n, H_v, D); decay, beta: float32 (n, H_v)
//   out:   float32 (n, H_v, D); ring: float32 (P, H_v, D, D); slots: int64 (count,)
// Launch: blockDim.x a multiple of 32, H_v * D warps in all.
//
// conv_silu: out[t, c] = silu(sum_j w[j, c] * seq[t + j, c]) over seq = state ++ x,
// (w0 s0) + w1 s1 + ... in tap order; state (K-1, C) then holds the last K-1 rows of
// seq, ring[t] (t < ring_count) the state after token t. One thread per channel.
#include "common.cuh"

namespace mtpdec {

constexpr int GDN_D = 128, GDN_PER_LANE = GDN_D / WARP;

// one token through lane L's part of a state row; returns this lane's share of row . k
// (phase 1) - the caller sums the lanes, then calls gdn_update
MTPDEC_HD float gdn_decay_dot(float row[GDN_PER_LANE], const float* k, int lane, float decay) {
    float acc = 0.0f;
    for (int c = 0; c < GDN_PER_LANE; ++c) {
        row[c] = row[c] * decay;
        acc = fmaf(row[c], k[lane + WARP * c], acc);
    }
    return acc;
}

// phase 2: the rank-1 update with the row's delta; returns this lane's share of row . q
MTPDEC_HD float gdn_update_dot(float row[GDN_PER_LANE], const float* k, const float* q, int lane,
                               float delta) {
    float o = 0.0f;
    for (int c = 0; c < GDN_PER_LANE; ++c) {
        row[c] = fmaf(delta, k[lane + WARP * c], row[c]);
        o = fmaf(row[c], q[lane + WARP * c], o);
    }
    return o;
}

MTPDEC_HD float gdn_delta(float v, float acc, float beta) { return (v - acc) * beta; }

MTPDEC_HD float silu(float x) {  // x / (1 + exp(-x)), -x capped at 88 as the CPU ops
    float t = -x < 88.0f ? -x : 88.0f;
    return x / (1.0f + expf(t));
}

// the conv of channel c over the n tokens, its ring rows and its state (one thread)
MTPDEC_HD void conv_silu_channel(const float* x, float* state, const float* w, float* out,
                                 float* ring, int ring_count, int n, int channels, int taps,
                                 int c) {
    const int past = taps - 1;
    for (int t = 0; t < n; ++t) {
        float o = 0.0f;
        for (int j = 0; j < taps; ++j) {
            int src = t + j;
            float s = src < past ? state[(size_t)src * channels + c]
                                 : x[(size_t)(src - past) * channels + c];
            float p = w[(size_t)j * channels + c] * s;
            o = j == 0 ? p : o + p;
        }
        out[(size_t)t * channels + c] = silu(o);
    }
    for (int t = 0; t < ring_count && t < n; ++t)
        for (int r = 0; r < past; ++r) {
            int src = t + 1 + r;
            ring[((size_t)t * past + r) * channels + c] =
                src < past ? state[(size_t)src * channels + c]
                           : x[(size_t)(src - past) * channels + c];
        }
    const int keep = n < past ? n : past;
    for (int r = 0; r < past - keep; ++r)
        state[(size_t)r * channels + c] = state[(size_t)(r + keep) * channels + c];
    for (int r = 0; r < keep; ++r)
        state[(size_t)(past - keep + r) * channels + c] = x[(size_t)(n - keep + r) * channels + c];
}

#ifdef __CUDACC__
__device__ __forceinline__ float warp_sum(float v) {
    for (int off = WARP / 2; off > 0; off /= 2) v = v + __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

extern "C" __global__ void delta_rule(float* __restrict__ m, const float* __restrict__ q,
                                      const float* __restrict__ k, const float* __restrict__ v,
                                      const float* __restrict__ decay,
                                      const float* __restrict__ beta, float scale,
                                      float* __restrict__ out, float* __restrict__ ring,
                                      const long long* __restrict__ slots, int count, int n,
                                      int h_k, int h_v) {
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / WARP;
    const int lane = threadIdx.x % WARP;
    if (warp >= h_v * GDN_D) return;
    const int h = warp / GDN_D, j = warp % GDN_D, kh = h % h_k;
    float* mrow = m + ((size_t)h * GDN_D + j) * GDN_D;
    float row[GDN_PER_LANE];
    for (int c = 0; c < GDN_PER_LANE; ++c) row[c] = mrow[lane + WARP * c];
    for (int t = 0; t < n; ++t) {
        const float* kt = k + ((size_t)t * h_k + kh) * GDN_D;
        const float* qt = q + ((size_t)t * h_k + kh) * GDN_D;
        const size_t th = (size_t)t * h_v + h;
        float acc = warp_sum(gdn_decay_dot(row, kt, lane, decay[th]));
        float delta = gdn_delta(v[th * GDN_D + j], acc, beta[th]);
        float o = warp_sum(gdn_update_dot(row, kt, qt, lane, delta));
        if (lane == 0) out[th * GDN_D + j] = o * scale;
        if (t < count) {
            float* dst = ring + (((size_t)slots[t] * h_v + h) * GDN_D + j) * GDN_D;
            for (int c = 0; c < GDN_PER_LANE; ++c) dst[lane + WARP * c] = row[c];
        }
    }
    for (int c = 0; c < GDN_PER_LANE; ++c) mrow[lane + WARP * c] = row[c];
}

extern "C" __global__ void conv_silu(const float* __restrict__ x, float* __restrict__ state,
                                     const float* __restrict__ w, float* __restrict__ out,
                                     float* __restrict__ ring, int ring_count, int n,
                                     int channels, int taps) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < channels) conv_silu_channel(x, state, w, out, ring, ring_count, n, channels, taps, c);
}
#endif

}  // namespace mtpdec
