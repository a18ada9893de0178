#include "runtime/graph.h"

#include "tiledraw/error.h"
#include "tiledraw/safetensors.h"

namespace tiledraw::runtime {

const char* op_name(OpKind kind) {
  static const char* const names[kOpKinds] = {
      "linear",    "conv2d",  "layer_norm", "rms_norm", "group_norm", "norm_modulate", "unary",
      "binary",    "modulate", "gated_residual", "softmax", "attention", "patchify", "unpatchify",
      "timestep_embedding", "embedding", "upsample", "concat", "channel_add", "geglu", "view"};
  return names[static_cast<int>(kind)];
}

int64_t Value::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const Value& Graph::at(int value) const {
  if (value < 0 || value >= static_cast<int>(values_.size())) throw Error("graph: no value " + std::to_string(value));
  return values_[static_cast<size_t>(value)];
}

int Graph::root(int value) const {
  while (at(value).view_of >= 0) value = at(value).view_of;
  return value;
}

namespace {

// Ops that read rows by their stride: attention (all of q, k, v) and the
// per-batch vectors (modulate's scale and shift, the residual gate, the
// per-channel values).
bool accepts_slice(OpKind kind, size_t input) {
  switch (kind) {
    case OpKind::View:
    case OpKind::Attention:
      return true;
    case OpKind::Modulate:
    case OpKind::NormModulate:
      return input > 0;
    case OpKind::ChannelAdd:
      return input == 1;
    case OpKind::GatedResidual:
      return input == 2;
    default:
      return false;
  }
}

}  // namespace

int Graph::add_node(Node node, std::vector<int64_t> shape) {
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    if (!accepts_slice(node.kind, i) && !at(node.inputs[i]).contiguous()) {
      throw Error(std::string("graph: ") + op_name(node.kind) + " needs a contiguous input, got a slice");
    }
  }
  node.output = static_cast<int>(values_.size());
  values_.push_back({std::move(shape), static_cast<int>(nodes_.size()), -1});
  nodes_.push_back(std::move(node));
  return nodes_.back().output;
}

int Graph::input(std::vector<int64_t> shape) {
  if (shape.empty()) throw Error("graph: an input needs a shape");
  for (int64_t d : shape) {
    if (d <= 0) throw Error("graph: input shape " + shape_string(shape) + " has an empty dimension");
  }
  values_.push_back({std::move(shape), -1, -1});
  inputs_.push_back(static_cast<int>(values_.size()) - 1);
  return inputs_.back();
}

int Graph::add_linear(int x, Node node, int64_t n, int64_t k) {
  std::vector<int64_t> shape = at(x).shape;
  if (shape.back() != k) {
    throw Error("graph: linear of " + shape_string(shape) + " by a weight [" + std::to_string(n) + ", " +
                std::to_string(k) + "]");
  }
  shape.back() = n;
  return add_node(std::move(node), std::move(shape));
}

int Graph::linear(int x, const PackedWeight& weight, const float* bias, Activation activation) {
  Node node{OpKind::Linear, {x}, -1};
  node.weight = &weight;
  node.bias = bias;
  node.activation = activation;
  return add_linear(x, std::move(node), weight.n(), weight.k());
}

const LowRankBranch* Graph::low_rank_branch(const void* weight) const {
  if (!adapters_) return nullptr;
  const auto it = adapters_->branches.find(weight);
  return it == adapters_->branches.end() ? nullptr : &it->second;
}

const FloatWeight* Graph::merged_weight(const void* weight) const {
  if (!adapters_) return nullptr;
  const auto it = adapters_->merged.find(weight);
  return it == adapters_->merged.end() ? nullptr : &it->second;
}

int Graph::constant(std::vector<int64_t> shape, const float* data) {
  if (shape.empty() || !data) throw Error("graph: a constant needs a shape and data");
  values_.push_back({std::move(shape), -1, -1});
  const int id = static_cast<int>(values_.size()) - 1;
  constants_.emplace(id, data);
  return id;
}

const float* Graph::constant_data(int value) const {
  const auto it = constants_.find(value);
  return it == constants_.end() ? nullptr : it->second;
}

int Graph::linear_residual(int x, const PackedWeight& weight, const float* bias, int residual) {
  Node node{OpKind::Linear, {x, residual}, -1};
  node.weight = &weight;
  node.bias = bias;
  const int y = add_linear(x, std::move(node), weight.n(), weight.k());
  if (at(residual).shape != at(y).shape) {
    throw Error("graph: residual " + shape_string(at(residual).shape) + " does not match the linear's output " +
                shape_string(at(y).shape));
  }
  return y;
}

