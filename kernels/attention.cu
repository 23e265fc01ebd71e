// Causal softmax attention of n query tokens over a position-indexed KV cache
// (mtpdec/cpu/attention.py is the reference): one warp per (token t, head h), grouped
// query heads (kv head h / (n_head / n_kv)), an optional sliding window.
//   q:      float32 (n, n_head, hd_k);  k_cache: float32 (n_kv, ctx, hd_k)
//   v_cache: float32 (n_kv, ctx, hd_v); positions: int32 (n,); the token at positions[t]
//           attends to cache entries lo..positions[t], lo = max(0, p - window + 1) when
//           window > 0, else 0
//   probs:  float32 scratch (n * n_head, ctx);  out: float32 (n, n_head, hd_v)
// Scores: lane L takes entries lo + L, lo + L + 32, ...: q . k by fmaf in dim order, times
// scale. Softmax: the warp's max, exp(s - max), their sum in double over the xor
// butterfly; weights e * (1 / sum). Output: lane L takes dims L, L + 32, ... and adds
// weight * v over the entries in order. A token's output does not depend on the others.
#include "common.cuh"

namespace mtpdec {

MTPDEC_HD float att_score(const float* q, const float* k, int hd, float scale) {
    float s = 0.0f;
    for (int i = 0; i < hd; ++i) s = fmaf(q[i], k[i], s);
    return s * scale;
}

MTPDEC_HD int att_lo(int p, int window) {
    int lo = p - window + 1;
    return window > 0 && lo > 0 ? lo : 0;
}

// dims lane, lane + 32, ... of the weighted sum over entries 0..count-1 of row (v rows
// at v, stride hd_v), weights probs[j] * inv
MTPDEC_HD void att_accumulate(const float* probs, int count, float inv, const float* v, int hd_v,
                              int lane, float* out) {
    for (int i = lane; i < hd_v; i += WARP) {
        float acc = 0.0f;
        for (int j = 0; j < count; ++j) acc = fmaf(probs[j] * inv, v[(size_t)j * hd_v + i], acc);
        out[i] = acc;
    }
}

#ifdef __CUDACC__
extern "C" __global__ void attend(const float* __restrict__ q, const float* __restrict__ k_cache,
                                  const float* __restrict__ v_cache,
                                  const int* __restrict__ positions, float scale, int window,
                                  float* __restrict__ probs, float* __restrict__ out, int n,
                                  int n_head, int n_kv, int ctx, int hd_k, int hd_v) {
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / WARP;
    const int lane = threadIdx.x % WARP;
    if (warp >= n * n_head) return;
    const int t = warp / n_head, h = warp % n_head, g = h / (n_head / n_kv);
    const int p = positions[t], lo = att_lo(p, window), count = p + 1 - lo;
    const float* qv = q + ((size_t)t * n_head + h) * hd_k;
    const float* kg = k_cache + ((size_t)g * ctx + lo) * hd_k;
    float* row = probs + (size_t)warp * ctx;
    float top = -__int_as_float(0x7f800000);
    for (int j = lane; j < count; j += WARP) {
        float s = att_score(qv, kg + (size_t)j * hd_k, hd_k, scale);
        row[j] = s;
        top = fmaxf(top, s);
    }
    for (int off = WARP / 2; off > 0; off /= 2)
        top = fmaxf(top, __shfl_xor_sync(0xffffffffu, top, off));
    double total = 0.0;
    for (int j = lane; j < count; j += WARP) {
        float e = expf(row[j] - top);
        row[j] = e;
        total = total + (double)e;
    }
    for (int off = WARP / 2; off > 0; off /= 2)
        total = total + __shfl_xor_sync(0xffffffffu, total, off);
    __syncwarp();
    const float inv = (float)(1.0 / total);
    att_accumulate(row, count, inv, v_cache + ((size_t)g * ctx + lo) * hd_v, hd_v, lane,
                   out + ((size_t)t * n_head + h) * hd_v);
}
#endif

}  // namespace mtpdec
