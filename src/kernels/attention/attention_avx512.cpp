#include <algorithm>
#include <cmath>

#include "kernels/activation/vector_math_avx512.h"
#include "kernels/attention/attention.h"

namespace tiledraw::kernels {
namespace {

constexpr int64_t kQueries = 8;       // per block: their scores and outputs stay in registers
constexpr int64_t kKeys = kKeyBlock;  // per block: four vectors of scores per query

__mmask16 lanes_avx512(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xffff) : left <= 0 ? 0 : static_cast<__mmask16>((1u << left) - 1);
}

// One head's sizes, padded for whole vectors and blocks.
struct Sizes {
  int64_t padded_keys, padded_dim, pairs, padded_pairs;
  explicit Sizes(const AttentionArgs& a)
      : padded_keys(kernels::padded_keys(a)),
        padded_dim((a.head_dim + 15) / 16 * 16),
        pairs((a.head_dim + 1) / 2),
        padded_pairs((a.head_dim + 31) / 32 * 16) {}
  // The driver's share of a thread's scratch: a block's scores, then its outputs.
  int64_t block_floats() const { return kQueries * kKeys + kQueries * padded_dim; }
};

// One query's block of kKeys scores becomes exp(score - running max) in place,
// zero past its first `visible` keys; the running sum and the output
// accumulated so far are rescaled to the new max. A query sees key 0 in the
// first block, so the running max is finite wherever `visible` is 0.
void online_softmax_avx512(float* p, int64_t visible, float& max, float& sum, float* acc, int64_t padded_dim) {
  __m512 block_max = _mm512_set1_ps(-INFINITY);
  for (int64_t c = 0; c < kKeys; c += 16) {
    block_max = _mm512_mask_max_ps(block_max, lanes_avx512(visible - c), block_max, _mm512_load_ps(p + c));
  }
  const float new_max = std::max(max, _mm512_reduce_max_ps(block_max));
  const float rescale = std::exp(max - new_max);
  __m512 block_sum = _mm512_setzero_ps();
  for (int64_t c = 0; c < kKeys; c += 16) {
    const __m512 e = _mm512_maskz_mov_ps(lanes_avx512(visible - c),
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
  const int64_t dim = a.head_dim;
  for (int64_t r = 0; r < queries; ++r) {
    float* out = a.out_row(b, i0 + r, h);
    const __m512 inverse = _mm512_set1_ps(1.0f / sum[r]);
    for (int64_t d = 0; d < dim; d += 16) {
      _mm512_mask_storeu_ps(out + d, lanes_avx512(dim - d), _mm512_mul_ps(_mm512_load_ps(acc + r * padded_dim + d), inverse));
    }
  }
}

// The block loop of both AVX-512 kernels. For each block of kQueries queries
// in [first, end): blocks of kKeys keys up to the last key its last query sees
// (later blocks are skipped), each query's scores masked past the keys it
// sees, the online softmax, the product with the values, and the output.
// `Operands` holds one kernel's prepared keys and values; the products are
// its overloads of load_queries_avx512, scores_avx512 and accumulate_avx512.
template <class Operands>
void attend_blocks_avx512(const AttentionArgs& a, int64_t b, int64_t h, int64_t first, int64_t end, Operands& operands,
                          float* scratch) {
  const Sizes z(a);
  float* probs = scratch;                 // [kQueries][kKeys]
  float* acc = scratch + kQueries * kKeys;  // [kQueries][padded_dim]
  for (int64_t i0 = first; i0 < end; i0 += kQueries) {
    const int64_t queries = std::min(kQueries, end - i0);
    int64_t query[kQueries];
    float max[kQueries], sum[kQueries];
    for (int64_t r = 0; r < kQueries; ++r) {
      query[r] = i0 + std::min(r, queries - 1);  // a short block repeats its last query; its result is dropped
      max[r] = -INFINITY;
      sum[r] = 0.0f;
    }
    load_queries_avx512(operands, query);
    for (int64_t i = 0; i < kQueries * z.padded_dim; ++i) acc[i] = 0.0f;
    const int64_t key_end = a.keys_visible_to(query[kQueries - 1]);
    for (int64_t j0 = 0; j0 < key_end; j0 += kKeys) {
      const int64_t keys = std::min(kKeys, key_end - j0);
      scores_avx512(operands, j0, keys, probs);
      for (int64_t r = 0; r < kQueries; ++r) {
        const int64_t visible = std::clamp(a.keys_visible_to(query[r]) - j0, int64_t{0}, keys);
        online_softmax_avx512(probs + r * kKeys, visible, max[r], sum[r], acc + r * z.padded_dim, z.padded_dim);
      }
      accumulate_avx512(operands, j0, keys, probs, acc);
    }
    store_outputs_avx512(a, b, h, i0, queries, acc, z.padded_dim, sum);
  }
}

// Per-query registers are named, not arrays: GCC 12 copies every element of a
// __m512 array around each FMA (see the vnni kernel), which halves the speed.
#define TD_QUERIES(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define TD_DECLARE_SCORES(r) __m512 s##r##a = _mm512_setzero_ps(), s##r##b = _mm512_setzero_ps();
#define TD_SCORE_STEP(r)                                 \
  {                                                      \
    const __m512 qr = _mm512_set1_ps(qt[r]);             \
    s##r##a = _mm512_fmadd_ps(qr, k0, s##r##a);          \
    s##r##b = _mm512_fmadd_ps(qr, k1, s##r##b);          \
  }
#define TD_STORE_SCORES(r)                           \
  _mm512_store_ps(probs + r * kKeys + c, s##r##a); \
  _mm512_store_ps(probs + r * kKeys + c + 16, s##r##b);
#define TD_LOAD_OUTPUT(r) __m512 o##r = _mm512_load_ps(acc + r * padded_dim + d);
#define TD_OUTPUT_STEP(r) o##r = _mm512_fmadd_ps(_mm512_set1_ps(p[r * kKeys]), v, o##r);
#define TD_STORE_OUTPUT(r) _mm512_store_ps(acc + r * padded_dim + d, o##r);
#define TD_SCORE_STEP_BF16(r)                                                              \
  {                                                                                        \
    const __m512bh qr = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(qp[r]))); \
    s##r##a = _mm512_dpbf16_ps(s##r##a, qr, k0);                                           \
    s##r##b = _mm512_dpbf16_ps(s##r##b, qr, k1);                                           \
  }
#define TD_OUTPUT_STEP_BF16(r) \
  o##r = _mm512_dpbf16_ps(o##r, reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(pp[r * kKeys / 2]))), v);

// The f32 kernel: keys prepared by prepare_transposed_keys, values read
// where they are, each block's queries transposed (so that the score loop
// broadcasts all of them from one pointer, and keeps its registers for sums).
struct F32Operands {
  const AttentionArgs& a;
  int64_t b, h;
  Sizes z;
  const float* keys_t;  // [head_dim][padded_keys]
  float* queries_t;     // [head_dim][kQueries], in the thread's scratch after the driver's share
};

void load_queries_avx512(F32Operands& o, const int64_t* query) {
  for (int64_t r = 0; r < kQueries; ++r) {
    const float* q = o.a.q_row(o.b, query[r], o.h);
    for (int64_t d = 0; d < o.a.head_dim; ++d) o.queries_t[d * kQueries + r] = q[d];
  }
}

// The block's scores, [kQueries][kKeys]; past `keys`, whatever the zero keys give.
void scores_avx512(const F32Operands& o, int64_t j0, int64_t keys, float* probs) {
  for (int64_t c = 0; c < kKeys; c += 32) {
    TD_QUERIES(TD_DECLARE_SCORES)
    if (c < keys) {
      const float* kt = o.keys_t + j0 + c;
      const float* qt = o.queries_t;
      for (int64_t d = 0; d < o.a.head_dim; ++d, kt += o.z.padded_keys, qt += kQueries) {
        const __m512 k0 = _mm512_load_ps(kt);
        const __m512 k1 = _mm512_load_ps(kt + 16);
        TD_QUERIES(TD_SCORE_STEP)
      }
    }
    TD_QUERIES(TD_STORE_SCORES)
  }
}

// acc += probabilities [kQueries][kKeys] times the block's `keys` value rows.
void accumulate_avx512(const F32Operands& o, int64_t j0, int64_t keys, const float* probs, float* acc) {
  const int64_t padded_dim = o.z.padded_dim;
  for (int64_t d = 0; d < padded_dim; d += 16) {
    const __mmask16 lanes = lanes_avx512(o.a.head_dim - d);
    TD_QUERIES(TD_LOAD_OUTPUT)
    const float* values = o.a.v_row(o.b, j0, o.h) + d;
    for (int64_t j = 0; j < keys; ++j, values += o.a.v_stride) {
      const __m512 v = _mm512_maskz_loadu_ps(lanes, values);
      const float* p = probs + j;
      TD_QUERIES(TD_OUTPUT_STEP)
    }
    TD_QUERIES(TD_STORE_OUTPUT)
  }
}

void attend_f32_avx512(const AttentionArgs& a, int64_t b, int64_t h, int64_t first, int64_t end, const float* keys_t,
                       float* scratch) {
  const Sizes z(a);
  F32Operands operands{a, b, h, z, keys_t, scratch + z.block_floats()};
  attend_blocks_avx512(a, b, h, first, end, operands, scratch);
}

// 32 floats as 16 words of bf16 pairs (x[2i], x[2i+1]), rounded to nearest even.
__m512i bf16_pairs_avx512(__m512 low, __m512 high) {
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(high, low));
}

// 16 floats as bf16 in the low halves of 16 words.
__m512i bf16_low_halves_avx512(__m512 x) {
  return _mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(x)));
}

