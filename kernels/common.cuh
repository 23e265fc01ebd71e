// What every kernel source shares: fixed-width types (NVRTC, CuPy's compiler, has no C
// library headers), the host-and-device qualifier, the warp width and the warp sum that
// __shfl_xor_sync computes, written for the host so that tests can replay it.
#pragma once
#ifdef __CUDACC_RTC__
typedef unsigned char uint8_t;
typedef signed char int8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
#else
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#endif

#ifdef __CUDACC__
#define MTPDEC_HD __host__ __device__ __forceinline__
#else
#define MTPDEC_HD inline
#endif

namespace mtpdec {

constexpr int WARP = 32;

// lane values v[0..31] summed in place as the xor butterfly does (each step adds the
// partner lane's value); every lane ends with the same total
template <class T>
MTPDEC_HD void butterfly(T v[WARP]) {
    for (int off = WARP / 2; off > 0; off /= 2) {
        T next[WARP];
        for (int l = 0; l < WARP; ++l) next[l] = v[l] + v[l ^ off];
        for (int l = 0; l < WARP; ++l) v[l] = next[l];
    }
}

}  // namespace mtpdec
