// A LLaMA forward over the engine's KV cache in a single C++ call (a decode step: one new token
// for each of B rows; or a prefill: several tokens a row), for anygpt.lm.native_engine.
// Weights: int8, symmetric per output row (the int8 engine's own, anygpt.lm.quantize).
// Activations: int8, symmetric per row, quantized before each product.
// KV cache: bfloat16, the engine's StaticKVCache layout [B, KV, capacity, D] per layer.
//
// Why: at anygpt-tiny's size a torch forward is some 175 operator calls, each paying
// Python and dispatch overhead that dwarfs its arithmetic. Here the whole forward is one call.
//
// Built by anygpt.lm.native_engine with `-O3 -march=native`; the int8 products use AVX-512 VNNI
// where the compiler targets it, and a plain loop the compiler vectorizes elsewhere.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define ANYGPT_VNNI 1
#endif

namespace {

struct Int8Matrix {  // y = x @ W.T for W [out, in] int8 with a scale per output row; layout: see matmul
    const int8_t* w;
    const float* scale;
    const int32_t* rowsum;  // each row's sum, for the unsigned-activation trick of VNNI
    const int64_t* index;   // null, or the output column of each row (a sub-head)
    int32_t out, in;
};

struct Model {
    int32_t layers, hidden, heads, kv_heads, head_dim, inter, vocab;
    float eps, scaling;
    const float *embed, *norm, *ln1, *ln2, *cos, *sin;  // embed [vocab, hidden]; ln [layers, hidden]; cos/sin [positions, D]
    std::vector<Int8Matrix> qkv, o, gate_up, down, groups;
    Int8Matrix head;
    // scratch, sized for the widest step so far
    std::vector<float> x, h, big, attn, scores;
    std::vector<uint8_t> xq;
    std::vector<float> xs;
};

inline float bf16_to_float(uint16_t b) {
    uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline uint16_t float_to_bf16(float f) {  // round to nearest even, as torch's .to(bfloat16)
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
}

// exp(x) for x clamped to [-87, 88]: 2^(x log2 e) split into an integer power and a degree-6
// polynomial (relative error about 2e-7); branch-free, so its loops vectorize.
inline float exp_approx(float x) {
    x = std::max(std::min(x, 88.0f), -87.0f);
    float t = x * 1.44269504088896341f;
    float n = std::nearbyint(t);
    float f = t - n;  // [-0.5, 0.5]
    float p = 1.5353362e-4f;
    p = p * f + 1.3398874e-3f;
    p = p * f + 9.6184197e-3f;
    p = p * f + 5.5503406e-2f;
    p = p * f + 2.4022652e-1f;
    p = p * f + 6.9314718e-1f;
    p = p * f + 1.0f;
    int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, 4);
    return p * scale;
}

void rms_norm(const float* x, const float* w, int rows, int n, float eps, float* y) {
    for (int b = 0; b < rows; ++b) {
        const float* xr = x + static_cast<size_t>(b) * n;
        float* yr = y + static_cast<size_t>(b) * n;
        float acc[16] = {0};
        int k = 0;
        for (; k + 16 <= n; k += 16)
            for (int i = 0; i < 16; ++i) acc[i] += xr[k + i] * xr[k + i];
        float ss = 0;
        for (int i = 0; i < 16; ++i) ss += acc[i];
        for (; k < n; ++k) ss += xr[k] * xr[k];
        float inv = 1.0f / std::sqrt(ss / n + eps);
        for (int k2 = 0; k2 < n; ++k2) yr[k2] = w[k2] * (xr[k2] * inv);
    }
}

// x [rows, n] float -> xq [rows, stride] as unsigned bytes (q + 128, q in [-127, 127]; the
// bytes past n are left as they are: the packed weights are zero there), xs [rows] scales
void quantize_rows(const float* x, int rows, int n, uint8_t* xq, int64_t stride, float* xs) {
    for (int b = 0; b < rows; ++b) {
        const float* xr = x + static_cast<size_t>(b) * n;
        uint8_t* qr = xq + b * stride;
        float amax = 0;
        for (int k = 0; k < n; ++k) amax = std::max(amax, std::fabs(xr[k]));
        const float s = amax > 0 ? amax / 127.0f : 1.0f, inv = 1.0f / s;
        for (int k = 0; k < n; ++k) qr[k] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(xr[k] * inv)) + 128);
        xs[b] = s;
    }
}

