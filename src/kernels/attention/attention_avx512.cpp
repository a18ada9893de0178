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

// One query's block of kKeys scores (-inf past `keys`) becomes exp(score -
// running max) in place; the running sum and the output accumulated so far
// are rescaled to the new max.
void online_softmax_avx512(float* p, int64_t keys, float& max, float& sum, float* acc, int64_t padded_dim) {
  __m512 block_max = _mm512_load_ps(p);
  for (int64_t c = 16; c < kKeys; c += 16) block_max = _mm512_max_ps(block_max, _mm512_load_ps(p + c));
  const float new_max = std::max(max, _mm512_reduce_max_ps(block_max));
  const float rescale = std::exp(max - new_max);
  __m512 block_sum = _mm512_setzero_ps();
  for (int64_t c = 0; c < kKeys; c += 16) {
    const __m512 e = _mm512_maskz_mov_ps(lanes_avx512(keys - c),
                                         exp_avx512(_mm512_sub_ps(_mm512_load_ps(p + c), _mm512_set1_ps(new_max))));
    _mm512_store_ps(p + c, e);
    block_sum = _mm512_add_ps(block_sum, e);
  }
  sum = sum * rescale + _mm512_reduce_add_ps(block_sum);
  max = new_max;
  for (int64_t d = 0; d < padded_dim; d += 16) {
    _mm512_store_ps(acc + d, _mm512_mul_ps(_mm512_load_ps(acc + d), _mm512_set1_ps(rescale)));
  }
}

// Writes each query's output row: the accumulated sum over its softmax total.
void store_outputs_avx512(const AttentionArgs& a, int64_t b, int64_t h, int64_t i0, int64_t queries, const float* acc,
                          int64_t padded_dim, const float* sum) {
  const int64_t dim = a.head_dim, width = a.heads * dim;
  for (int64_t r = 0; r < queries; ++r) {
    float* out = a.out + (b * a.tokens + i0 + r) * width + h * dim;
    const __m512 inverse = _mm512_set1_ps(1.0f / sum[r]);
    for (int64_t d = 0; d < dim; d += 16) {
      _mm512_mask_storeu_ps(out + d, lanes_avx512(dim - d), _mm512_mul_ps(_mm512_load_ps(acc + r * padded_dim + d), inverse));
    }
  }
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
#define TD_SCORE_STEP_BF16(r)                                                              \
  {                                                                                        \
    const __m512bh qr = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(qp[r][p]))); \
    s##r##a = _mm512_dpbf16_ps(s##r##a, qr, k0);                                           \
    s##r##b = _mm512_dpbf16_ps(s##r##b, qr, k1);                                           \
  }
#define TD_OUTPUT_STEP_BF16(r) \
  o##r = _mm512_dpbf16_ps(o##r, reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(pp[r * kKeys / 2]))), v);

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
        online_softmax_avx512(s.probs + r * kKeys, keys, max[r], sum[r], s.acc + r * s.padded_dim, s.padded_dim);
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
    store_outputs_avx512(a, b, h, i0, queries, s.acc, s.padded_dim, sum);
  }
}

// 32 floats as 16 words of bf16 pairs (x[2i], x[2i+1]), rounded to nearest even.
__m512i bf16_pairs_avx512(__m512 low, __m512 high) {
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(high, low));
}

// 16 floats as bf16 in the low halves of 16 words.
__m512i bf16_low_halves_avx512(__m512 x) {
  return _mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(x)));
}

struct Bf16HeadScratch {
  uint32_t* key_pairs;    // [dim pairs][padded tokens]: (k[j][2p], k[j][2p+1]) / sqrt(head_dim), zero past the last token
  uint32_t* value_pairs;  // [padded tokens / 2][padded_dim]: (v[2i][d], v[2i+1][d])
  uint32_t* query_pairs;  // [kQueries][padded pairs]
  uint32_t* prob_pairs;   // [kQueries][kKeys / 2]
  uint32_t* key_row;      // [padded pairs]: one key's pairs before the transpose
  float* probs;           // [kQueries][kKeys]
  float* acc;             // [kQueries][padded_dim]
  int64_t padded_tokens, padded_dim, padded_pairs;
};

