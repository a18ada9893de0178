#include <algorithm>
#include <cmath>

#include "kernels/activation/vector_math_avx2.h"
#include "kernels/attention/attention.h"

namespace tiledraw::kernels {
namespace {

// As the AVX-512 f32 kernel, narrowed to 16 registers: 4 queries x 16 keys per
// register block (8 accumulators), 64 keys per softmax block, the same
// prepared keys.
constexpr int64_t kQueries = 4;
constexpr int64_t kKeys = kKeyBlock;

int64_t padded_dim_avx2(const AttentionArgs& a) { return (a.head_dim + 7) / 8 * 8; }

// As online_softmax_avx512: exp(score - running max) in place, zero past the
// first `visible` keys; the running sum and output rescaled to the new max.
void online_softmax_avx2(float* p, int64_t visible, float& max, float& sum, float* acc, int64_t padded_dim) {
  const __m256 none = _mm256_set1_ps(-INFINITY);
  __m256 block_max = none;
  for (int64_t c = 0; c < kKeys; c += 8) {
    const __m256 lanes = _mm256_castsi256_ps(lanes_below_avx2(visible - c));
    block_max = _mm256_max_ps(block_max, _mm256_blendv_ps(none, _mm256_load_ps(p + c), lanes));
  }
  const float new_max = std::max(max, horizontal_max_avx2(block_max));
  const float rescale = std::exp(max - new_max);
  __m256 block_sum = _mm256_setzero_ps();
  for (int64_t c = 0; c < kKeys; c += 8) {
    const __m256 e = _mm256_and_ps(exp_avx2(_mm256_sub_ps(_mm256_load_ps(p + c), _mm256_set1_ps(new_max))),
                                   _mm256_castsi256_ps(lanes_below_avx2(visible - c)));
    _mm256_store_ps(p + c, e);
    block_sum = _mm256_add_ps(block_sum, e);
  }
  sum = sum * rescale + horizontal_sum_avx2(block_sum);
  max = new_max;
  for (int64_t d = 0; d < padded_dim; d += 8) {
    _mm256_store_ps(acc + d, _mm256_mul_ps(_mm256_load_ps(acc + d), _mm256_set1_ps(rescale)));
  }
}

#define TD_QUERIES(X) X(0) X(1) X(2) X(3)
#define TD_DECLARE_SCORES(r) __m256 s##r##a = _mm256_setzero_ps(), s##r##b = _mm256_setzero_ps();
#define TD_SCORE_STEP(r)                                \
  {                                                     \
    const __m256 qr = _mm256_set1_ps(q[r][d]);          \
    s##r##a = _mm256_fmadd_ps(qr, k0, s##r##a);         \
    s##r##b = _mm256_fmadd_ps(qr, k1, s##r##b);         \
  }
#define TD_STORE_SCORES(r)                          \
  _mm256_store_ps(probs + r * kKeys + c, s##r##a); \
  _mm256_store_ps(probs + r * kKeys + c + 8, s##r##b);
#define TD_LOAD_OUTPUT(r) __m256 o##r = _mm256_load_ps(acc + r * padded_dim + d);
#define TD_OUTPUT_STEP(r) o##r = _mm256_fmadd_ps(_mm256_set1_ps(p[r * kKeys]), v, o##r);
#define TD_STORE_OUTPUT(r) _mm256_store_ps(acc + r * padded_dim + d, o##r);

// The AVX-512 driver's loop (attend_blocks_avx512) with this kernel's block
// sizes: queries [first, end) of one head against its prepared keys.
void attend_f32_avx2(const AttentionArgs& a, int64_t b, int64_t h, int64_t first, int64_t end, const float* keys_t,
                     float* scratch) {
  const int64_t dim = a.head_dim, padded_dim = padded_dim_avx2(a);
  const int64_t stride = padded_keys(a);  // of keys_t
  float* probs = scratch;                   // [kQueries][kKeys]
  float* acc = scratch + kQueries * kKeys;  // [kQueries][padded_dim]
  for (int64_t i0 = first; i0 < end; i0 += kQueries) {
    const int64_t queries = std::min(kQueries, end - i0);
    int64_t query[kQueries];
    const float* q[kQueries];
    float max[kQueries], sum[kQueries];
    for (int64_t r = 0; r < kQueries; ++r) {
      query[r] = i0 + std::min(r, queries - 1);  // a short block repeats its last query; its result is dropped
      q[r] = a.q_row(b, query[r], h);
      max[r] = -INFINITY;
      sum[r] = 0.0f;
    }
    for (int64_t i = 0; i < kQueries * padded_dim; ++i) acc[i] = 0.0f;
    const int64_t key_end = a.keys_visible_to(query[kQueries - 1]);
    for (int64_t j0 = 0; j0 < key_end; j0 += kKeys) {
      const int64_t keys = std::min(kKeys, key_end - j0);
      for (int64_t c = 0; c < kKeys; c += 16) {
        TD_QUERIES(TD_DECLARE_SCORES)
        if (c < keys) {
          const float* kt = keys_t + j0 + c;
          for (int64_t d = 0; d < dim; ++d, kt += stride) {
            const __m256 k0 = _mm256_load_ps(kt);
            const __m256 k1 = _mm256_load_ps(kt + 8);
            TD_QUERIES(TD_SCORE_STEP)
          }
        }
        TD_QUERIES(TD_STORE_SCORES)
      }
      for (int64_t r = 0; r < kQueries; ++r) {
        const int64_t visible = std::clamp(a.keys_visible_to(query[r]) - j0, int64_t{0}, keys);
        online_softmax_avx2(probs + r * kKeys, visible, max[r], sum[r], acc + r * padded_dim, padded_dim);
      }
      for (int64_t d = 0; d < padded_dim; d += 8) {
        const __m256i lanes = lanes_below_avx2(dim - d);
        TD_QUERIES(TD_LOAD_OUTPUT)
        const float* values = a.v_row(b, j0, h) + d;
        for (int64_t j = 0; j < keys; ++j, values += a.v_stride) {
          const __m256 v = _mm256_maskload_ps(values, lanes);
          const float* p = probs + j;
          TD_QUERIES(TD_OUTPUT_STEP)
        }
        TD_QUERIES(TD_STORE_OUTPUT)
      }
    }
    for (int64_t r = 0; r < queries; ++r) {
      float* out = a.out_row(b, i0 + r, h);
      const __m256 inverse = _mm256_set1_ps(1.0f / sum[r]);
      for (int64_t d = 0; d < dim; d += 8) {
        _mm256_maskstore_ps(out + d, lanes_below_avx2(dim - d),
                            _mm256_mul_ps(_mm256_load_ps(acc + r * padded_dim + d), inverse));
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

void f32_attention_flash_4x64__avx2(const AttentionArgs& a) {
  const size_t thread_floats = static_cast<size_t>(kQueries * kKeys + kQueries * padded_dim_avx2(a));
  run_streaming_attention(a, {kQueries, transposed_keys_floats(a), thread_floats, prepare_transposed_keys, attend_f32_avx2});
}

}  // namespace tiledraw::kernels