// Writes one block's sums: y[t, col] (+)= (dot[t][i] - 128 rowsum[i]) * xs[t] * scale[i] for the
// block's n <= 16 outputs.
template <int BT>
inline void store_block(const Int8Matrix& m, int nb, const int32_t (*dot)[16], const float* xs, float* y,
                        int64_t ystride, bool accumulate) {
    const int n = std::min(16, m.out - nb * 16);
    const float* scale = m.scale + nb * 16;
    const int32_t* rowsum = m.rowsum + nb * 16;
#ifdef ANYGPT_VNNI
    if (!m.index) {
        const __mmask16 mask = static_cast<__mmask16>((1u << n) - 1u);
        const __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512(rowsum), 7);
        const __m512 sc = _mm512_loadu_ps(scale);
        for (int t = 0; t < BT; ++t) {
            float* yr = y + t * ystride + nb * 16;
            const __m512i acc = _mm512_sub_epi32(_mm512_loadu_si512(dot[t]), corr);
            __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(_mm512_set1_ps(xs[t]), sc));
            if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, yr));
            _mm512_mask_storeu_ps(yr, mask, v);
        }
        return;
    }
#endif
    for (int t = 0; t < BT; ++t) {
        float* yr = y + t * ystride;
        for (int i = 0; i < n; ++i) {
            const int64_t col = m.index ? m.index[nb * 16 + i] : nb * 16 + i;
            const float v = static_cast<float>(dot[t][i] - 128 * rowsum[i]) * (xs[t] * scale[i]);
            yr[col] = accumulate ? yr[col] + v : v;
        }
    }
}

// Packed int8 matrix: W [out, in] as blocks of 16 output rows, [ceil(out/16), ceil(in/4), 16, 4]
// bytes, so one 64-byte load holds 4 inputs of 16 outputs and each 32-bit lane of a VNNI
// accumulator sums one output (no horizontal sums). scale, rowsum: [ceil(out/16) * 16].
// index: null (outputs 0..out-1) or int64 [out], the output column of each row (a sub-head).
// BT rows of x at a time, two blocks of outputs at a time (each broadcast of x serves both).
template <int BT>
void matmul_tile(const Int8Matrix& m, int first, int blocks, const uint8_t* xq, int64_t xstride, const float* xs,
                 float* y, int64_t ystride, bool accumulate) {
    const int k4 = (m.in + 3) / 4;
    for (int nb = first; nb < blocks; nb += 2) {
        const bool two = nb + 1 < blocks;
        const int8_t* wa = m.w + static_cast<size_t>(nb) * k4 * 64;
        const int8_t* wb = two ? wa + static_cast<size_t>(k4) * 64 : wa;
        int32_t dot_a[BT][16], dot_b[BT][16];
#ifdef ANYGPT_VNNI
        __m512i acc_a[BT], acc_b[BT];
        for (int t = 0; t < BT; ++t) acc_a[t] = acc_b[t] = _mm512_setzero_si512();
        for (int k = 0; k < k4; ++k) {
            const __m512i w0 = _mm512_loadu_si512(wa + k * 64), w1 = _mm512_loadu_si512(wb + k * 64);
            for (int t = 0; t < BT; ++t) {
                int32_t four;
                std::memcpy(&four, xq + t * xstride + 4 * k, 4);
                const __m512i x4 = _mm512_set1_epi32(four);
                acc_a[t] = _mm512_dpbusd_epi32(acc_a[t], x4, w0);
                acc_b[t] = _mm512_dpbusd_epi32(acc_b[t], x4, w1);
            }
        }
        for (int t = 0; t < BT; ++t) {
            _mm512_storeu_si512(dot_a[t], acc_a[t]);
            _mm512_storeu_si512(dot_b[t], acc_b[t]);
        }
#else
        for (int t = 0; t < BT; ++t) {
            for (int i = 0; i < 16; ++i) dot_a[t][i] = dot_b[t][i] = 0;
            for (int k = 0; k < k4; ++k)
                for (int i = 0; i < 16; ++i)
                    for (int c = 0; c < 4; ++c) {
                        const int32_t x = xq[t * xstride + 4 * k + c];
                        dot_a[t][i] += x * wa[k * 64 + 4 * i + c];
                        dot_b[t][i] += x * wb[k * 64 + 4 * i + c];
                    }
        }
#endif
        store_block<BT>(m, nb, dot_a, xs, y, ystride, accumulate);
        if (two) store_block<BT>(m, nb + 1, dot_b, xs, y, ystride, accumulate);
    }
}

