#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <new>

#include "kernels/attention/attention.h"

namespace tiledraw::kernels {
namespace {

struct FreeAligned {
  void operator()(void* p) const { std::free(p); }
};

// `count` floats, 64-byte aligned; throws when memory runs out.
std::unique_ptr<float[], FreeAligned> aligned_floats(size_t count) {
  void* p = std::aligned_alloc(64, (count * sizeof(float) + 63) / 64 * 64);
  if (!p) throw std::bad_alloc();
  return std::unique_ptr<float[], FreeAligned>(static_cast<float*>(p));
}

size_t whole_lines(size_t floats) { return (floats + 15) / 16 * 16; }

// With fewer (batch, head) pairs than this per thread, a head's query blocks
// are shared out among the threads too.
constexpr int64_t kHeadsPerThread = 4;
// Runs of a shared head's key or query blocks per thread: enough for dynamic
// scheduling to even out blocks of unequal cost (a causal mask's).
constexpr int64_t kRunsPerThread = 8;
// Keys transposed at a time: a cache line of floats.
constexpr int64_t kKeysPerLine = 16;

}  // namespace

double attention_flops(const AttentionArgs& a) {
  // (query, key) pairs attended: all, or under the mask min(i + 1, kv_tokens) for query i.
  const double q = double(a.q_tokens), kv = double(a.kv_tokens);
  double pairs = q * kv;
  if (a.causal) pairs = q <= kv ? q * (q + 1) / 2 : kv * (kv + 1) / 2 + (q - kv) * kv;
  return 4.0 * double(a.batch) * double(a.heads) * pairs * double(a.head_dim);
}

void f32_attention__scalar(const AttentionArgs& a) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(a.head_dim));
  const size_t per_thread = static_cast<size_t>(a.kv_tokens + a.head_dim);
  const int threads = omp_get_max_threads();
  const std::unique_ptr<double[]> buffer(new double[per_thread * static_cast<size_t>(threads)]);
#pragma omp parallel num_threads(threads)
  {
    double* scores = buffer.get() + per_thread * static_cast<size_t>(omp_get_thread_num());
    double* o = scores + a.kv_tokens;
#pragma omp for collapse(3) schedule(dynamic, 16)
    for (int64_t b = 0; b < a.batch; ++b) {
      for (int64_t h = 0; h < a.heads; ++h) {
        for (int64_t i = 0; i < a.q_tokens; ++i) {
          const float* q = a.q_row(b, i, h);
          const int64_t keys = a.keys_visible_to(i);
          double max = -INFINITY;
          for (int64_t j = 0; j < keys; ++j) {
            const float* k = a.k_row(b, j, h);
            double dot = 0.0;
            for (int64_t d = 0; d < a.head_dim; ++d) dot += double(q[d]) * k[d];
            scores[j] = dot * scale;
            max = std::max(max, scores[j]);
          }
          double sum = 0.0;
          std::fill(o, o + a.head_dim, 0.0);
          for (int64_t j = 0; j < keys; ++j) {
            const double p = std::exp(scores[j] - max);
            sum += p;
            const float* v = a.v_row(b, j, h);
            for (int64_t d = 0; d < a.head_dim; ++d) o[d] += p * v[d];
          }
          float* out = a.out_row(b, i, h);
          for (int64_t d = 0; d < a.head_dim; ++d) out[d] = static_cast<float>(o[d] / sum);
        }
      }
    }
  }
}

size_t transposed_keys_floats(const AttentionArgs& a) { return static_cast<size_t>(a.head_dim * padded_keys(a)); }

void prepare_transposed_keys(const AttentionArgs& a, int64_t b, int64_t h, int64_t first_key, int64_t end_key,
                             float* keys_t, float*) {
  const int64_t stride = padded_keys(a);
  const float scale = 1.0f / std::sqrt(static_cast<float>(a.head_dim));
  // 16 keys at a time, so that each store run fills a cache line: one key's
  // dimensions would land a row of keys_t apart, often in one cache set.
  for (int64_t j0 = first_key; j0 < end_key; j0 += kKeysPerLine) {
    const int64_t valid = std::clamp(a.kv_tokens - j0, int64_t{0}, kKeysPerLine);
    const float* rows[kKeysPerLine];
    for (int64_t j = 0; j < valid; ++j) rows[j] = a.k_row(b, j0 + j, h);
    for (int64_t d = 0; d < a.head_dim; ++d) {
      float* line = keys_t + d * stride + j0;
      for (int64_t j = 0; j < kKeysPerLine; ++j) line[j] = j < valid ? rows[j][d] * scale : 0.0f;
    }
  }
}

void run_streaming_attention(const AttentionArgs& a, const StreamingAttention& kernel) {
  const int threads = omp_get_max_threads();
  const int64_t pairs = a.batch * a.heads, keys = padded_keys(a);
  const int64_t blocks = (a.q_tokens + kernel.query_block - 1) / kernel.query_block;
  const bool share_heads = pairs < kHeadsPerThread * threads && blocks > 1;
  const size_t head_floats = whole_lines(kernel.head_floats), thread_floats = whole_lines(kernel.thread_floats);
  if (!share_heads) {
    // Each thread's prepared head beside its scratch: 20-25% faster on 2
    // threads than all prepared heads, then all scratch (measured).
    const size_t per_thread = head_floats + thread_floats;
    const auto buffer = aligned_floats(per_thread * static_cast<size_t>(threads));
#pragma omp parallel num_threads(threads)
    {
      float* head = buffer.get() + per_thread * static_cast<size_t>(omp_get_thread_num());
      float* mine = head + head_floats;
#pragma omp for schedule(dynamic)
      for (int64_t p = 0; p < pairs; ++p) {
        kernel.prepare(a, p / a.heads, p % a.heads, 0, keys, head, mine);
        kernel.attend(a, p / a.heads, p % a.heads, 0, a.q_tokens, head, mine);
      }
    }
    return;
  }
  const auto buffer = aligned_floats(head_floats + static_cast<size_t>(threads) * thread_floats);
  float* const head = buffer.get();
  // One head at a time, prepared and then attended by all threads, in runs of
  // key and of query blocks sized for about kRunsPerThread runs per thread.
  const int64_t key_run = std::max<int64_t>(1, keys / kKeyBlock / (kRunsPerThread * threads)) * kKeyBlock;
  const int64_t query_run = std::max<int64_t>(1, blocks / (kRunsPerThread * threads)) * kernel.query_block;
#pragma omp parallel num_threads(threads)
  {
    float* mine = head + head_floats + static_cast<size_t>(omp_get_thread_num()) * thread_floats;
    for (int64_t p = 0; p < pairs; ++p) {
      const int64_t b = p / a.heads, h = p % a.heads;
#pragma omp for schedule(dynamic)
      for (int64_t first = 0; first < keys; first += key_run) {
        kernel.prepare(a, b, h, first, std::min(keys, first + key_run), head, mine);
      }
#pragma omp for schedule(dynamic)
      for (int64_t first = 0; first < a.q_tokens; first += query_run) {
        kernel.attend(a, b, h, first, std::min(a.q_tokens, first + query_run), head, mine);
      }
    }
  }
}

AttentionFn attention_kernel(IsaLevel level, AttentionMath math) {
  if (math == AttentionMath::Bf16Products && level == IsaLevel::Avx512 && cpu_features().avx512_bf16) {
    return bf16_attention_flash_8x64__avx512bf16;
  }
  return for_isa(level, f32_attention__scalar, f32_attention_flash_4x64__avx2, f32_attention_flash_8x64__avx512);
}

}  // namespace tiledraw::kernels
