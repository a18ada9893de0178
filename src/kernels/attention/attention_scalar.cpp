#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <new>
#include <vector>

#include "kernels/attention/attention.h"

namespace tiledraw::kernels {

void f32_attention__scalar(const AttentionArgs& a) {
  const int64_t width = a.heads * a.head_dim;
  const double scale = 1.0 / std::sqrt(static_cast<double>(a.head_dim));
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < a.batch; ++b) {
    for (int64_t h = 0; h < a.heads; ++h) {
      std::vector<double> scores(static_cast<size_t>(a.tokens)), o(static_cast<size_t>(a.head_dim));
      const auto row = [&](int64_t token, int part) { return a.qkv + ((b * a.tokens + token) * 3 + part) * width + h * a.head_dim; };
      for (int64_t i = 0; i < a.tokens; ++i) {
        const float* q = row(i, 0);
        double max = -INFINITY;
        for (int64_t j = 0; j < a.tokens; ++j) {
          const float* k = row(j, 1);
          double dot = 0.0;
          for (int64_t d = 0; d < a.head_dim; ++d) dot += double(q[d]) * k[d];
          scores[static_cast<size_t>(j)] = dot * scale;
          max = std::max(max, dot * scale);
        }
        double sum = 0.0;
        std::fill(o.begin(), o.end(), 0.0);
        for (int64_t j = 0; j < a.tokens; ++j) {
          const double p = std::exp(scores[static_cast<size_t>(j)] - max);
          sum += p;
          const float* v = row(j, 2);
          for (int64_t d = 0; d < a.head_dim; ++d) o[static_cast<size_t>(d)] += p * v[d];
        }
        float* out = a.out + (b * a.tokens + i) * width + h * a.head_dim;
        for (int64_t d = 0; d < a.head_dim; ++d) out[d] = static_cast<float>(o[static_cast<size_t>(d)] / sum);
      }
    }
  }
}

void for_each_head(const AttentionArgs& a, size_t scratch_floats,
                   void (*head)(const AttentionArgs& args, int64_t batch, int64_t head, float* scratch)) {
  const size_t per_thread = (scratch_floats + 15) / 16 * 16;
  const int threads = omp_get_max_threads();
  float* scratch = static_cast<float*>(std::aligned_alloc(64, per_thread * sizeof(float) * static_cast<size_t>(threads)));
  if (!scratch) throw std::bad_alloc();
#pragma omp parallel num_threads(threads)
  {
    float* mine = scratch + per_thread * static_cast<size_t>(omp_get_thread_num());
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t b = 0; b < a.batch; ++b) {
      for (int64_t h = 0; h < a.heads; ++h) head(a, b, h, mine);
    }
  }
  std::free(scratch);
}

AttentionFn attention_kernel(IsaLevel level, AttentionMath math) {
  if (math == AttentionMath::Bf16Products && level == IsaLevel::Avx512 && cpu_features().avx512_bf16) {
    return bf16_attention_flash_8x64__avx512bf16;
  }
  return for_isa(level, f32_attention__scalar, f32_attention_flash_4x64__avx2, f32_attention_flash_8x64__avx512);
}

}  // namespace tiledraw::kernels