// y [rows, ystride] (+)= x @ W.T for x given as xq [rows, xstride] (q + 128) and scales xs [rows]
void matmul(const Int8Matrix& m, const uint8_t* xq, int64_t xstride, const float* xs, int rows, float* y,
            int64_t ystride, bool accumulate) {
    // a chunk of output blocks (at most ~128 KB of weights, so it stays in L2) meets every tile
    // of 8 rows before the next chunk is read: the weights are read from memory once a call
    const int blocks = (m.out + 15) / 16;
    const int chunk = std::max(2, (131072 / (16 * std::max(1, m.in))) / 2 * 2);
    for (int first = 0; first < blocks; first += chunk) {
        const int last = std::min(blocks, first + chunk);
        for (int b = 0; b < rows; b += 8) {
            const uint8_t* xb = xq + b * xstride;
            float* yb = y + b * ystride;
            switch (std::min(8, rows - b)) {
                case 1: matmul_tile<1>(m, first, last, xb, xstride, xs + b, yb, ystride, accumulate); break;
                case 2: matmul_tile<2>(m, first, last, xb, xstride, xs + b, yb, ystride, accumulate); break;
                case 3: matmul_tile<3>(m, first, last, xb, xstride, xs + b, yb, ystride, accumulate); break;
                case 4: matmul_tile<4>(m, first, last, xb, xstride, xs + b, yb, ystride, accumulate); break;
                case 5: matmul_tile<5>(m, first, last, xb, xstride, xs + b, yb, ystride, accumulate); break;
                case 6: matmul_tile<6>(m, first, last, xb, xstride, xs + b, yb, ystride, accumulate); break;
                case 7: matmul_tile<7>(m, first, last, xb, xstride, xs + b, yb, ystride, accumulate); break;
                default: matmul_tile<8>(m, first, last, xb, xstride, xs + b, yb, ystride, accumulate); break;
            }
        }
    }
}

#ifdef ANYGPT_VNNI
inline __m512 bf16x16(const uint16_t* p) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
#endif

// q, k of one row in place: x[i] cos[i] + x[(i + D/2) % D] sin[i] (sin's first half negated)
void rope(float* x, int n_heads, int d, const float* cos, const float* sin) {
    float tmp[1024];
    for (int hh = 0; hh < n_heads; ++hh) {
        float* v = x + static_cast<size_t>(hh) * d;
        std::memcpy(tmp, v, sizeof(float) * d);
        const int half = d / 2;
        for (int i = 0; i < d; ++i) v[i] = tmp[i] * cos[i] + tmp[(i + half) % d] * sin[i];
    }
}

