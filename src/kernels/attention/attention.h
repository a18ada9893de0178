#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "tiledraw/cpu.h"

// Multi-head scaled dot-product attention, softmax(q k^T / sqrt(head_dim)) v per
// head, for self- and cross-attention: queries [batch, q_tokens, heads *
// head_dim] against keys and values [batch, kv_tokens, heads * head_dim]; head h
// is columns [h * head_dim, (h + 1) * head_dim) of every row. Each operand is a
// pointer and a row stride in floats, so q, k and v can be column slices of one
// packed projection (DiT's qkv: k = qkv + heads * head_dim, stride
// 3 * heads * head_dim) without a copy.
namespace tiledraw::kernels {

struct AttentionArgs {
  const float* q;
  const float* k;
  const float* v;
  float* out;
  // Floats between consecutive tokens (rows) of each operand.
  int64_t q_stride, k_stride, v_stride, out_stride;
  int64_t batch, q_tokens, kv_tokens, heads, head_dim;
  // Query i sees keys j <= i only (top-left aligned, as PyTorch's
  // scaled_dot_product_attention(is_causal=True)), also when q_tokens !=
  // kv_tokens: queries past the last key see every key, keys past the last
  // query are seen by none. Every query sees key 0, so no row is empty.
  bool causal = false;

  // Keys [0, keys_visible_to(query)) are the ones `query` attends to.
  int64_t keys_visible_to(int64_t query) const { return causal ? std::min(kv_tokens, query + 1) : kv_tokens; }
  // Head h of a token's row.
  const float* q_row(int64_t b, int64_t token, int64_t h) const {
    return q + (b * q_tokens + token) * q_stride + h * head_dim;
  }
  const float* k_row(int64_t b, int64_t token, int64_t h) const {
    return k + (b * kv_tokens + token) * k_stride + h * head_dim;
  }
  const float* v_row(int64_t b, int64_t token, int64_t h) const {
    return v + (b * kv_tokens + token) * v_stride + h * head_dim;
  }
  float* out_row(int64_t b, int64_t token, int64_t h) const {
    return out + (b * q_tokens + token) * out_stride + h * head_dim;
  }
};

using AttentionFn = void (*)(const AttentionArgs& args);

// 4 FLOPs per (query, visible key, head dimension): the two products.
double attention_flops(const AttentionArgs& args);

// How the two products (q k^T, then the probabilities times v) are computed:
// in f32, or from bf16 inputs with f32 sums, as PyTorch's bf16 autocast does.
// The bf16 kind is for graphs whose q, k and v already carry 8-bit rounding:
// it adds less error than that, at twice the multiply rate.
enum class AttentionMath { F32, Bf16Products };

// One query at a time in double precision: the oracle; memory O(kv_tokens).
void f32_attention__scalar(const AttentionArgs& args);
// Streaming (flash-style): blocks of 8 queries against blocks of 64 keys with a
// running max and sum, so no [q_tokens x kv_tokens] matrix is ever stored.
void f32_attention_flash_8x64__avx512(const AttentionArgs& args);
// The same with bf16 products (VDPBF16PS): keys and values are converted once
// per head into pairs along the summed dimension.
void bf16_attention_flash_8x64__avx512bf16(const AttentionArgs& args);
// The f32 kernel with 4 queries per block, for AVX2's 16 registers.
void f32_attention_flash_4x64__avx2(const AttentionArgs& args);

// Bf16Products where the level is AVX-512 and the CPU has AVX512-BF16, else
// the f32 kernel of the level.
AttentionFn attention_kernel(IsaLevel level, AttentionMath math);

// Keys per block of the streaming kernels: prepared keys and values are padded
// to a multiple of it, so that a block needs no tail case.
inline constexpr int64_t kKeyBlock = 64;

inline int64_t padded_keys(const AttentionArgs& args) {
  return (args.kv_tokens + kKeyBlock - 1) / kKeyBlock * kKeyBlock;
}

// The streaming kernels' work, split for the threads by `run_streaming_attention`:
// each (batch, head)'s keys and values are prepared once into `head_floats`
// floats, then its queries are attended in runs of whole query blocks.
struct StreamingAttention {
  int64_t query_block;   // queries per block; a run starts at a multiple of it
  size_t head_floats;    // one head's prepared keys and values
  size_t thread_floats;  // a thread's own scratch (used by both parts)
  // Prepares keys [first_key, end_key): multiples of kKeyBlock up to
  // padded_keys(args), zero past the last key.
  void (*prepare)(const AttentionArgs& args, int64_t batch, int64_t head, int64_t first_key, int64_t end_key,
                  float* prepared, float* scratch);
  void (*attend)(const AttentionArgs& args, int64_t batch, int64_t head, int64_t first_query, int64_t end_query,
                 const float* prepared, float* scratch);
};

// Runs `kernel` on all threads: whole heads per thread when there are enough
// heads to keep every thread busy; otherwise one head at a time, its keys and
// then its queries split among all threads (the VAE's one head). All
// scratch, 64-byte aligned, is allocated before the parallel region, so a
// failure throws.
void run_streaming_attention(const AttentionArgs& args, const StreamingAttention& kernel);

// The f32 kernels' prepared keys, `transposed_keys_floats` of them:
// [head_dim][padded_keys], each key scaled by 1 / sqrt(head_dim), zero past
// the last key. A StreamingAttention::prepare.
size_t transposed_keys_floats(const AttentionArgs& args);
void prepare_transposed_keys(const AttentionArgs& args, int64_t batch, int64_t head, int64_t first_key,
                             int64_t end_key, float* keys_t, float* scratch);

}  // namespace tiledraw::kernels
