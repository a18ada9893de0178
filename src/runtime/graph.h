#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/elementwise/elementwise.h"
#include "tiledraw/accel.h"
#include "tiledraw/dtype.h"

// A model is built as a graph of typed ops over float32 values, for one input
// shape; shapes are inferred while it is built. Building and planning a graph
// takes milliseconds, so a new resolution or batch size gets a new graph, not a
// compile step. Weights are referenced, never copied.
namespace tiledraw::runtime {

enum class OpKind : uint8_t {
  Linear, Conv2d, LayerNorm, RmsNorm, GroupNorm, NormModulate, Unary, Binary, Modulate, GatedResidual, Softmax,
  Attention, Patchify, Unpatchify, TimestepEmbedding, Embedding, Upsample, Concat, ChannelAdd, Geglu, View
};
inline constexpr int kOpKinds = 21;
const char* op_name(OpKind kind);

struct Value {
  std::vector<int64_t> shape;
  int producer = -1;        // node index; -1 for a graph input
  int view_of = -1;         // a view (reshape, slice) aliases this value's memory
  int64_t view_offset = 0;  // elements from the start of the root's memory
  int64_t row_stride = 0;   // elements between rows (numel / cols of them) when not contiguous (a slice)
  bool contiguous() const { return row_stride == 0 || row_stride == cols(); }
  int64_t stride() const { return row_stride ? row_stride : cols(); }
  int64_t numel() const;
  int64_t bytes() const { return numel() * static_cast<int64_t>(sizeof(float)); }
  int64_t cols() const { return shape.back(); }
  int64_t rows() const { return numel() / cols(); }
};

// A weight kept in floating point, [n, k] row-major as PyTorch stores it (a
// conv weight [out, in, kh, kw] flattened): layers the converter left in float,
// or a whole model run on the float path.
struct FloatWeight {
  const float* data;
  int64_t n;
  int64_t k;
};

// A layer's low-rank update (LoRA) beside its 8-bit S weight: y += up (down
// x). `down` is 8-bit S, at the accelerator's int8 rate: beside a linear it
// reads the quantized x the layer reads (a convolution's quantizes its own
// window). `up` stays f32 (the adapters' scales folded in),
// so that adapters of very different sizes concatenated along the rank keep
// their own precision. down [rank, k], up [n, rank].
struct LowRankBranch {
  const PackedWeight* down;
  FloatWeight up;
};
// What adapters change in a graph's layers, keyed by the layer's weight (its
// PackedWeight, or its float data): a branch beside each 8-bit S layer, and
// a copy with the update merged in for each float one.
struct LayerAdapters {
  std::map<const void*, LowRankBranch> branches;
  std::map<const void*, FloatWeight> merged;
};

// A lookup table as the file stores it (F32, F16 or BF16 rows, mapped), each
// row converted to f32 when it is looked up: a text encoder's 49408 tokens
// stay 76 MB of file pages, touched a few rows at a time, instead of 152 MB
// of converted floats written at load.
struct StoredTable {
  const void* data = nullptr;
  DType dtype = DType::F32;
};

// A convolution's window: kernel x kernel, moved by `stride`, over the input
// padded with zeros, `padding` before (top, left) and `padding_after` after
// (bottom, right): the VAE encoder's down-sampling pads after only.
struct ConvWindow {
  int64_t kernel = 1, stride = 1, padding = 0, padding_after = 0;
  static ConvWindow square(int64_t kernel, int64_t stride, int64_t padding) { return {kernel, stride, padding, padding}; }
};

struct Node {
  OpKind kind;
  std::vector<int> inputs;
  int output;
  // Attributes; each kind reads its own.
  const PackedWeight* weight = nullptr;  // Linear, Conv2d: 8-bit S through the accelerator
  FloatWeight float_weight{};            // Linear, Conv2d: the float path (when weight is null)
  const float* bias = nullptr;           // Linear, Conv2d
  Activation activation = Activation::None;
  const float* gamma = nullptr;  // norms
  const float* beta = nullptr;
  float eps = 0.0f;
  int64_t heads = 0;  // Attention: inputs q, k, v
  kernels::AttentionMath attention_math = kernels::AttentionMath::F32;
  bool causal = false;  // Attention
  int64_t patch = 0;  // Patchify, Unpatchify
  ConvWindow window{};  // Conv2d
  int64_t groups = 0;                           // GroupNorm
  bool silu = false;                            // GroupNorm
  StoredTable table{};  // Embedding: table_rows x the output's columns
  int64_t table_rows = 0;
  int64_t frequency_shift = 0;  // TimestepEmbedding: w_i = 10000^(-i / (dim / 2 - shift))
  kernels::Unary unary = kernels::Unary::GeluTanh;
  kernels::Binary binary = kernels::Binary::Add;
  std::string label{};  // the layer it computes, where the model named it ("blocks.3.mlp.fc2")
};

class Graph {
 public:
  int input(std::vector<int64_t> shape);
  // A value held outside the graph for its whole life (a position table):
  // like an input, but bound when the graph is built.
  int constant(std::vector<int64_t> shape, const float* data);
  const float* constant_data(int value) const;  // null for anything but a constant
  // x [..., k] -> [..., n] through the accelerator, bias and activation fused.
  int linear(int x, const PackedWeight& weight, const float* bias, Activation activation = Activation::None);
  int linear(int x, const FloatWeight& weight, const float* bias, Activation activation = Activation::None);
  // residual + linear(x): the add happens in the matmul's epilogue, and in the
  // residual's own memory when nothing reads the residual afterwards.
  int linear_residual(int x, const PackedWeight& weight, const float* bias, int residual);
  // x [batch, channels, height, width] -> [batch, out, height', width'] with an
  // 8-bit S weight [out, channels * kernel^2] through the accelerator (im2col).
  int conv2d(int x, const PackedWeight& weight, const float* bias, ConvWindow window);
  int conv2d(int x, const FloatWeight& weight, const float* bias, ConvWindow window);
  int layer_norm(int x, const float* gamma, const float* beta, float eps);
  // x [batch, channels, height, width]; then SiLU when asked, in the same pass.
  int group_norm(int x, int64_t groups, const float* gamma, const float* beta, float eps, bool silu);
  int upsample_nearest_2x(int x);  // [batch, channels, h, w] -> [batch, channels, 2h, 2w]
  int concat_channels(int a, int b);  // [batch, ca, h, w] + [batch, cb, h, w] -> [batch, ca + cb, h, w]
  // x [batch, channels, h, w] + v [batch, channels] (a slice allowed), v's
  // value added to its whole plane: a UNet resnet's time embedding.
  int add_per_channel(int x, int v);
  // GEGLU's gate: x [..., 2n] -> x[..., :n] * gelu(x[..., n:]) (erf GELU), [..., n].
  int geglu(int x);
  int rms_norm(int x, const float* gamma, float eps);
  int unary(kernels::Unary op, int x);
  // b has a's shape, or is one row ([cols]) applied to every row of a.
  int binary(kernels::Binary op, int a, int b);
  // x [batch, tokens, cols] * (1 + scale) + shift, scale and shift [batch, cols]
  // (slices allowed).
  int modulate(int x, int scale, int shift);
  // modulate(layer_norm(x) without affine, scale, shift) in one pass over each
  // row; when only 8-bit S linear layers read the result, the executor writes
  // it straight as their quantized input and never stores the floats.
  int modulated_layer_norm(int x, int scale, int shift, float eps);
  // x + gate * y for x, y [batch, tokens, cols] and gate [batch, cols] (slices
  // allowed): DiT's gated residual in one pass.
  int gated_residual(int x, int y, int gate);
  int softmax(int x);
  // Multi-head attention, streaming (no [q_tokens x kv_tokens] matrix): q
  // [batch, q_tokens, heads * head_dim] against k and v [batch, kv_tokens,
  // heads * head_dim] -> [batch, q_tokens, heads * head_dim]. Any of them may
  // be a slice (columns of a packed projection). With `causal`, query i sees
  // keys j <= i only (top-left aligned, also when the token counts differ).
  int attention(int q, int k, int v, int64_t heads, kernels::AttentionMath math = kernels::AttentionMath::F32,
                bool causal = false);
  // Self-attention over one packed projection qkv [batch, tokens, 3 * heads *
  // head_dim] (q, k, v, then heads): its three column slices, as above.
  int attention(int qkv, int64_t heads, kernels::AttentionMath math = kernels::AttentionMath::F32);
  // image [batch, channels, height, width] -> [batch, tokens, channels * patch^2]
  int patchify(int image, int64_t patch);
  // tokens [batch, tokens, patch^2 * channels] -> image [batch, channels, height, width]
  int unpatchify(int tokens, int64_t channels, int64_t height, int64_t width, int64_t patch);
  // timesteps [batch] -> sinusoidal embedding [batch, dim]
  int timestep_embedding(int timesteps, int64_t dim, int64_t frequency_shift = 0);
  // ids of any shape (whole numbers held as floats) -> rows of table [rows,
  // cols], [..., cols]; an id outside [0, rows) is an Error when the graph runs.
  int embedding(int ids, StoredTable table, int64_t rows, int64_t cols);
  int reshape(int x, std::vector<int64_t> shape);  // a view: no copy
  // [begin, begin + size) of the last dimension of a value of any rank (of
  // its rows, numel / cols of them): a strided view, no copy; a slice of a
  // slice is one too.
  int slice(int x, int64_t begin, int64_t size);
  std::vector<int> chunk(int x, int64_t parts);  // equal slices of the last dimension
  void output(int value);
  // Names the op that produced `value`, for messages about it.
  void label(int value, std::string label);
  // Adapters the model's layers are built with (none by default); they must
  // outlive the graph.
  void set_adapters(const LayerAdapters* adapters) { adapters_ = adapters; }
  const LowRankBranch* low_rank_branch(const void* weight) const;
  const FloatWeight* merged_weight(const void* weight) const;
  // "linear (op 57 of 120, 'blocks.3.mlp.fc2')"; an unnamed op is placed by the
  // named one before it: "gated_residual (op 58 of 120, after 'blocks.3.mlp.fc2')".
  std::string describe(size_t node) const;

  const std::vector<Value>& values() const { return values_; }
  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<int>& inputs() const { return inputs_; }
  const std::vector<int>& outputs() const { return outputs_; }
  int root(int value) const;  // the value whose memory a view uses

 private:
  int add_node(Node node, std::vector<int64_t> shape);
  // Shape checks and the node, for either kind of weight (n outputs, k inputs).
  int add_linear(int x, Node node, int64_t n, int64_t k);
  int add_conv2d(int x, Node node, const float* bias, ConvWindow window, int64_t n, int64_t k);
  int add_view(int x, std::vector<int64_t> shape, int64_t offset, int64_t row_stride);
  void check_modulation(int x, int scale, int shift) const;
  const Value& at(int value) const;

  std::vector<Value> values_;
  std::vector<Node> nodes_;
  std::vector<int> inputs_;
  std::vector<int> outputs_;
  std::map<int, const float*> constants_;
  const LayerAdapters* adapters_ = nullptr;
};

}  // namespace tiledraw::runtime