// Stores one row's pairs (x[2p], x[2p+1]) * scale, zero past `dim`, as padded_pairs words.
void row_pairs_avx512(const float* x, int64_t dim, float scale, uint32_t* out) {
  for (int64_t d = 0; d < dim; d += 32) {
    const __m512 low = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes_avx512(dim - d), x + d), _mm512_set1_ps(scale));
    const __m512 high = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes_avx512(dim - d - 16), x + d + 16), _mm512_set1_ps(scale));
    _mm512_storeu_si512(out + d / 2, bf16_pairs_avx512(low, high));
  }
}

// The bf16 kernel: keys and values prepared as pairs along the summed
// dimension (prepare_bf16_avx512), queries and probabilities converted per block.
struct Bf16Operands {
  const AttentionArgs& a;
  int64_t b, h;
  Sizes z;
  const uint32_t* key_pairs;    // [pairs][padded_keys]: (k[j][2p], k[j][2p+1]) / sqrt(head_dim), zero past the last key
  const uint32_t* value_pairs;  // [padded_keys / 2][padded_dim]: (v[2i][d], v[2i+1][d]), zero past the last key
  uint32_t* query_pairs;        // [pairs][kQueries]: transposed, as the f32 kernel's queries
  uint32_t* prob_pairs;         // [kQueries][kKeys / 2]
  uint32_t* rows;               // [kQueries][padded_pairs]: the block's query pairs before their transpose
};