struct Bf16Sizes {
  int64_t padded_tokens, padded_dim, pairs, padded_pairs;
  explicit Bf16Sizes(const AttentionArgs& a)
      : padded_tokens((a.tokens + kKeys - 1) / kKeys * kKeys),
        padded_dim((a.head_dim + 15) / 16 * 16),
        pairs((a.head_dim + 1) / 2),
        padded_pairs((a.head_dim + 31) / 32 * 16) {}
  int64_t scratch_words() const {
    return pairs * padded_tokens + padded_tokens / 2 * padded_dim + kQueries * padded_pairs + kQueries * kKeys / 2 +
           padded_pairs + kQueries * kKeys + kQueries * padded_dim;
  }
};

// Stores one row's pairs (x[2p], x[2p+1]) * scale, zero past `dim`, as padded_pairs words.
void row_pairs_avx512(const float* x, int64_t dim, float scale, uint32_t* out) {
  for (int64_t d = 0; d < dim; d += 32) {
    const __m512 low = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes_avx512(dim - d), x + d), _mm512_set1_ps(scale));
    const __m512 high = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes_avx512(dim - d - 16), x + d + 16), _mm512_set1_ps(scale));
    _mm512_storeu_si512(out + d / 2, bf16_pairs_avx512(low, high));
  }
}