// One head's attention over columns 0..n-1 (those `ok` marks; null: all): q [D] fp32, k and v
// [n, D] bf16 -> out [D]. s: scratch [n]. C > 0: D = 16 C, the query and the output held in
// registers (AVX-512); C == 0: any D, plain loops.
template <int C>
void attend_head(const float* q, const uint16_t* k, const uint16_t* v, const uint8_t* ok, int64_t n, int D,
                 float scaling, float* s, float* out) {
    constexpr float none = -std::numeric_limits<float>::infinity();
    float top = none;
#ifdef ANYGPT_VNNI
    if constexpr (C > 0) {
        __m512 qv[C];
        for (int c = 0; c < C; ++c) qv[c] = _mm512_mul_ps(_mm512_loadu_ps(q + 16 * c), _mm512_set1_ps(scaling));
        for (int64_t j = 0; j < n; ++j) {
            if (ok && !ok[j]) {
                s[j] = none;
                continue;
            }
            _mm_prefetch(reinterpret_cast<const char*>(k + (j + 6) * D), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(k + (j + 6) * D) + 64, _MM_HINT_T0);
            __m512 acc = _mm512_mul_ps(qv[0], bf16x16(k + j * D));
            for (int c = 1; c < C; ++c) acc = _mm512_fmadd_ps(qv[c], bf16x16(k + j * D + 16 * c), acc);
            s[j] = _mm512_reduce_add_ps(acc);
            top = std::max(top, s[j]);
        }
    } else
#endif
    {
        for (int64_t j = 0; j < n; ++j) {
            float dot = 0;
            for (int i = 0; i < D; ++i) dot += q[i] * bf16_to_float(k[j * D + i]);
            s[j] = (ok && !ok[j]) ? none : dot * scaling;
            top = std::max(top, s[j]);
        }
    }
    float total = 0;
    for (int64_t j = 0; j < n; ++j) {
        const float p = s[j] == none ? 0.0f : exp_approx(s[j] - top);
        s[j] = p;
        total += p;
    }
    const float inv = 1.0f / total;
#ifdef ANYGPT_VNNI
    if constexpr (C > 0) {
        __m512 o[C];
        for (int c = 0; c < C; ++c) o[c] = _mm512_setzero_ps();
        for (int64_t j = 0; j < n; ++j) {
            _mm_prefetch(reinterpret_cast<const char*>(v + (j + 6) * D), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(v + (j + 6) * D) + 64, _MM_HINT_T0);
            if (s[j] == 0.0f) continue;
            const __m512 p = _mm512_set1_ps(s[j]);
            for (int c = 0; c < C; ++c) o[c] = _mm512_fmadd_ps(p, bf16x16(v + j * D + 16 * c), o[c]);
        }
        for (int c = 0; c < C; ++c) _mm512_storeu_ps(out + 16 * c, _mm512_mul_ps(o[c], _mm512_set1_ps(inv)));
        return;
    }
#endif
    std::fill(out, out + D, 0.0f);
    for (int64_t j = 0; j < n; ++j)
        if (s[j] != 0.0f)
            for (int i = 0; i < D; ++i) out[i] += s[j] * bf16_to_float(v[j * D + i]);
    for (int i = 0; i < D; ++i) out[i] *= inv;
}

// Attention of one row's query heads q [H, D] over its cache columns 0..n-1 (those `ok` marks;
// null: all) -> out [H, D]. k, v: the row's cache [KV, capacity, D] bf16.
void attend(Model& m, const float* q, const uint16_t* k, const uint16_t* v, const uint8_t* ok, int64_t n,
            int64_t capacity, float* out) {
    const int D = m.head_dim, per_kv = m.heads / m.kv_heads;
    for (int hh = 0; hh < m.heads; ++hh) {
        const int64_t g = hh / per_kv;
        const uint16_t *kh = k + g * capacity * D, *vh = v + g * capacity * D;
        const float* qh = q + hh * D;
        float* o = out + hh * D;
        float* s = m.scores.data();
        switch (D) {
            case 16: attend_head<1>(qh, kh, vh, ok, n, D, m.scaling, s, o); break;  // the tests' models
            case 32: attend_head<2>(qh, kh, vh, ok, n, D, m.scaling, s, o); break;
            case 64: attend_head<4>(qh, kh, vh, ok, n, D, m.scaling, s, o); break;
            case 128: attend_head<8>(qh, kh, vh, ok, n, D, m.scaling, s, o); break;
            default: attend_head<0>(qh, kh, vh, ok, n, D, m.scaling, s, o); break;
        }
    }
}

