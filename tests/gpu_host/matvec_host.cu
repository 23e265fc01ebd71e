// Runs the GPU matvec's per-lane arithmetic and warp sum on the CPU (no GPU needed), so
// that tests can check kernels/matvec.cu without a device.
//
//   matvec_host dequant FORMAT ROWS ROW_BYTES W_FILE OUT_FILE
//       OUT = float32 (ROWS, cols): every weight through FORMAT's sub-block decoder
//   matvec_host matvec FORMAT N ROWS ROW_BYTES W_FILE X_FILE OUT_FILE
//       OUT = float32 (N, ROWS): out[i, row] as the kernel computes it (32 lanes, then
//       the xor butterfly), X float32 (N, cols)
// FORMAT: F32 F16 Q8_0 Q5_0 Q4_K Q5_K Q6_K. Exit 2 with a message on bad arguments.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "matvec.cu"

using namespace mtpdec;

static std::vector<char> read_file(const char* path) {
    std::vector<char> data;
    FILE* f = std::fopen(path, "rb");
    if (!f) { std::fprintf(stderr, "cannot open %s\n", path); std::exit(2); }
    char buf[1 << 16];
    size_t got;
    while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) data.insert(data.end(), buf, buf + got);
    std::fclose(f);
    return data;
}

static void write_file(const char* path, const std::vector<float>& v) {
    FILE* f = std::fopen(path, "wb");
    if (!f || std::fwrite(v.data(), sizeof(float), v.size(), f) != v.size()) std::exit(2);
    std::fclose(f);
}

template <class B>
static void dequant(int rows, int row_bytes, const uint8_t* w, const char* out_path) {
    int nblocks = row_bytes / B::BYTES;
    std::vector<float> out((size_t)rows * nblocks * B::ELEMS);
    for (int r = 0; r < rows; ++r)
        for (int b = 0; b < nblocks; ++b)
            for (int s = 0; s < B::ELEMS / 32; ++s)
                B::sub(w + (size_t)r * row_bytes + (size_t)b * B::BYTES, s,
                       &out[((size_t)r * nblocks + b) * B::ELEMS + 32 * s]);
    write_file(out_path, out);
}

template <class B, int N>
static void matvec_rows(int rows, int row_bytes, const uint8_t* w, const float* x, float* out) {
    int nblocks = row_bytes / B::BYTES, cols = nblocks * B::ELEMS;
    for (int r = 0; r < rows; ++r) {
        float lanes[N][WARP];
        for (int lane = 0; lane < WARP; ++lane) {
            float acc[N];
            lane_partials<B, N>(w + (size_t)r * row_bytes, nblocks, x, cols, lane, acc);
            for (int i = 0; i < N; ++i) lanes[i][lane] = acc[i];
        }
        for (int i = 0; i < N; ++i) {
            butterfly(lanes[i]);
            out[(size_t)i * rows + r] = lanes[i][0];
        }
    }
}

template <class B>
static void matvec(int n, int rows, int row_bytes, const uint8_t* w, const float* x, float* out) {
    switch (n) {
        case 1: matvec_rows<B, 1>(rows, row_bytes, w, x, out); break;
        case 2: matvec_rows<B, 2>(rows, row_bytes, w, x, out); break;
        case 3: matvec_rows<B, 3>(rows, row_bytes, w, x, out); break;
        case 4: matvec_rows<B, 4>(rows, row_bytes, w, x, out); break;
        case 5: matvec_rows<B, 5>(rows, row_bytes, w, x, out); break;
        case 6: matvec_rows<B, 6>(rows, row_bytes, w, x, out); break;
        case 7: matvec_rows<B, 7>(rows, row_bytes, w, x, out); break;
        case 8: matvec_rows<B, 8>(rows, row_bytes, w, x, out); break;
        default: std::fprintf(stderr, "N must be 1..8, got %d\n", n); std::exit(2);
    }
}

template <class B>
static int run(char** argv, bool is_matvec) {
    if (!is_matvec) {
        int rows = std::atoi(argv[3]), row_bytes = std::atoi(argv[4]);
        std::vector<char> w = read_file(argv[5]);
        dequant<B>(rows, row_bytes, (const uint8_t*)w.data(), argv[6]);
        return 0;
    }
    int n = std::atoi(argv[3]), rows = std::atoi(argv[4]), row_bytes = std::atoi(argv[5]);
    std::vector<char> w = read_file(argv[6]), x = read_file(argv[7]);
    std::vector<float> out((size_t)n * rows);
    matvec<B>(n, rows, row_bytes, (const uint8_t*)w.data(), (const float*)x.data(), out.data());
    write_file(argv[8], out);
    return 0;
}

int main(int argc, char** argv) {
    bool is_matvec = argc == 9 && !std::strcmp(argv[1], "matvec");
    if (!is_matvec && !(argc == 7 && !std::strcmp(argv[1], "dequant"))) {
        std::fprintf(stderr, "usage: see the header of matvec_host.cu\n");
        return 2;
    }
    const char* f = argv[2];
    if (!std::strcmp(f, "F32")) return run<F32Block>(argv, is_matvec);
    if (!std::strcmp(f, "F16")) return run<F16Block>(argv, is_matvec);
    if (!std::strcmp(f, "Q8_0")) return run<Q8_0Block>(argv, is_matvec);
    if (!std::strcmp(f, "Q5_0")) return run<Q5_0Block>(argv, is_matvec);
    if (!std::strcmp(f, "Q4_K")) return run<Q4_KBlock>(argv, is_matvec);
    if (!std::strcmp(f, "Q5_K")) return run<Q5_KBlock>(argv, is_matvec);
    if (!std::strcmp(f, "Q6_K")) return run<Q6_KBlock>(argv, is_matvec);
    std::fprintf(stderr, "unknown format %s\n", f);
    return 2;
}
