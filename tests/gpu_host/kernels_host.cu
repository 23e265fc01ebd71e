// Runs the GPU kernels' per-thread arithmetic and warp sums on the CPU (no GPU needed),
// so that tests can check kernels/*.cu without a device.
//
//   matvec_host dequant FORMAT ROWS ROW_BYTES W_FILE OUT_FILE
//       OUT = float32 (ROWS, cols): every weight through FORMAT's sub-block decoder
//   matvec_host matvec FORMAT N ROWS ROW_BYTES W_FILE X_FILE OUT_FILE
//       OUT = float32 (N, ROWS): out[i, row] as the kernel computes it (32 lanes, then
//       the xor butterfly), X float32 (N, cols)
// FORMAT: F32 F16 Q8_0 Q5_0 Q4_K Q5_K Q6_K.
//   kernels_host delta_rule DIR N H_K H_V COUNT P
//       DIR holds m q k v decay beta (float32) and slots (int64, COUNT) as .bin files
//       (shapes as in kernels/gdn.cu, D = 128); writes DIR/out.bin, DIR/m_out.bin and
//       DIR/ring.bin (P slots, zero where not written): the delta_rule kernel's warps,
//       lane by lane, with the butterfly sums
//   kernels_host conv_silu DIR N CHANNELS TAPS RING_COUNT
//       DIR holds x state w; writes DIR/out.bin, DIR/state_out.bin, DIR/ring.bin
//   kernels_host rows OP DIR ROWS D EPS      (OP: rmsnorm, l2norm, argmax)
//       DIR holds x (and w for rmsnorm); writes DIR/out.bin (float32, int32 for argmax)
//   kernels_host attend DIR N N_HEAD N_KV CTX HD_K HD_V WINDOW SCALE
//       DIR holds q k_cache v_cache (float32) and positions (int32); writes DIR/out.bin
//   kernels_host rope DIR N HEADS HD HALF    DIR holds x cos sin; writes DIR/out.bin
//   kernels_host gate OP DIR COUNT  (OP: silu_mul, sigmoid_mul, gelu_mul) DIR holds x m
// Exit 2 with a message on bad arguments.
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "attention.cu"
#include "gdn.cu"
#include "rows.cu"
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

template <class T>
static void write_file(const char* path, const std::vector<T>& v) {
    FILE* f = std::fopen(path, "wb");
    if (!f || std::fwrite(v.data(), sizeof(T), v.size(), f) != v.size()) std::exit(2);
    std::fclose(f);
}

