// Weight-stationary dequant matvec with exact float32 activations:
//   out[i, row] = sum_k dequant(W)[row, k] * x[i, k]   for i < N inputs (N = 1..8).
//
// One warp per output row. The row's weights go in 32-weight units (unit u: sub-block
// u % SUBS of block u / SUBS); lane L decodes weight L of each unit once
// (quant_blocks.cuh) and folds it into all N inputs' accumulators, so every weight byte
// is read once for the N inputs, and a warp reads neighbouring weight bytes and
// activations (coalesced). Each
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

template <class B, int N>
MTPDEC_HD void lane_partials(const uint8_t* row, int nblocks, const float* x, int cols, int lane,
                             float acc[N]) {
    // lane L takes weight L of every 32-weight unit (block u / SUBS, sub-block u % SUBS),
    // so a warp's weight bytes and activations at one time are neighbours in memory
    constexpr int SUBS = B::ELEMS / 32;
    for (int i = 0; i < N; ++i) acc[i] = 0.0f;
    for (int u = 0; u < nblocks * SUBS; ++u) {
        const float w = B::one(row + (size_t)(u / SUBS) * B::BYTES, u % SUBS, lane);
        for (int i = 0; i < N; ++i) acc[i] = fmaf(w, x[(size_t)i * cols + 32 * u + lane], acc[i]);
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