void attend_head_bf16_avx512(const AttentionArgs& a, int64_t b, int64_t h, float* scratch) {
  const Bf16Sizes z(a);
  auto* words = reinterpret_cast<uint32_t*>(scratch);
  Bf16HeadScratch s{};
  s.key_pairs = words;
  s.value_pairs = s.key_pairs + z.pairs * z.padded_tokens;
  s.query_pairs = s.value_pairs + z.padded_tokens / 2 * z.padded_dim;
  s.prob_pairs = s.query_pairs + kQueries * z.padded_pairs;
  s.key_row = s.prob_pairs + kQueries * kKeys / 2;
  s.probs = reinterpret_cast<float*>(s.key_row + z.padded_pairs);
  s.acc = s.probs + kQueries * kKeys;
  s.padded_tokens = z.padded_tokens;
  s.padded_dim = z.padded_dim;
  s.padded_pairs = z.padded_pairs;
  const int64_t tokens = a.tokens, dim = a.head_dim, width = a.heads * dim;
  const auto row = [&](int64_t token, int64_t part) { return a.qkv + ((b * tokens + token) * 3 + part) * width + h * dim; };

  // Keys: each row's pairs, transposed to one vector of 16 keys per pair.
  for (int64_t j = 0; j < s.padded_tokens; ++j) {
    if (j < tokens) row_pairs_avx512(row(j, 1), dim, 1.0f / std::sqrt(static_cast<float>(dim)), s.key_row);
    for (int64_t p = 0; p < z.pairs; ++p) s.key_pairs[p * s.padded_tokens + j] = j < tokens ? s.key_row[p] : 0;
  }
  // Values: two rows interleaved, so that one word holds the pair of keys a probability pair multiplies.
  for (int64_t i = 0; i < s.padded_tokens / 2; ++i) {
    for (int64_t d = 0; d < s.padded_dim; d += 16) {
      const __mmask16 lanes = lanes_avx512(dim - d);
      const __m512 even = 2 * i < tokens ? _mm512_maskz_loadu_ps(lanes, row(2 * i, 2) + d) : _mm512_setzero_ps();
      const __m512 odd = 2 * i + 1 < tokens ? _mm512_maskz_loadu_ps(lanes, row(2 * i + 1, 2) + d) : _mm512_setzero_ps();
      _mm512_store_si512(s.value_pairs + i * s.padded_dim + d,
                         _mm512_or_si512(bf16_low_halves_avx512(even), _mm512_slli_epi32(bf16_low_halves_avx512(odd), 16)));
    }
  }

  for (int64_t i0 = 0; i0 < tokens; i0 += kQueries) {
    const int64_t queries = std::min(kQueries, tokens - i0);
    const uint32_t* qp[kQueries];
    float max[kQueries], sum[kQueries];
    for (int64_t r = 0; r < kQueries; ++r) {
      uint32_t* pairs = s.query_pairs + r * s.padded_pairs;
      row_pairs_avx512(row(i0 + std::min(r, queries - 1), 0), dim, 1.0f, pairs);  // a short block repeats its last query
      qp[r] = pairs;
      max[r] = -INFINITY;
      sum[r] = 0.0f;
    }
    for (int64_t i = 0; i < kQueries * s.padded_dim; ++i) s.acc[i] = 0.0f;
    for (int64_t j0 = 0; j0 < tokens; j0 += kKeys) {
      const int64_t keys = std::min(kKeys, tokens - j0);
      for (int64_t c = 0; c < kKeys; c += 32) {
        TD_QUERIES(TD_DECLARE_SCORES)
        if (c < keys) {
          const uint32_t* kp = s.key_pairs + j0 + c;
          for (int64_t p = 0; p < z.pairs; ++p, kp += s.padded_tokens) {
            const __m512bh k0 = reinterpret_cast<__m512bh>(_mm512_load_si512(kp));
            const __m512bh k1 = reinterpret_cast<__m512bh>(_mm512_load_si512(kp + 16));
            TD_QUERIES(TD_SCORE_STEP_BF16)
          }
        }
        const __mmask16 valid0 = lanes_avx512(keys - c), valid1 = lanes_avx512(keys - c - 16);
        const __m512 none = _mm512_set1_ps(-INFINITY);
        TD_QUERIES(TD_STORE_SCORES)
      }
      for (int64_t r = 0; r < kQueries; ++r) {
        float* p = s.probs + r * kKeys;
        online_softmax_avx512(p, keys, max[r], sum[r], s.acc + r * s.padded_dim, s.padded_dim);
        for (int64_t c = 0; c < kKeys; c += 32) {
          _mm512_store_si512(s.prob_pairs + r * kKeys / 2 + c / 2,
                             bf16_pairs_avx512(_mm512_load_ps(p + c), _mm512_load_ps(p + c + 16)));
        }
      }
      for (int64_t d = 0; d < s.padded_dim; d += 16) {
        TD_QUERIES(TD_LOAD_OUTPUT)
        const uint32_t* values = s.value_pairs + j0 / 2 * s.padded_dim + d;
        for (int64_t jp = 0; jp < (keys + 1) / 2; ++jp, values += s.padded_dim) {
          const __m512bh v = reinterpret_cast<__m512bh>(_mm512_load_si512(values));
          const uint32_t* pp = s.prob_pairs + jp;
          TD_QUERIES(TD_OUTPUT_STEP_BF16)
        }
        TD_QUERIES(TD_STORE_OUTPUT)
      }
    }
    store_outputs_avx512(a, b, h, i0, queries, s.acc, s.padded_dim, sum);
  }
}

#undef TD_QUERIES
#undef TD_DECLARE_SCORES
#undef TD_SCORE_STEP
#undef TD_STORE_SCORES
#undef TD_LOAD_OUTPUT
#undef TD_OUTPUT_STEP
#undef TD_STORE_OUTPUT
#undef TD_SCORE_STEP_BF16
#undef TD_OUTPUT_STEP_BF16

}  // namespace

void f32_attention_flash_8x64__avx512(const AttentionArgs& a) {
  const int64_t padded_tokens = (a.tokens + kKeys - 1) / kKeys * kKeys;
  const int64_t padded_dim = (a.head_dim + 15) / 16 * 16;
  for_each_head(a, static_cast<size_t>(a.head_dim * padded_tokens + kQueries * kKeys + kQueries * padded_dim),
                attend_head_avx512);
}

void bf16_attention_flash_8x64__avx512bf16(const AttentionArgs& a) {
  for_each_head(a, static_cast<size_t>(Bf16Sizes(a).scratch_words()), attend_head_bf16_avx512);
}

}  // namespace tiledraw::kernels