template <class B>
static void dequant(int rows, int row_bytes, const uint8_t* w, const char* out_path) {
    int nblocks = row_bytes / B::BYTES;
    std::vector<float> out((size_t)rows * nblocks * B::ELEMS);
    for (int r = 0; r < rows; ++r)
        for (int b = 0; b < nblocks; ++b)
            for (int s = 0; s < B::ELEMS / 32; ++s)
                decode_sub<B>(w + (size_t)r * row_bytes + (size_t)b * B::BYTES, s,
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

static std::string at(const char* dir, const char* name) {
    return std::string(dir) + "/" + name + ".bin";
}

static std::vector<float> floats(const char* dir, const char* name, size_t count) {
    std::vector<char> raw = read_file(at(dir, name).c_str());
    if (raw.size() != count * sizeof(float)) {
        std::fprintf(stderr, "%s: %zu bytes, expected %zu\n", name, raw.size(), count * 4);
        std::exit(2);
    }
    std::vector<float> v(count);
    std::memcpy(v.data(), raw.data(), raw.size());
    return v;
}

static int delta_rule_host(char** argv) {
    const char* dir = argv[2];
    int n = std::atoi(argv[3]), h_k = std::atoi(argv[4]), h_v = std::atoi(argv[5]);
    int count = std::atoi(argv[6]), pool = std::atoi(argv[7]);
    const int d = GDN_D;
    std::vector<float> m = floats(dir, "m", (size_t)h_v * d * d);
    std::vector<float> q = floats(dir, "q", (size_t)n * h_k * d), k = floats(dir, "k", q.size());
    std::vector<float> v = floats(dir, "v", (size_t)n * h_v * d);
    std::vector<float> decay = floats(dir, "decay", (size_t)n * h_v), beta = floats(dir, "beta", decay.size());
    std::vector<char> slot_raw = read_file(at(dir, "slots").c_str());
    const long long* slots = (const long long*)slot_raw.data();
    std::vector<float> out((size_t)n * h_v * d), ring((size_t)pool * h_v * d * d, 0.0f);
    const float scale = 1.0f / sqrtf((float)d);
    for (int h = 0; h < h_v; ++h) {
        int kh = h % h_k;
        for (int j = 0; j < d; ++j) {
            float* mrow = &m[((size_t)h * d + j) * d];
            float rows[WARP][GDN_PER_LANE];
            for (int lane = 0; lane < WARP; ++lane)
                for (int c = 0; c < GDN_PER_LANE; ++c) rows[lane][c] = mrow[lane + WARP * c];
            for (int t = 0; t < n; ++t) {
                const float* kt = &k[((size_t)t * h_k + kh) * d];
                const float* qt = &q[((size_t)t * h_k + kh) * d];
                size_t th = (size_t)t * h_v + h;
                float part[WARP];
                for (int lane = 0; lane < WARP; ++lane)
                    part[lane] = gdn_decay_dot(rows[lane], kt, lane, decay[th]);
                butterfly(part);
                float delta = gdn_delta(v[th * d + j], part[0], beta[th]);
                for (int lane = 0; lane < WARP; ++lane)
                    part[lane] = gdn_update_dot(rows[lane], kt, qt, lane, delta);
                butterfly(part);
                out[th * d + j] = part[0] * scale;
                if (t < count)
                    for (int lane = 0; lane < WARP; ++lane)
                        for (int c = 0; c < GDN_PER_LANE; ++c)
                            ring[(((size_t)slots[t] * h_v + h) * d + j) * d + lane + WARP * c] =
                                rows[lane][c];
            }
            for (int lane = 0; lane < WARP; ++lane)
                for (int c = 0; c < GDN_PER_LANE; ++c) mrow[lane + WARP * c] = rows[lane][c];
        }
    }
    write_file(at(dir, "out").c_str(), out);
    write_file(at(dir, "m_out").c_str(), m);
    write_file(at(dir, "ring").c_str(), ring);
    return 0;
}

static int conv_silu_host(char** argv) {
    const char* dir = argv[2];
    int n = std::atoi(argv[3]), channels = std::atoi(argv[4]), taps = std::atoi(argv[5]);
    int ring_count = std::atoi(argv[6]);
    std::vector<float> x = floats(dir, "x", (size_t)n * channels);
    std::vector<float> state = floats(dir, "state", (size_t)(taps - 1) * channels);
    std::vector<float> w = floats(dir, "w", (size_t)taps * channels);
    std::vector<float> out(x.size()), ring((size_t)ring_count * (taps - 1) * channels, 0.0f);
    for (int c = 0; c < channels; ++c)
        conv_silu_channel(x.data(), state.data(), w.data(), out.data(), ring.data(), ring_count, n,
                          channels, taps, c);
    write_file(at(dir, "out").c_str(), out);
    write_file(at(dir, "state_out").c_str(), state);
    write_file(at(dir, "ring").c_str(), ring);
    return 0;
}

static int rows_host(char** argv) {
    const char* op = argv[2];
    const char* dir = argv[3];
    int rows = std::atoi(argv[4]), d = std::atoi(argv[5]);
    float eps = (float)std::atof(argv[6]);
    std::vector<float> x = floats(dir, "x", (size_t)rows * d), out(x.size());
    std::vector<float> w = std::strcmp(op, "rmsnorm") ? std::vector<float>() : floats(dir, "w", d);
    std::vector<int> ids(rows);
    for (int r = 0; r < rows; ++r) {
        const float* xr = &x[(size_t)r * d];
        if (!std::strcmp(op, "argmax")) {
            float best[WARP];
            int at[WARP];
            for (int lane = 0; lane < WARP; ++lane) lane_argmax(xr, d, lane, &best[lane], &at[lane]);
            for (int off = WARP / 2; off > 0; off /= 2) {  // the xor butterfly of argmax
                float nb[WARP];
                int na[WARP];
                for (int l = 0; l < WARP; ++l) {
                    nb[l] = best[l];
                    na[l] = at[l];
                    argmax_merge(&nb[l], &na[l], best[l ^ off], at[l ^ off]);
                }
                for (int l = 0; l < WARP; ++l) { best[l] = nb[l]; at[l] = na[l]; }
            }
            ids[r] = at[0] < d ? at[0] : 0;
            continue;
        }
        double part[WARP];
        for (int lane = 0; lane < WARP; ++lane) part[lane] = lane_sum_squares(xr, d, lane);
        butterfly(part);
        bool rms = !std::strcmp(op, "rmsnorm");
        float scale = rms ? rms_scale(part[0], d, eps) : l2_scale(part[0], eps);
        for (int i = 0; i < d; ++i) out[(size_t)r * d + i] = rms ? (xr[i] * scale) * w[i] : xr[i] * scale;
    }
    if (!std::strcmp(op, "argmax"))
        write_file(at(dir, "out").c_str(), ids);
    else
        write_file(at(dir, "out").c_str(), out);
    return 0;
}

static int attend_host(char** argv) {
    const char* dir = argv[2];
    int n = std::atoi(argv[3]), n_head = std::atoi(argv[4]), n_kv = std::atoi(argv[5]);
    int ctx = std::atoi(argv[6]), hd_k = std::atoi(argv[7]), hd_v = std::atoi(argv[8]);
    int window = std::atoi(argv[9]);
    float scale = (float)std::atof(argv[10]);
    std::vector<float> q = floats(dir, "q", (size_t)n * n_head * hd_k);
    std::vector<float> kc = floats(dir, "k_cache", (size_t)n_kv * ctx * hd_k);
    std::vector<float> vc = floats(dir, "v_cache", (size_t)n_kv * ctx * hd_v);
    std::vector<char> pos_raw = read_file(at(dir, "positions").c_str());
    const int* positions = (const int*)pos_raw.data();
    std::vector<float> out((size_t)n * n_head * hd_v), row(ctx);
    for (int t = 0; t < n; ++t)
        for (int h = 0; h < n_head; ++h) {
            int g = h / (n_head / n_kv), p = positions[t], lo = att_lo(p, window), count = p + 1 - lo;
            const float* qv = &q[((size_t)t * n_head + h) * hd_k];
            const float* kg = &kc[((size_t)g * ctx + lo) * hd_k];
            float top = -INFINITY;
            for (int j = 0; j < count; ++j) {
                row[j] = att_score(qv, kg + (size_t)j * hd_k, hd_k, scale);
                top = std::fmax(top, row[j]);
            }
            double lanes[WARP] = {0.0};
            for (int j = 0; j < count; ++j) {
                row[j] = expf(row[j] - top);
                lanes[j % WARP] = lanes[j % WARP] + (double)row[j];
            }
            butterfly(lanes);
            float inv = (float)(1.0 / lanes[0]);
            for (int lane = 0; lane < WARP; ++lane)
                att_accumulate(row.data(), count, inv, &vc[((size_t)g * ctx + lo) * hd_v], hd_v, lane,
                               &out[((size_t)t * n_head + h) * hd_v]);
        }
    write_file(at(dir, "out").c_str(), out);
    return 0;
}

static int rope_host(char** argv) {
    const char* dir = argv[2];
    int n = std::atoi(argv[3]), heads = std::atoi(argv[4]), hd = std::atoi(argv[5]);
    int half = std::atoi(argv[6]);
    std::vector<float> x = floats(dir, "x", (size_t)n * heads * hd), out(x.size());
    std::vector<float> c = floats(dir, "cos", (size_t)n * half), sn = floats(dir, "sin", c.size());
    for (int t = 0; t < n; ++t)
        for (int h = 0; h < heads; ++h) {
            size_t base = ((size_t)t * heads + h) * hd;
            for (int i = 0; i < half; ++i)
                rope_pair(x[base + i], x[base + i + half], c[(size_t)t * half + i],
                          sn[(size_t)t * half + i], &out[base + i], &out[base + i + half]);
            for (int i = 2 * half; i < hd; ++i) out[base + i] = x[base + i];
        }
    write_file(at(dir, "out").c_str(), out);
    return 0;
}

static int gate_host(char** argv) {
    const char* op = argv[2];
    const char* dir = argv[3];
    size_t count = std::strtoull(argv[4], nullptr, 10);
    std::vector<float> x = floats(dir, "x", count), m = floats(dir, "m", count), out(count);
    for (size_t i = 0; i < count; ++i) {
        float g = !std::strcmp(op, "silu_mul")    ? x[i] / one_plus_exp_neg(x[i])
                  : !std::strcmp(op, "gelu_mul")  ? gelu_of(x[i])
                                                  : 1.0f / one_plus_exp_neg(x[i]);
        out[i] = g * m[i];
    }
    write_file(at(dir, "out").c_str(), out);
    return 0;
}

int main(int argc, char** argv) {
    if (argc == 7 && !std::strcmp(argv[1], "rope")) return rope_host(argv);
    if (argc == 5 && !std::strcmp(argv[1], "gate")) return gate_host(argv);
    if (argc == 11 && !std::strcmp(argv[1], "attend")) return attend_host(argv);
    if (argc == 7 && !std::strcmp(argv[1], "rows")) return rows_host(argv);
    if (argc == 8 && !std::strcmp(argv[1], "delta_rule")) return delta_rule_host(argv);
    if (argc == 7 && !std::strcmp(argv[1], "conv_silu")) return conv_silu_host(argv);
    bool is_matvec = argc == 9 && !std::strcmp(argv[1], "matvec");
    if (!is_matvec && !(argc == 7 && !std::strcmp(argv[1], "dequant"))) {
        std::fprintf(stderr, "usage: see the header of kernels_host.cu\n");
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