int Graph::linear(int x, const FloatWeight& weight, const float* bias, Activation activation) {
  Node node{OpKind::Linear, {x}, -1};
  node.float_weight = weight;
  node.bias = bias;
  node.activation = activation;
  return add_linear(x, std::move(node), weight.n, weight.k);
}

int Graph::add_conv2d(int x, Node node, const float* bias, ConvWindow window, int64_t n, int64_t k) {
  node.bias = bias;
  node.window = window;
  const std::vector<int64_t>& s = at(x).shape;
  const int64_t padded_height = s.size() == 4 ? s[2] + window.padding + window.padding_after : 0;
  const int64_t padded_width = s.size() == 4 ? s[3] + window.padding + window.padding_after : 0;
  if (s.size() != 4 || window.kernel <= 0 || window.stride <= 0 || window.padding < 0 || window.padding_after < 0 ||
      k != s[1] * window.kernel * window.kernel || padded_height < window.kernel || padded_width < window.kernel) {
    throw Error("graph: conv2d of " + shape_string(s) + " by a weight [" + std::to_string(n) + ", " +
                std::to_string(k) + "] with kernel " + std::to_string(window.kernel));
  }
  const int64_t height = (padded_height - window.kernel) / window.stride + 1;
  const int64_t width = (padded_width - window.kernel) / window.stride + 1;
  return add_node(std::move(node), {s[0], n, height, width});
}

int Graph::conv2d(int x, const PackedWeight& weight, const float* bias, ConvWindow window) {
  Node node{OpKind::Conv2d, {x}, -1};
  node.weight = &weight;
  return add_conv2d(x, std::move(node), bias, window, weight.n(), weight.k());
}

int Graph::conv2d(int x, const FloatWeight& weight, const float* bias, ConvWindow window) {
  Node node{OpKind::Conv2d, {x}, -1};
  node.float_weight = weight;
  return add_conv2d(x, std::move(node), bias, window, weight.n, weight.k);
}

int Graph::group_norm(int x, int64_t groups, const float* gamma, const float* beta, float eps, bool silu) {
  const std::vector<int64_t>& s = at(x).shape;
  if (s.size() < 3 || groups <= 0 || s[1] % groups) {
    throw Error("graph: group norm of " + shape_string(s) + " in " + std::to_string(groups) + " groups");
  }
  Node node{OpKind::GroupNorm, {x}, -1};
  node.groups = groups;
  node.gamma = gamma;
  node.beta = beta;
  node.eps = eps;
  node.silu = silu;
  return add_node(std::move(node), s);
}

int Graph::upsample_nearest_2x(int x) {
  std::vector<int64_t> s = at(x).shape;
  if (s.size() != 4) throw Error("graph: upsample needs [batch, channels, height, width], got " + shape_string(s));
  s[2] *= 2;
  s[3] *= 2;
  return add_node({OpKind::Upsample, {x}, -1}, std::move(s));
}

int Graph::concat_channels(int a, int b) {
  std::vector<int64_t> sa = at(a).shape;
  const std::vector<int64_t>& sb = at(b).shape;
  if (sa.size() != 4 || sb.size() != 4 || sa[0] != sb[0] || sa[2] != sb[2] || sa[3] != sb[3]) {
    throw Error("graph: cannot concatenate " + shape_string(sa) + " and " + shape_string(sb) + " along channels");
  }
  sa[1] += sb[1];
  return add_node({OpKind::Concat, {a, b}, -1}, std::move(sa));
}

int Graph::add_per_channel(int x, int v) {
  const std::vector<int64_t>& s = at(x).shape;
  if (s.size() != 4 || at(v).shape != std::vector<int64_t>{s[0], s[1]}) {
    throw Error("graph: cannot add " + shape_string(at(v).shape) + " to the channels of " + shape_string(s));
  }
  return add_node({OpKind::ChannelAdd, {x, v}, -1}, s);
}

int Graph::geglu(int x) {
  std::vector<int64_t> s = at(x).shape;
  if (s.empty() || s.back() % 2) throw Error("graph: GEGLU needs an even number of columns, got " + shape_string(s));
  s.back() /= 2;
  return add_node({OpKind::Geglu, {x}, -1}, std::move(s));
}

int Graph::layer_norm(int x, const float* gamma, const float* beta, float eps) {
  Node node{OpKind::LayerNorm, {x}, -1};
  node.gamma = gamma;
  node.beta = beta;
  node.eps = eps;
  return add_node(std::move(node), at(x).shape);
}