// Key rows converted at a time before their transpose: one vector of pairs.
// Their scratch also holds a block's query rows.
constexpr int64_t kKeyRows = 16;
static_assert(kKeyRows >= kQueries);

// Where a head's prepared pairs and a thread's own ones lie.
struct Bf16Layout {
  int64_t value_pairs, head_words;                      // offsets in the prepared head
  int64_t query_pairs, prob_pairs, rows, thread_words;  // offsets in a thread's scratch
  explicit Bf16Layout(const Sizes& z)
      : value_pairs(z.pairs * z.padded_keys),
        head_words(value_pairs + z.padded_keys / 2 * z.padded_dim),
        query_pairs(z.block_floats()),
        prob_pairs(query_pairs + z.padded_pairs * kQueries),  // whole lines: prob_pairs is stored aligned
        rows(prob_pairs + kQueries * kKeys / 2),
        thread_words(rows + kKeyRows * z.padded_pairs) {}
};

void prepare_bf16_avx512(const AttentionArgs& a, int64_t b, int64_t h, int64_t first_key, int64_t end_key,
                         float* prepared, float* scratch) {
  const Sizes z(a);
  const Bf16Layout layout(z);
  auto* key_pairs = reinterpret_cast<uint32_t*>(prepared);
  uint32_t* value_pairs = key_pairs + layout.value_pairs;
  uint32_t* rows = reinterpret_cast<uint32_t*>(scratch) + layout.rows;  // [kKeyRows][padded_pairs]
  const int64_t tokens = a.kv_tokens, dim = a.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dim));
  // Keys: kKeyRows rows' pairs, then one vector of them per pair (a whole
  // cache line, where one row's pairs would land a row of key_pairs apart).
  const __m512i row_starts = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                _mm512_set1_epi32(static_cast<int>(z.padded_pairs)));
  for (int64_t j0 = first_key; j0 < end_key; j0 += kKeyRows) {
    for (int64_t j = 0; j < kKeyRows; ++j) {
      uint32_t* row = rows + j * z.padded_pairs;
      if (j0 + j < tokens) {
        row_pairs_avx512(a.k_row(b, j0 + j, h), dim, scale, row);
      } else {
        std::fill_n(row, z.pairs, 0u);
      }
    }
    for (int64_t p = 0; p < z.pairs; ++p) {
      _mm512_store_si512(key_pairs + p * z.padded_keys + j0, _mm512_i32gather_epi32(row_starts, rows + p, 4));
    }
  }
  // Values: two rows interleaved, so that one word holds the pair of keys a probability pair multiplies.
  for (int64_t i = first_key / 2; i < end_key / 2; ++i) {
    for (int64_t d = 0; d < z.padded_dim; d += 16) {
      const __mmask16 lanes = lanes_avx512(dim - d);
      const __m512 even = 2 * i < tokens ? _mm512_maskz_loadu_ps(lanes, a.v_row(b, 2 * i, h) + d) : _mm512_setzero_ps();
      const __m512 odd = 2 * i + 1 < tokens ? _mm512_maskz_loadu_ps(lanes, a.v_row(b, 2 * i + 1, h) + d) : _mm512_setzero_ps();
      _mm512_store_si512(value_pairs + i * z.padded_dim + d,
                         _mm512_or_si512(bf16_low_halves_avx512(even), _mm512_slli_epi32(bf16_low_halves_avx512(odd), 16)));
    }
  }
}

