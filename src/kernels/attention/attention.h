#pragma once

#include <cstdint>

#include "tiledraw/cpu.h"

// Multi-head scaled dot-product attention, reading the fused QKV projection as
// DiT (timm) lays it out: qkv [batch, tokens, 3, heads, head_dim]; out
// [batch, tokens, heads, head_dim]; softmax(q k^T / sqrt(head_dim)) v per head.
namespace tiledraw::kernels {

struct AttentionArgs {
  const float* qkv;
  float* out;
  int64_t batch;
  int64_t tokens;
  int64_t heads;
  int64_t head_dim;
};

using AttentionFn = void (*)(const AttentionArgs& args);

// How the two products (q k^T, then the probabilities times v) are computed:
// in f32, or from bf16 inputs with f32 sums, as PyTorch's bf16 autocast does.
// The bf16 kind is for graphs whose q, k and v already carry 8-bit rounding:
// it adds less error than that, at twice the multiply rate.
enum class AttentionMath { F32, Bf16Products };

// One query at a time in double precision: the oracle; memory O(tokens).
void f32_attention__scalar(const AttentionArgs& args);
// Streaming (flash-style): blocks of 8 queries against blocks of 64 keys with a
// running max and sum, so no [tokens x tokens] matrix is ever stored.
void f32_attention_flash_8x64__avx512(const AttentionArgs& args);
// The same with bf16 products (VDPBF16PS): keys and values are converted once
// per head into pairs along the summed dimension.
void bf16_attention_flash_8x64__avx512bf16(const AttentionArgs& args);
// The f32 kernel with 4 queries per block, for AVX2's 16 registers.
void f32_attention_flash_4x64__avx2(const AttentionArgs& args);

// Bf16Products where the level is AVX-512 and the CPU has AVX512-BF16, else
// the f32 kernel of the level.
AttentionFn attention_kernel(IsaLevel level, AttentionMath math);

// The streaming kernels' driver: runs `head` for every (batch, head) pair on
// all threads, each thread with `scratch_floats` floats of 64-byte aligned
// scratch (allocated before the parallel region, so a failure throws).
void for_each_head(const AttentionArgs& args, size_t scratch_floats,
                   void (*head)(const AttentionArgs& args, int64_t batch, int64_t head, float* scratch));

}  // namespace tiledraw::kernels