int Graph::rms_norm(int x, const float* gamma, float eps) {
  Node node{OpKind::RmsNorm, {x}, -1};
  node.gamma = gamma;
  node.eps = eps;
  return add_node(std::move(node), at(x).shape);
}

int Graph::unary(kernels::Unary op, int x) {
  Node node{OpKind::Unary, {x}, -1};
  node.unary = op;
  return add_node(std::move(node), at(x).shape);
}

int Graph::binary(kernels::Binary op, int a, int b) {
  const Value &va = at(a), &vb = at(b);
  if (va.shape != vb.shape && !(vb.shape.size() == 1 && vb.shape[0] == va.cols())) {
    throw Error("graph: cannot combine " + shape_string(va.shape) + " with " + shape_string(vb.shape));
  }
  Node node{OpKind::Binary, {a, b}, -1};
  node.binary = op;
  return add_node(std::move(node), va.shape);
}

int Graph::modulate(int x, int scale, int shift) {
  check_modulation(x, scale, shift);
  return add_node({OpKind::Modulate, {x, scale, shift}, -1}, at(x).shape);
}

int Graph::modulated_layer_norm(int x, int scale, int shift, float eps) {
  check_modulation(x, scale, shift);
  Node node{OpKind::NormModulate, {x, scale, shift}, -1};
  node.eps = eps;
  return add_node(std::move(node), at(x).shape);
}

void Graph::check_modulation(int x, int scale, int shift) const {
  const Value& vx = at(x);
  const std::vector<int64_t> per_batch = {vx.shape.front(), vx.cols()};
  if (vx.shape.size() != 3 || at(scale).shape != per_batch || at(shift).shape != per_batch) {
    throw Error("graph: modulate needs x [batch, tokens, cols] and scale, shift [batch, cols], got " +
                shape_string(vx.shape) + ", " + shape_string(at(scale).shape) + ", " + shape_string(at(shift).shape));
  }
}

int Graph::gated_residual(int x, int y, int gate) {
  const Value& vx = at(x);
  const std::vector<int64_t> per_batch = {vx.shape.front(), vx.cols()};
  if (vx.shape.size() != 3 || at(y).shape != vx.shape || at(gate).shape != per_batch) {
    throw Error("graph: gated residual needs x, y [batch, tokens, cols] and gate [batch, cols], got " +
                shape_string(vx.shape) + ", " + shape_string(at(y).shape) + ", " + shape_string(at(gate).shape));
  }
  return add_node({OpKind::GatedResidual, {x, y, gate}, -1}, vx.shape);
}

int Graph::softmax(int x) { return add_node({OpKind::Softmax, {x}, -1}, at(x).shape); }

int Graph::attention(int q, int k, int v, int64_t heads, kernels::AttentionMath math, bool causal) {
  const std::vector<int64_t>& sq = at(q).shape;
  const std::vector<int64_t>& sk = at(k).shape;
  const std::vector<int64_t>& sv = at(v).shape;
  if (sq.size() != 3 || sk.size() != 3 || sk != sv || sq[0] != sk[0] || sq[2] != sk[2] || heads <= 0 ||
      sq[2] % heads != 0) {
    throw Error("graph: attention needs q [batch, q_tokens, heads * head_dim] and k, v [batch, kv_tokens, heads * "
                "head_dim], got q " + shape_string(sq) + ", k " + shape_string(sk) + ", v " + shape_string(sv) +
                " with " + std::to_string(heads) + " heads");
  }
  Node node{OpKind::Attention, {q, k, v}, -1};
  node.heads = heads;
  node.attention_math = math;
  node.causal = causal;
  return add_node(std::move(node), sq);
}

int Graph::attention(int qkv, int64_t heads, kernels::AttentionMath math) {
  const std::vector<int64_t>& shape = at(qkv).shape;
  if (shape.size() != 3 || heads <= 0 || shape[2] % (3 * heads) != 0) {
    throw Error("graph: attention needs qkv [batch, tokens, 3 * heads * head_dim], got " + shape_string(shape) +
                " with " + std::to_string(heads) + " heads");
  }
  const int64_t width = shape[2] / 3;
  const int q = slice(qkv, 0, width), k = slice(qkv, width, width), v = slice(qkv, 2 * width, width);
  return attention(q, k, v, heads, math);
}

int Graph::patchify(int image, int64_t patch) {
  const std::vector<int64_t>& s = at(image).shape;
  if (s.size() != 4 || patch <= 0 || s[2] % patch || s[3] % patch) {
    throw Error("graph: cannot cut " + shape_string(s) + " into patches of " + std::to_string(patch));
  }
  Node node{OpKind::Patchify, {image}, -1};
  node.patch = patch;
  return add_node(std::move(node), {s[0], (s[2] / patch) * (s[3] / patch), s[1] * patch * patch});
}

