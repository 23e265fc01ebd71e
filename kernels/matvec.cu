// Weight-stationary dequant matvec with exact float32 activations:
//   out[i, row] = sum_k dequant(W)[row, k] * x[i, k]   for i < N inputs (N = 1..8).
//
// One warp per output row. The row's weights go in 32-weight units (unit u: sub-block
// u % SUBS of block u / SUBS); a lane decodes eight neighbouring weights of a unit at a
// time (quant_blocks.cuh: the block header once for the eight) and folds them into all N
// inputs' accumulators, so every weight byte is read once for the N inputs, and a warp
// reads neighbouring weight bytes and activations (coalesced). Each
// input's accumulator sees the same fmaf sequence whatever N is, and the 32 lanes are
// summed by the same xor-butterfly, so out[i, row] is bitwise independent of N (the CPU
// kernels' contract). ``lane_partials`` and ``butterfly`` are __host__ __device__ so that
// the tests run this exact arithmetic on the CPU (tests/gpu_host/).
//
// Kernel names for CuPy's RawModule name_expressions: "mtpdec::matvec<mtpdec::Q4_KBlock, 4>".
//   w:   uint8 (rows, row_bytes) weight blocks, C-contiguous
//   x:   float32 (N, cols) inputs, C-contiguous; cols = row_bytes / BYTES * ELEMS
//   out: float32 (N, rows)
// Launch: blockDim.x a multiple of 32; gridDim.x = ceil(rows / (blockDim.x / 32)).
#include "quant_blocks.cuh"

namespace mtpdec {

// eight consecutive activations x[at .. at+7] (at a multiple of 8): two 16-byte loads on
// the device, the same values on the host
MTPDEC_HD void load8(const float* x, float v[8]) {
#ifdef __CUDA_ARCH__
    const float4 a = reinterpret_cast<const float4*>(x)[0], b = reinterpret_cast<const float4*>(x)[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
#else
    for (int j = 0; j < 8; ++j) v[j] = x[j];
#endif
}

template <class B, int N>
MTPDEC_HD void lane_partials(const uint8_t* row, int nblocks, const float* x, int cols, int lane,
                             float acc[N]) {
    // the row's weights in 32-weight units (block u / SUBS, sub-block u % SUBS); in each
    // step the warp takes 8 units, lane L weights 8 (L % 4) .. +7 of unit 8 t + L / 4:
    // the unit's header and scale decoded once for its eight weights, neighbouring lanes
    // on neighbouring bytes and activations
    constexpr int SUBS = B::ELEMS / 32;
    const int units = nblocks * SUBS, l0 = 8 * (lane % 4);
    for (int i = 0; i < N; ++i) acc[i] = 0.0f;
    for (int u = lane / 4; u < units; u += 8) {
        float w[8];
        B::eight(row + (size_t)(u / SUBS) * B::BYTES, u % SUBS, l0, w);
        for (int i = 0; i < N; ++i) {
            float xv[8];
            load8(x + (size_t)i * cols + 32 * (size_t)u + l0, xv);
            for (int j = 0; j < 8; ++j) acc[i] = fmaf(w[j], xv[j], acc[i]);
        }
    }
}

#ifdef __CUDACC__
template <class B, int N>
__global__ void matvec(const uint8_t* __restrict__ w, int rows, int row_bytes,
                       const float* __restrict__ x, float* __restrict__ out) {
    const int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    const int lane = threadIdx.x % WARP;
    if (row >= rows) return;
    const int nblocks = row_bytes / B::BYTES, cols = nblocks * B::ELEMS;
    float acc[N];
    lane_partials<B, N>(w + (size_t)row * row_bytes, nblocks, x, cols, lane, acc);
    for (int i = 0; i < N; ++i) {
        float v = acc[i];
        for (int off = WARP / 2; off > 0; off /= 2) v = v + __shfl_xor_sync(0xffffffffu, v, off);
        if (lane == 0) out[(size_t)i * rows + row] = v;
    }
}
#endif

}  // namespace mtpdec
