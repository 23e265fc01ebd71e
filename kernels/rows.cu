// Row-wise ops of the forward pass (mtpdec/cpu/ops.py is the reference), one warp per row;
// lane L takes the elements L, L + 32, ... of its row.
//
// rmsnorm:  out = (x * (1 / sqrt(mean(x^2) + eps))) * w   (sum of squares in double)
// l2norm:   out = x * (1 / max(sqrt(sum(x^2)), eps))
//   x, out: float32 (rows, d); w: float32 (d,)
// argmax:   out[r] = the lowest index of the largest value of row r (the verify epilogue:
//           a greedy verify needs k token ids, not k rows of logits); x float32 (rows, d),
//           out int32 (rows,). NaN is never larger.
// rope_neox: rotate the first 2 * half dims of each head, dim i with dim i + half:
//           (x0 cos - x1 sin, x0 sin + x1 cos), the rest copied; x, out: float32
//           (n, heads, hd); cos, sin: float32 (n, half). One thread per (t, head, dim).
// silu_mul / sigmoid_mul: out = silu(x) * m, sigmoid(x) * m elementwise (SwiGLU, gates),
//           as x / (1 + exp(min(-x, 88))) and 1 / (1 + exp(min(-x, 88))).
#include "common.cuh"

namespace mtpdec {

MTPDEC_HD double lane_sum_squares(const float* x, int d, int lane) {
    double acc = 0.0;
    for (int i = lane; i < d; i += WARP) {
        double v = (double)x[i];
        acc = acc + v * v;
    }
    return acc;
}

MTPDEC_HD float rms_scale(double total, int d, float eps) {
    float mean = (float)(total / d);
    return 1.0f / sqrtf(mean + eps);
}

MTPDEC_HD float l2_scale(double total, float eps) {
    float norm = (float)sqrt(total);
    return 1.0f / (norm > eps ? norm : eps);
}

// the better of two (value, index) candidates: larger value, then lower index
MTPDEC_HD void argmax_merge(float* best, int* at, float v, int i) {
    if (v > *best || (v == *best && i < *at)) {
        *best = v;
        *at = i;
    }
}

MTPDEC_HD float negative_infinity() {
    union { uint32_t u; float f; } v;
    v.u = 0xff800000u;
    return v.f;
}

MTPDEC_HD void lane_argmax(const float* x, int d, int lane, float* best, int* at) {
    *best = negative_infinity();
    *at = d;  // no candidate yet (all NaN or -inf rows end at the first -inf or 0)
    for (int i = lane; i < d; i += WARP) argmax_merge(best, at, x[i], i);
}

MTPDEC_HD void rope_pair(float x0, float x1, float c, float s, float* o0, float* o1) {
    float a = x0 * c, b = x1 * s, e = x0 * s, f = x1 * c;
    *o0 = a - b;
    *o1 = e + f;
}

MTPDEC_HD float one_plus_exp_neg(float x) {
    float t = -x < 88.0f ? -x : 88.0f;
    return 1.0f + expf(t);
}

// tanh-form GELU as x / (1 + exp(-2u)), 2u = 2 sqrt(2/pi) x (1 + 0.044715 x^2), in the
// operation order of mtpdec.cpu.ops.gelu (Gemma's FFN)
MTPDEC_HD float gelu_of(float x) {
    const float two_u = 1.5957691216057308f * x * (1.0f + 0.044715f * x * x);
    return x / one_plus_exp_neg(two_u);
}

#ifdef __CUDACC__
__device__ __forceinline__ double warp_sum_double(double v) {
    for (int off = WARP / 2; off > 0; off /= 2) v = v + __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

extern "C" __global__ void rmsnorm(const float* __restrict__ x, const float* __restrict__ w,
                                   float eps, float* __restrict__ out, int rows, int d) {
    const int row = (blockIdx.x * blockDim.x + threadIdx.x) / WARP;
    const int lane = threadIdx.x % WARP;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * d;
    float scale = rms_scale(warp_sum_double(lane_sum_squares(xr, d, lane)), d, eps);
    for (int i = lane; i < d; i += WARP) out[(size_t)row * d + i] = (xr[i] * scale) * w[i];
}

extern "C" __global__ void l2norm(const float* __restrict__ x, float eps, float* __restrict__ out,
                                  int rows, int d) {
    const int row = (blockIdx.x * blockDim.x + threadIdx.x) / WARP;
    const int lane = threadIdx.x % WARP;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * d;
    float scale = l2_scale(warp_sum_double(lane_sum_squares(xr, d, lane)), eps);
    for (int i = lane; i < d; i += WARP) out[(size_t)row * d + i] = xr[i] * scale;
}

extern "C" __global__ void argmax(const float* __restrict__ x, int* __restrict__ out, int rows,
                                  int d) {
    const int row = (blockIdx.x * blockDim.x + threadIdx.x) / WARP;
    const int lane = threadIdx.x % WARP;
    if (row >= rows) return;
    float best;
    int at;
    lane_argmax(x + (size_t)row * d, d, lane, &best, &at);
    for (int off = WARP / 2; off > 0; off /= 2) {
        float v = __shfl_xor_sync(0xffffffffu, best, off);
        int i = __shfl_xor_sync(0xffffffffu, at, off);
        argmax_merge(&best, &at, v, i);
    }
    if (lane == 0) out[row] = at < d ? at : 0;
}
extern "C" __global__ void rope_neox(const float* __restrict__ x, const float* __restrict__ cos_t,
                                     const float* __restrict__ sin_t, float* __restrict__ out,
                                     int n, int heads, int hd, int half) {
    const size_t at = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (at >= (size_t)n * heads * hd) return;
    const int i = at % hd, t = at / ((size_t)heads * hd);
    const size_t base = at - i;
    if (i < half) {
        float o0, o1;
        rope_pair(x[base + i], x[base + i + half], cos_t[(size_t)t * half + i],
                  sin_t[(size_t)t * half + i], &o0, &o1);
        out[base + i] = o0;
        out[base + i + half] = o1;
    } else if (i >= 2 * half) {
        out[at] = x[at];
    }
}

extern "C" __global__ void silu_mul(const float* __restrict__ x, const float* __restrict__ m,
                                    float* __restrict__ out, long long count) {
    const long long at = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (at < count) out[at] = (x[at] / one_plus_exp_neg(x[at])) * m[at];
}

extern "C" __global__ void gelu_mul(const float* __restrict__ x, const float* __restrict__ m,
                                    float* __restrict__ out, long long count) {
    const long long at = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (at < count) out[at] = gelu_of(x[at]) * m[at];
}

extern "C" __global__ void sigmoid_mul(const float* __restrict__ x, const float* __restrict__ m,
                                       float* __restrict__ out, long long count) {
    const long long at = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (at < count) out[at] = (1.0f / one_plus_exp_neg(x[at])) * m[at];
}
#endif

}  // namespace mtpdec
