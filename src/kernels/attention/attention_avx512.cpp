#include <algorithm>
#include <cmath>

#include "kernels/activation/vector_math_avx512.h"
#include "kernels/attention/attention.h"

namespace tiledraw::kernels {
namespace {

constexpr int64_t kQueries = 8;  // per block: their scores and outputs stay in registers
constexpr int64_t kKeys = 64;    // per block: four vectors of scores per query

__mmask16 lanes_avx512(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xffff) : left <= 0 ? 0 : static_cast<__mmask16>((1u << left) - 1);
}

// Per-query registers are named, not arrays: GCC 12 copies every element of a
// __m512 array around each FMA (see the vnni kernel), which halves the speed.
#define TD_QUERIES(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define TD_DECLARE_SCORES(r) __m512 s##r##a = _mm512_setzero_ps(), s##r##b = _mm512_setzero_ps();
#define TD_SCORE_STEP(r)                                 \
  {                                                      \
    const __m512 qr = _mm512_set1_ps(q[r][d]);           \
    s##r##a = _mm512_fmadd_ps(qr, k0, s##r##a);          \
    s##r##b = _mm512_fmadd_ps(qr, k1, s##r##b);          \
  }
#define TD_STORE_SCORES(r)                                                                \
  _mm512_store_ps(s.probs + r * kKeys + c, _mm512_mask_mov_ps(none, valid0, s##r##a));      \
  _mm512_store_ps(s.probs + r * kKeys + c + 16, _mm512_mask_mov_ps(none, valid1, s##r##b));
#define TD_LOAD_OUTPUT(r) __m512 o##r = _mm512_load_ps(s.acc + r * s.padded_dim + d);
#define TD_OUTPUT_STEP(r) o##r = _mm512_fmadd_ps(_mm512_set1_ps(p[r * kKeys]), v, o##r);
#define TD_STORE_OUTPUT(r) _mm512_store_ps(s.acc + r * s.padded_dim + d, o##r);

struct HeadScratch {
  float* keys_t;  // [head_dim][padded tokens], pre-scaled by 1 / sqrt(head_dim), zero past the last token
  float* probs;   // [kQueries][kKeys]
  float* acc;     // [kQueries][padded head_dim]
  int64_t padded_tokens, padded_dim;
};

void attend_head_avx512(const AttentionArgs& a, int64_t b, int64_t h, float* scratch) {
  const int64_t padded_tokens = (a.tokens + kKeys - 1) / kKeys * kKeys;
  const int64_t padded_dim = (a.head_dim + 15) / 16 * 16;
  const HeadScratch s{scratch, scratch + a.head_dim * padded_tokens,
                      scratch + a.head_dim * padded_tokens + kQueries * kKeys, padded_tokens, padded_dim};
  const int64_t tokens = a.tokens, dim = a.head_dim, width = a.heads * dim;
  const auto row = [&](int64_t token, int64_t part) { return a.qkv + ((b * tokens + token) * 3 + part) * width + h * dim; };
  const float scale = 1.0f / std::sqrt(static_cast<float>(dim));
  for (int64_t j = 0; j < s.padded_tokens; ++j) {
    const float* k = j < tokens ? row(j, 1) : nullptr;
    for (int64_t d = 0; d < dim; ++d) s.keys_t[d * s.padded_tokens + j] = k ? k[d] * scale : 0.0f;
  }
  for (int64_t i0 = 0; i0 < tokens; i0 += kQueries) {
    const int64_t queries = std::min(kQueries, tokens - i0);
    const float* q[kQueries];
    float max[kQueries], sum[kQueries];
    for (int64_t r = 0; r < kQueries; ++r) {
      q[r] = row(i0 + std::min(r, queries - 1), 0);  // a short block repeats its last query; its result is dropped
      max[r] = -INFINITY;
      sum[r] = 0.0f;
    }
    for (int64_t i = 0; i < kQueries * s.padded_dim; ++i) s.acc[i] = 0.0f;
    for (int64_t j0 = 0; j0 < tokens; j0 += kKeys) {
      const int64_t keys = std::min(kKeys, tokens - j0);
      for (int64_t c = 0; c < kKeys; c += 32) {
        TD_QUERIES(TD_DECLARE_SCORES)
        if (c < keys) {
          const float* kt = s.keys_t + j0 + c;
          for (int64_t d = 0; d < dim; ++d, kt += s.padded_tokens) {
            const __m512 k0 = _mm512_load_ps(kt);
            const __m512 k1 = _mm512_load_ps(kt + 16);
            TD_QUERIES(TD_SCORE_STEP)
          }
        }
        const __mmask16 valid0 = lanes_avx512(keys - c), valid1 = lanes_avx512(keys - c - 16);
        const __m512 none = _mm512_set1_ps(-INFINITY);
        TD_QUERIES(TD_STORE_SCORES)
      }
      for (int64_t r = 0; r < kQueries; ++r) {
        float* p = s.probs + r * kKeys;
        __m512 block_max = _mm512_load_ps(p);
        for (int64_t c = 16; c < kKeys; c += 16) block_max = _mm512_max_ps(block_max, _mm512_load_ps(p + c));
        const float new_max = std::max(max[r], _mm512_reduce_max_ps(block_max));
        const float rescale = std::exp(max[r] - new_max);
        __m512 block_sum = _mm512_setzero_ps();
        for (int64_t c = 0; c < kKeys; c += 16) {
          const __m512 e = _mm512_maskz_mov_ps(lanes_avx512(keys - c),
                                               exp_avx512(_mm512_sub_ps(_mm512_load_ps(p + c), _mm512_set1_ps(new_max))));
          _mm512_store_ps(p + c, e);
          block_sum = _mm512_add_ps(block_sum, e);
        }
        sum[r] = sum[r] * rescale + _mm512_reduce_add_ps(block_sum);
        max[r] = new_max;
        float* acc = s.acc + r * s.padded_dim;
        for (int64_t d = 0; d < s.padded_dim; d += 16) {
          _mm512_store_ps(acc + d, _mm512_mul_ps(_mm512_load_ps(acc + d), _mm512_set1_ps(rescale)));
        }
      }
      for (int64_t d = 0; d < s.padded_dim; d += 16) {
        const __mmask16 lanes = lanes_avx512(dim - d);
        TD_QUERIES(TD_LOAD_OUTPUT)
        for (int64_t j = 0; j < keys; ++j) {
          const __m512 v = _mm512_maskz_loadu_ps(lanes, row(j0 + j, 2) + d);
          const float* p = s.probs + j;
          TD_QUERIES(TD_OUTPUT_STEP)
        }
        TD_QUERIES(TD_STORE_OUTPUT)
      }
    }
    for (int64_t r = 0; r < queries; ++r) {
      float* out = a.out + (b * tokens + i0 + r) * width + h * dim;
      const __m512 inverse = _mm512_set1_ps(1.0f / sum[r]);
      for (int64_t d = 0; d < dim; d += 16) {
        _mm512_mask_storeu_ps(out + d, lanes_avx512(dim - d),
                              _mm512_mul_ps(_mm512_load_ps(s.acc + r * s.padded_dim + d), inverse));
      }
    }
  }
}

#undef TD_QUERIES
#undef TD_DECLARE_SCORES
#undef TD_SCORE_STEP
#undef TD_STORE_SCORES
#undef TD_LOAD_OUTPUT
#undef TD_OUTPUT_STEP
#undef TD_STORE_OUTPUT

}  // namespace

void f32_attention_flash_8x64__avx512(const AttentionArgs& a) {
  const int64_t padded_tokens = (a.tokens + kKeys - 1) / kKeys * kKeys;
  const int64_t padded_dim = (a.head_dim + 15) / 16 * 16;
  for_each_head(a, static_cast<size_t>(a.head_dim * padded_tokens + kQueries * kKeys + kQueries * padded_dim),
                attend_head_avx512);
}

}  // namespace tiledraw::kernels