inline int64_t padded4(int n) { return (n + 3) / 4 * 4; }

}  // namespace

extern "C" {

// dims: layers, hidden, heads, kv_heads, head_dim, inter, vocab, groups. mats: 4 * layers + 1 +
// groups packed matrices (see matmul) in the order qkv, o, gate_up, down per layer, the head,
// then the head's sub-heads; for each: w, scale, rowsum, index (null but for sub-heads).
// shapes: int32 [matrices, 2] (out, in). The arrays stay owned by the caller.
void* anygpt_native_new(const int32_t* dims, float eps, float scaling, const float* embed, const float* norm,
                        const float* ln1, const float* ln2, const float* cos, const float* sin,
                        const void* const* mats, const int32_t* shapes) {
    auto* m = new Model();
    m->layers = dims[0], m->hidden = dims[1], m->heads = dims[2], m->kv_heads = dims[3];
    m->head_dim = dims[4], m->inter = dims[5], m->vocab = dims[6];
    m->eps = eps, m->scaling = scaling;
    m->embed = embed, m->norm = norm, m->ln1 = ln1, m->ln2 = ln2, m->cos = cos, m->sin = sin;
    auto mat = [&](int i) {
        return Int8Matrix{static_cast<const int8_t*>(mats[4 * i]), static_cast<const float*>(mats[4 * i + 1]),
                          static_cast<const int32_t*>(mats[4 * i + 2]), static_cast<const int64_t*>(mats[4 * i + 3]),
                          shapes[2 * i], shapes[2 * i + 1]};
    };
    for (int l = 0; l < m->layers; ++l) {
        m->qkv.push_back(mat(4 * l));
        m->o.push_back(mat(4 * l + 1));
        m->gate_up.push_back(mat(4 * l + 2));
        m->down.push_back(mat(4 * l + 3));
    }
    m->head = mat(4 * m->layers);
    for (int g = 0; g < dims[7]; ++g) m->groups.push_back(mat(4 * m->layers + 1 + g));
    return m;
}

void anygpt_native_free(void* handle) { delete static_cast<Model*>(handle); }

// One forward over `rows` tokens -> logits [n_out, vocab] of the tokens out_rows names (in
// increasing order; null: all, n_out = rows; group >= 0: only that sub-head's columns, -inf elsewhere).
// ids, pos, cols, slots: int64 [rows]: each token, its rotary position, the cache column it is
// written to, and the cache row (slot) it belongs to (slots null: token b is slot b's).
// kc, vc: per layer, slot 0's cache [KV, capacity, D] bf16, slots row_stride elements apart;
// valid: bool [slots, valid_stride] (null: every column counts). A token attends to its slot's
// columns 0..cols[b] that valid marks (the caller has marked them). A decode step is one token
// per slot; a prefill is several tokens of a slot in increasing columns (each one's keys are
// written before the next attends). Returns 0, or -1 for a head dim over 1,024.
int anygpt_native_forward(void* handle, int32_t rows, const int64_t* ids, const int64_t* pos, const int64_t* cols,
                          const int64_t* slots, uint16_t* const* kc, uint16_t* const* vc, int64_t row_stride,
                          int64_t capacity, const uint8_t* valid, int64_t valid_stride, const int64_t* out_rows,
                          int32_t n_out, int32_t group, float* logits) {
    Model& m = *static_cast<Model*>(handle);
    const int d = m.hidden, D = m.head_dim, H = m.heads, KV = m.kv_heads, I = m.inter;
    if (D > 1024) return -1;
    const int qkv_out = (H + 2 * KV) * D;
    const int widest = std::max({d, qkv_out, 2 * I, H * D});
    const int64_t xstride = padded4(widest);
    m.x.resize(static_cast<size_t>(rows) * d);
    m.h.resize(static_cast<size_t>(rows) * d);
    m.big.resize(static_cast<size_t>(rows) * widest);
    m.attn.resize(static_cast<size_t>(rows) * H * D);
    m.xq.resize(static_cast<size_t>(rows) * xstride);
    m.xs.resize(rows);
    int64_t longest = 0;
    for (int b = 0; b < rows; ++b) longest = std::max(longest, cols[b] + 1);
    m.scores.resize(longest);
    float* x = m.x.data();
    uint8_t* xq = m.xq.data();
    float* xs = m.xs.data();
    for (int b = 0; b < rows; ++b) std::memcpy(x + static_cast<size_t>(b) * d, m.embed + ids[b] * d, sizeof(float) * d);
    for (int l = 0; l < m.layers; ++l) {
        rms_norm(x, m.ln1 + static_cast<size_t>(l) * d, rows, d, m.eps, m.h.data());
        quantize_rows(m.h.data(), rows, d, xq, xstride, xs);
        float* qkv = m.big.data();  // [rows, qkv_out]
        matmul(m.qkv[l], xq, xstride, xs, rows, qkv, qkv_out, false);
        for (int b = 0; b < rows; ++b) {
            float* q = qkv + static_cast<size_t>(b) * qkv_out;
            const float* k = q + H * D;
            const float* v = k + KV * D;
            rope(q, H + KV, D, m.cos + pos[b] * D, m.sin + pos[b] * D);  // q and k are adjacent
            const int64_t slot = slots ? slots[b] : b;
            uint16_t* krow = kc[l] + slot * row_stride;
            uint16_t* vrow = vc[l] + slot * row_stride;
            for (int g = 0; g < KV; ++g) {
                uint16_t* kd = krow + (g * capacity + cols[b]) * D;
                uint16_t* vd = vrow + (g * capacity + cols[b]) * D;
                for (int i = 0; i < D; ++i) kd[i] = float_to_bf16(k[g * D + i]), vd[i] = float_to_bf16(v[g * D + i]);
            }
            attend(m, q, krow, vrow, valid ? valid + slot * valid_stride : nullptr, cols[b] + 1, capacity,
                   m.attn.data() + static_cast<size_t>(b) * H * D);
        }
        quantize_rows(m.attn.data(), rows, H * D, xq, xstride, xs);
        matmul(m.o[l], xq, xstride, xs, rows, x, d, true);
        rms_norm(x, m.ln2 + static_cast<size_t>(l) * d, rows, d, m.eps, m.h.data());
        quantize_rows(m.h.data(), rows, d, xq, xstride, xs);
        float* gu = m.big.data();  // [rows, 2I]: gate then up
        matmul(m.gate_up[l], xq, xstride, xs, rows, gu, 2 * I, false);
        for (int b = 0; b < rows; ++b) {
            float* r = gu + static_cast<size_t>(b) * 2 * I;
            for (int i = 0; i < I; ++i) r[i] = r[i] / (1.0f + exp_approx(-r[i])) * r[I + i];  // SiLU(gate) * up
        }
        for (int b = 0; b < rows; ++b)
            quantize_rows(gu + static_cast<size_t>(b) * 2 * I, 1, I, xq + b * xstride, xstride, xs + b);
        matmul(m.down[l], xq, xstride, xs, rows, x, d, true);
    }
    if (out_rows) {  // gather the tokens that need logits into the first n_out rows
        for (int j = 0; j < n_out; ++j)
            if (out_rows[j] != j) std::memcpy(x + static_cast<size_t>(j) * d, x + out_rows[j] * d, sizeof(float) * d);
    } else {
        n_out = rows;
    }
    rms_norm(x, m.norm, n_out, d, m.eps, m.h.data());
    quantize_rows(m.h.data(), n_out, d, xq, xstride, xs);
    if (group >= 0) {
        std::fill(logits, logits + static_cast<size_t>(n_out) * m.vocab, -std::numeric_limits<float>::infinity());
        matmul(m.groups[group], xq, xstride, xs, n_out, logits, m.vocab, false);
    } else {
        matmul(m.head, xq, xstride, xs, n_out, logits, m.vocab, false);
    }
    return 0;
}

}  // extern "C"