int Graph::unpatchify(int tokens, int64_t channels, int64_t height, int64_t width, int64_t patch) {
  const std::vector<int64_t>& s = at(tokens).shape;
  if (patch <= 0 || height % patch || width % patch || s.size() != 3 ||
      s[1] != (height / patch) * (width / patch) || s[2] != patch * patch * channels) {
    throw Error("graph: tokens " + shape_string(s) + " do not make a " + std::to_string(channels) + " x " +
                std::to_string(height) + " x " + std::to_string(width) + " image of patches " + std::to_string(patch));
  }
  Node node{OpKind::Unpatchify, {tokens}, -1};
  node.patch = patch;
  return add_node(std::move(node), {s[0], channels, height, width});
}

int Graph::timestep_embedding(int timesteps, int64_t dim, int64_t frequency_shift) {
  if (at(timesteps).shape.size() != 1 || dim < 4 || frequency_shift < 0 || frequency_shift >= dim / 2) {
    throw Error("graph: timestep embedding needs timesteps [batch], a width of at least 4 and a shift below half of it");
  }
  Node node{OpKind::TimestepEmbedding, {timesteps}, -1};
  node.frequency_shift = frequency_shift;
  return add_node(std::move(node), {at(timesteps).shape[0], dim});
}

int Graph::embedding(int ids, StoredTable table, int64_t rows, int64_t cols) {
  if (at(ids).shape.empty() || !at(ids).contiguous() || rows <= 0 || cols <= 0) {
    throw Error("graph: embedding of ids " + shape_string(at(ids).shape) + " in a table of " + std::to_string(rows) +
                " rows");
  }
  Node node{OpKind::Embedding, {ids}, -1};
  node.table = table;
  node.table_rows = rows;
  std::vector<int64_t> shape = at(ids).shape;
  shape.push_back(cols);
  return add_node(std::move(node), std::move(shape));
}

int Graph::add_view(int x, std::vector<int64_t> shape, int64_t offset, int64_t row_stride) {
  const int64_t base = at(x).view_offset;
  const int id = add_node({OpKind::View, {x}, -1}, std::move(shape));
  Value& view = values_[static_cast<size_t>(id)];
  view.view_of = x;
  view.view_offset = base + offset;
  view.row_stride = row_stride;
  return id;
}

int Graph::reshape(int x, std::vector<int64_t> shape) {
  if (!at(x).contiguous()) throw Error("graph: cannot reshape a slice");
  const Value target{shape};
  if (target.numel() != at(x).numel()) {
    throw Error("graph: cannot reshape " + shape_string(at(x).shape) + " to " + shape_string(shape));
  }
  return add_view(x, std::move(shape), 0, 0);
}

int Graph::slice(int x, int64_t begin, int64_t size) {
  const Value& v = at(x);
  if (begin < 0 || size <= 0 || begin + size > v.cols()) {
    throw Error("graph: cannot take [" + std::to_string(begin) + ", " + std::to_string(begin + size) +
                ") of the last dimension of " + shape_string(v.shape));
  }
  std::vector<int64_t> shape = v.shape;
  shape.back() = size;
  return add_view(x, std::move(shape), begin, v.stride());
}

std::vector<int> Graph::chunk(int x, int64_t parts) {
  const int64_t cols = at(x).cols();
  if (parts <= 0 || cols % parts != 0) {
    throw Error("graph: cannot split " + shape_string(at(x).shape) + " into " + std::to_string(parts) + " parts");
  }
  std::vector<int> slices;
  for (int64_t p = 0; p < parts; ++p) slices.push_back(slice(x, p * cols / parts, cols / parts));
  return slices;
}

void Graph::output(int value) {
  at(value);
  outputs_.push_back(value);
}

void Graph::label(int value, std::string label) {
  const int producer = at(value).producer;
  if (producer < 0) throw Error("graph: only an op's output can be labelled");
  nodes_[static_cast<size_t>(producer)].label = std::move(label);
}

std::string Graph::describe(size_t node) const {
  std::string text = std::string(op_name(nodes_.at(node).kind)) + " (op " + std::to_string(node + 1) + " of " +
                     std::to_string(nodes_.size());
  if (!nodes_[node].label.empty()) return text + ", '" + nodes_[node].label + "')";
  for (size_t before = node; before-- > 0;) {
    if (!nodes_[before].label.empty()) return text + ", after '" + nodes_[before].label + "')";
  }
  return text + ")";
}

}  // namespace tiledraw::runtime