void load_queries_avx512(Bf16Operands& o, const int64_t* query) {
  for (int64_t r = 0; r < kQueries; ++r) {
    row_pairs_avx512(o.a.q_row(o.b, query[r], o.h), o.a.head_dim, 1.0f, o.rows + r * o.z.padded_pairs);
  }
  // Two pairs of all kQueries queries per vector; past the last pair, the rows' zero padding.
  const __m512i query_pair = _mm512_add_epi32(
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7),
                         _mm512_set1_epi32(static_cast<int>(o.z.padded_pairs))),
      _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
  for (int64_t p = 0; p < o.z.pairs; p += 2) {
    _mm512_store_si512(o.query_pairs + p * kQueries, _mm512_i32gather_epi32(query_pair, o.rows + p, 4));
  }
}

void scores_avx512(const Bf16Operands& o, int64_t j0, int64_t keys, float* probs) {
  for (int64_t c = 0; c < kKeys; c += 32) {
    TD_QUERIES(TD_DECLARE_SCORES)
    if (c < keys) {
      const uint32_t* kp = o.key_pairs + j0 + c;
      const uint32_t* qp = o.query_pairs;
      for (int64_t p = 0; p < o.z.pairs; ++p, kp += o.z.padded_keys, qp += kQueries) {
        const __m512bh k0 = reinterpret_cast<__m512bh>(_mm512_load_si512(kp));
        const __m512bh k1 = reinterpret_cast<__m512bh>(_mm512_load_si512(kp + 16));
        TD_QUERIES(TD_SCORE_STEP_BF16)
      }
    }
    TD_QUERIES(TD_STORE_SCORES)
  }
}

void accumulate_avx512(const Bf16Operands& o, int64_t j0, int64_t keys, const float* probs, float* acc) {
  for (int64_t r = 0; r < kQueries; ++r) {
    for (int64_t c = 0; c < kKeys; c += 32) {
      _mm512_store_si512(o.prob_pairs + r * kKeys / 2 + c / 2,
                         bf16_pairs_avx512(_mm512_load_ps(probs + r * kKeys + c), _mm512_load_ps(probs + r * kKeys + c + 16)));
    }
  }
  const int64_t padded_dim = o.z.padded_dim;
  for (int64_t d = 0; d < padded_dim; d += 16) {
    TD_QUERIES(TD_LOAD_OUTPUT)
    const uint32_t* values = o.value_pairs + j0 / 2 * padded_dim + d;
    for (int64_t jp = 0; jp < (keys + 1) / 2; ++jp, values += padded_dim) {
      const __m512bh v = reinterpret_cast<__m512bh>(_mm512_load_si512(values));
      const uint32_t* pp = o.prob_pairs + jp;
      TD_QUERIES(TD_OUTPUT_STEP_BF16)
    }
    TD_QUERIES(TD_STORE_OUTPUT)
  }
}

void attend_bf16_avx512(const AttentionArgs& a, int64_t b, int64_t h, int64_t first, int64_t end, const float* prepared,
                        float* scratch) {
  const Sizes z(a);
  const Bf16Layout layout(z);
  const auto* head = reinterpret_cast<const uint32_t*>(prepared);
  auto* own = reinterpret_cast<uint32_t*>(scratch);
  Bf16Operands operands{a, b, h, z, head, head + layout.value_pairs, own + layout.query_pairs, own + layout.prob_pairs,
                        own + layout.rows};
  attend_blocks_avx512(a, b, h, first, end, operands, scratch);
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
  const size_t thread_floats = static_cast<size_t>(Sizes(a).block_floats() + a.head_dim * kQueries);
  run_streaming_attention(a,
                          {kQueries, transposed_keys_floats(a), thread_floats, prepare_transposed_keys, attend_f32_avx512});
}

void bf16_attention_flash_8x64__avx512bf16(const AttentionArgs& a) {
  const Bf16Layout layout{Sizes(a)};
  run_streaming_attention(a, {kQueries, static_cast<size_t>(layout.head_words),
                              static_cast<size_t>(layout.thread_words), prepare_bf16_avx512, attend_bf16_avx512});
}

}  // namespace tiledraw::kernels
