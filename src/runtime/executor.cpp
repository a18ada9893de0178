#include "runtime/executor.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "kernels/gemm/f32_gemm.h"
#include "kernels/layout/layout.h"
#include "kernels/quantize/im2col_quantize.h"
#include "runtime/stopwatch.h"
#include "runtime/text.h"
#include "tiledraw/cpu.h"
#include "tiledraw/error.h"
#include "tiledraw/safetensors.h"

namespace tiledraw::runtime {

size_t Profile::index(OpKind kind, bool float_path) {
  if (float_path) return kind == OpKind::Linear ? kOpKinds : kOpKinds + 1;
  return static_cast<size_t>(kind);
}

void Profile::add(OpKind kind, bool float_path, double seconds, double ops) {
  Entry& e = entries_[index(kind, float_path)];
  ++e.calls;
  e.seconds += seconds;
  e.ops += ops;
}

void Profile::print(std::FILE* out, const Accelerator& accel, const ProgramCache::Stats& cache,
                    int64_t arena_bytes) const {
  double total = 0.0;
  for (const Entry& e : entries_) total += e.seconds;
  std::fprintf(out, "%-15s %8s %10s %7s %9s  %s\n", "op", "calls", "ms", "share", "GOP/s", "backend");
  for (size_t k = 0; k < entries_.size(); ++k) {
    const Entry& e = entries_[k];
    if (e.calls == 0) continue;
    const bool float_path = k >= kOpKinds;
    const OpKind kind = float_path ? (k == kOpKinds ? OpKind::Linear : OpKind::Conv2d) : static_cast<OpKind>(k);
    const bool accelerated = !float_path && (kind == OpKind::Linear || kind == OpKind::Conv2d);
    const std::string name = std::string(op_name(kind)) + (float_path ? " f32" : "");
    std::fprintf(out, "%-15s %8lld %10.2f %6.1f%% ", name.c_str(), static_cast<long long>(e.calls), e.seconds * 1e3,
                 total > 0 ? 100.0 * e.seconds / total : 0.0);
    if (e.ops > 0 && e.seconds > 0) {
      std::fprintf(out, "%9.1f", e.ops / e.seconds / 1e9);
    } else {
      std::fprintf(out, "%9s", "");
    }
    std::fprintf(out, "  %s\n", accelerated ? accel.kernel().c_str() : float_path ? "oneDNN f32 matmul" : isa_level_name(isa_level()));
  }
  for (const auto& [backend, calls] : fallbacks_) {
    std::fprintf(out, "%lld matmuls the accelerator declined ran on %s\n", static_cast<long long>(calls), backend.c_str());
  }
  std::fprintf(out, "total %.2f ms; programs %zu (cache hits %llu, misses %llu, prepare %.2f ms); arena %s\n",
               total * 1e3, cache.programs, static_cast<unsigned long long>(cache.hits),
               static_cast<unsigned long long>(cache.misses), cache.prepare_seconds * 1e3,
               human_bytes(static_cast<uint64_t>(arena_bytes)).c_str());
}

namespace {

// "a [2, 4, 32, 32] input", "[2, 4, 32, 32], [2] and [2] inputs"
std::string describe_inputs(const Graph& graph) {
  std::string text;
  const size_t count = graph.inputs().size();
  for (size_t i = 0; i < count; ++i) {
    text += (i == 0 ? "" : i + 1 == count ? " and " : ", ") +
            shape_string(graph.values()[static_cast<size_t>(graph.inputs()[i])].shape);
  }
  return count == 1 ? "a " + text + " input" : text + " inputs";
}

}  // namespace

Executor::Executor(const Graph& graph, const Accelerator& accel, ProgramCache& cache, bool reuse_memory)
    : graph_(graph),
      accel_(accel),
      cache_(cache),
      plan_(plan_memory(graph, reuse_memory)),
      arena_reservation_(static_cast<uint64_t>(plan_.arena_bytes), "the activations of " + describe_inputs(graph)),
      arena_(static_cast<size_t>(plan_.arena_bytes)),
      quantized_(graph.values().size()),
      quantized_in_run_(graph.values().size(), -1),
      im2col_quantize_(kernels::im2col_quantize_kernel(isa_level())),
      transpose_(kernels::transpose_kernel(isa_level())),
      elementwise_(kernels::elementwise_kernels(isa_level())),
      rows_(kernels::row_kernels(isa_level())) {
  std::vector<int> last_read(graph.values().size(), -1);
  for (size_t i = 0; i < graph.nodes().size(); ++i) {
    const Node& node = graph.nodes()[i];
    quantize_only_.push_back(node.kind == OpKind::NormModulate && only_quantized_linears_read(node.output));
    if (node.kind == OpKind::Linear && node.weight) last_read[static_cast<size_t>(graph.root(node.inputs[0]))] = static_cast<int>(i);
  }
  quantized_last_read_.resize(graph.nodes().size());
  for (size_t root = 0; root < last_read.size(); ++root) {
    if (last_read[root] >= 0) quantized_last_read_[static_cast<size_t>(last_read[root])].push_back(static_cast<int>(root));
  }
}

bool Executor::only_quantized_linears_read(int value) const {
  for (int out : graph_.outputs()) {
    if (out == value) return false;
  }
  for (const Node& node : graph_.nodes()) {
    for (int in : node.inputs) {
      if (in == value && !(node.kind == OpKind::Linear && node.weight)) return false;
    }
  }
  return true;
}

std::pair<const Accelerator*, const PackedWeight*> Executor::backend_for(const MatmulShape& shape,
                                                                         const PackedWeight& weight) {
  if (accel_.supports(shape)) return {&accel_, &weight};
  for (const char* name : {"vnni", "ref"}) {
    auto& backend = fallbacks_[name];
    if (!backend) backend = make_accelerator(name);
    if (!backend || !backend->supports(shape)) continue;
    auto& packed = repacked_[{backend.get(), &weight}];
    if (!packed) packed = backend->pack(weight.source());
    profile_.add_fallback(std::string(backend->name()));
    return {backend.get(), packed.get()};
  }
  throw Error("no matmul backend accepts [" + std::to_string(shape.m) + ", " + std::to_string(shape.n) + ", " +
              std::to_string(shape.k) + "]");
}

void Executor::run_norm_modulate(const Node& node, const float* x, float* y) {
  const Value& in = graph_.values()[static_cast<size_t>(node.inputs[0])];
  const int64_t tokens = in.shape[1], cols = in.cols(), rows = in.rows();
  const float* scale = address(node.inputs[1]);
  const float* shift = address(node.inputs[2]);
  const int64_t scale_stride = graph_.values()[static_cast<size_t>(node.inputs[1])].stride();
  const int64_t shift_stride = graph_.values()[static_cast<size_t>(node.inputs[2])].stride();
  const size_t node_index = static_cast<size_t>(&node - graph_.nodes().data());
  QuantizedActivation* quantized = nullptr;
  if (quantize_only_[node_index]) {
    quantized = &quantized_slot(node.output);
    quantized->reset(rows, cols);
    quantized_in_run_[static_cast<size_t>(node.output)] = run_count_;
  }
  // Blocks of rows, not single rows: each kernel call has a fixed cost, and a
  // block of 16 rows (72 KiB at width 1152) still stays in cache between passes.
  constexpr int64_t kBlock = 16;
  const int64_t blocks = (rows + kBlock - 1) / kBlock;
#pragma omp parallel
  {
    std::vector<float> scratch(quantized ? static_cast<size_t>(kBlock * cols) : 0);
#pragma omp for schedule(static)
    for (int64_t block = 0; block < blocks; ++block) {
      const int64_t first = block * kBlock, count = std::min(kBlock, rows - first);
      float* out = quantized ? scratch.data() : y + first * cols;
      rows_.layer_norm(x + first * cols, nullptr, nullptr, node.eps, out, count, cols);
      for (int64_t r = 0; r < count;) {  // modulate runs of rows of one batch element
        const int64_t b = (first + r) / tokens, run = std::min(count - r, (b + 1) * tokens - first - r);
        elementwise_.modulate(out + r * cols, scale + b * scale_stride, shift + b * shift_stride, out + r * cols, run,
                              cols);
        r += run;
      }
      if (quantized) {
        for (int64_t r = 0; r < count; ++r) quantized->quantize_row(first + r, out + r * cols);
      }
    }
  }
}

float* Executor::address(int value) const {
  const int root = graph_.root(value);
  const int64_t offset = graph_.values()[static_cast<size_t>(value)].view_offset;
  if (graph_.values()[static_cast<size_t>(root)].producer < 0) {
    if (const float* constant = graph_.constant_data(root)) return const_cast<float*>(constant) + offset;
    for (size_t i = 0; i < graph_.inputs().size(); ++i) {
      if (graph_.inputs()[i] == root) return const_cast<float*>(inputs_[i]) + offset;
    }
  }
  return reinterpret_cast<float*>(const_cast<std::byte*>(arena_.data()) + plan_.offset[static_cast<size_t>(root)]) +
         offset;
}

const float* Executor::data(int value) const { return address(value); }

const QuantizedActivation& Executor::quantized(int value) {
  const int root = graph_.root(value);
  QuantizedActivation& slot = quantized_slot(root);
  if (quantized_in_run_[static_cast<size_t>(root)] != run_count_) {
    const Value& v = graph_.values()[static_cast<size_t>(value)];
    slot.quantize(address(value), v.rows(), v.cols(), v.cols());
    quantized_in_run_[static_cast<size_t>(root)] = run_count_;
  }
  return slot;
}

bool all_finite(const float* x, int64_t count) {
  bool finite = true;
  for (int64_t i = 0; i < count; ++i) finite &= std::isfinite(x[i]);
  return finite;
}

void Executor::bind(const std::vector<const float*>& inputs) {
  if (inputs.size() != graph_.inputs().size()) {
    throw Error("graph run with " + std::to_string(inputs.size()) + " inputs, the graph has " +
                std::to_string(graph_.inputs().size()));
  }
  inputs_ = inputs;
  ++run_count_;
}

void Executor::run(const std::vector<const float*>& inputs) {
  bind(inputs);
  for (const Node& node : graph_.nodes()) {
    if (cancel_ && cancel_->load(std::memory_order_relaxed)) throw Cancelled("cancelled");
    run_node(node);
  }
}

std::string Executor::locate_non_finite(const std::vector<const float*>& inputs) {
  bind(inputs);
  for (size_t i = 0; i < graph_.nodes().size(); ++i) {
    run_node(graph_.nodes()[i]);
    if (!output_finite(i)) return graph_.describe(i);
  }
  return {};
}

bool Executor::output_finite(size_t node_index) const {
  const int output = graph_.nodes()[node_index].output;
  if (quantize_only_[node_index]) {  // its floats were never stored: a NaN or Inf shows in the row scales
    const QuantizedActivation& q = *quantized_[static_cast<size_t>(output)];
    return all_finite(q.scales(), q.rows());
  }
  const Value& v = graph_.values()[static_cast<size_t>(output)];
  const float* data = address(output);
  for (int64_t r = 0; r < v.rows(); ++r) {
    if (!all_finite(data + r * v.stride(), v.cols())) return false;
  }
  return true;
}

void Executor::parallel_transpose(const float* in, int64_t ld_in, int64_t rows, int64_t cols, float* out,
                                  int64_t ld_out) const {
  // Whole 16-column blocks per thread, each a run of the output's rows.
  const int64_t blocks = (cols + 15) / 16;
  const int parts = static_cast<int>(rows * cols > 65536 ? std::min<int64_t>(omp_get_max_threads(), blocks) : 1);
#pragma omp parallel for schedule(static) num_threads(parts)
  for (int part = 0; part < parts; ++part) {
    const int64_t begin = blocks * part / parts * 16, end = std::min(cols, blocks * (part + 1) / parts * 16);
    transpose_(in + begin, ld_in, rows, end - begin, out + begin * ld_out, ld_out);
  }
}

double Executor::run_conv2d(const Node& node, const float* x, float* y) {
  const Value& in = graph_.values()[static_cast<size_t>(node.inputs[0])];
  const Value& out = graph_.values()[static_cast<size_t>(node.output)];
  const kernels::ConvGeometry g{in.shape[0],        in.shape[1],         in.shape[2],
                                in.shape[3],        node.window.kernel,  node.window.stride,
                                node.window.padding, out.shape[2],        out.shape[3]};
  const bool quantized = node.weight != nullptr;
  const int64_t k = quantized ? node.weight->k() : node.float_weight.k;
  const int64_t n = quantized ? node.weight->n() : node.float_weight.n;
  const int64_t plane = g.out_height * g.out_width, pixels = g.batch * plane;
  // Output pixels per chunk, the rows of one matmul: as many as keep the
  // chunk's im2col rows near 4 MiB, so that the matmul runs on a long M and
  // the scratch stays bounded however large the image.
  const int64_t row_bytes = k * (quantized ? 1 : static_cast<int64_t>(sizeof(float)));
  const int64_t chunk = std::min(pixels, std::clamp<int64_t>((int64_t{4} << 20) / row_bytes / 16 * 16, 256, 4096));
  if (!quantized) conv_rows_.resize(static_cast<size_t>(chunk * k));
  conv_out_.resize(static_cast<size_t>(chunk * n));
  const MatmulShape shape{chunk, n, k, {node.bias != nullptr}};
  const auto [accel, weight] = quantized ? backend_for(shape, *node.weight) : std::make_pair(&accel_, node.weight);
  const Program* program = quantized ? &cache_.get(*accel, shape) : nullptr;
  if (quantized) {
    conv_absmax_.resize(static_cast<size_t>(g.batch * g.height * g.width));
    kernels::conv_pixel_absmax(x, g, conv_absmax_.data());
  }
  for (int64_t first = 0; first < pixels; first += chunk) {
    const int64_t count = std::min(chunk, pixels - first);
    if (quantized) {
      // Quantized as gathered, in runs of 16 pixels (the kernel's vector) per thread.
      conv_x_.reset(count, k);
      const int64_t runs = (count + 15) / 16;
      const int parts = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), runs));
#pragma omp parallel for schedule(static) num_threads(parts)
      for (int part = 0; part < parts; ++part) {
        const int64_t begin = runs * part / parts * 16, end = std::min(count, runs * (part + 1) / parts * 16);
        im2col_quantize_(x, g, first + begin, end - begin, conv_absmax_.data(),
                         {conv_x_.mutable_data() + begin * conv_x_.stride(), conv_x_.stride(),
                          conv_x_.mutable_scales() + begin, conv_x_.mutable_row_sums() + begin});
      }
      accel->run(*program, {&conv_x_, weight, node.bias, conv_out_.data(), n});
    } else {
      kernels::im2col_rows(x, g, first, count, conv_rows_.data());
      kernels::f32_gemm_onednn(conv_rows_.data(), count, k, node.float_weight.data, n, node.bias, conv_out_.data(), n);
    }
    // [pixels, n] back to NCHW, one run of each image's pixels at a time (a
    // chunk spans at most a few images).
    for (int64_t i = 0; i < count;) {
      const int64_t b = (first + i) / plane, at = (first + i) % plane, run = std::min(count - i, plane - at);
      parallel_transpose(conv_out_.data() + i * n, n, run, n, y + b * n * plane + at, plane);
      i += run;
    }
  }
  return 2.0 * double(pixels) * double(n) * double(k);
}

void Executor::run_node(const Node& node) {
  if (node.kind == OpKind::View) return;
  const auto start = std::chrono::steady_clock::now();
  const Value& in = graph_.values()[static_cast<size_t>(node.inputs[0])];
  float* y = address(node.output);
  const float* x = address(node.inputs[0]);
  double ops = 0.0;
  switch (node.kind) {
    case OpKind::Linear: {
      if (!node.weight) {
        const FloatWeight& w = node.float_weight;
        kernels::f32_gemm_onednn(x, in.rows(), w.k, w.data, w.n, node.bias, y, w.n);
        if (node.activation != Activation::None) {
          elementwise_.unary(node.activation == Activation::GeluTanh ? kernels::Unary::GeluTanh : kernels::Unary::Silu,
                             y, y, in.rows() * w.n);
        }
        ops = 2.0 * double(in.rows()) * double(w.n) * double(w.k);
        break;
      }
      const QuantizedActivation& xq = quantized(node.inputs[0]);
      const bool residual = node.inputs.size() == 2;
      if (residual && plan_.in_place_of[static_cast<size_t>(node.output)] != node.inputs[1]) {
        std::copy_n(address(node.inputs[1]), graph_.values()[static_cast<size_t>(node.output)].numel(), y);
      }
      const MatmulShape shape{in.rows(), node.weight->n(), node.weight->k(), {node.bias != nullptr, node.activation, residual}};
      const auto [accel, weight] = backend_for(shape, *node.weight);
      accel->run(cache_.get(*accel, shape), {&xq, weight, node.bias, y, shape.n});
      ops = 2.0 * double(shape.m) * double(shape.n) * double(shape.k);
      break;
    }
    case OpKind::Conv2d:
      ops = run_conv2d(node, x, y);
      break;
    case OpKind::NormModulate:
      run_norm_modulate(node, x, y);
      break;
    case OpKind::GroupNorm:
      rows_.group_norm(x, node.gamma, node.beta, node.eps, node.silu, y, in.shape[0], in.shape[1],
                       in.numel() / in.shape[0] / in.shape[1], node.groups);
      break;
    case OpKind::Upsample:
      kernels::upsample_nearest_2x(x, y, in.shape[0] * in.shape[1], in.shape[2], in.shape[3]);
      break;
    case OpKind::Concat: {
      const Value& b = graph_.values()[static_cast<size_t>(node.inputs[1])];
      const int64_t a_size = in.numel() / in.shape[0], b_size = b.numel() / b.shape[0];
      const float* bx = address(node.inputs[1]);
      for (int64_t i = 0; i < in.shape[0]; ++i) {
        std::copy_n(x + i * a_size, a_size, y + i * (a_size + b_size));
        std::copy_n(bx + i * b_size, b_size, y + i * (a_size + b_size) + a_size);
      }
      break;
    }
    case OpKind::ChannelAdd: {
      const int64_t planes = in.shape[0] * in.shape[1], plane = in.shape[2] * in.shape[3];
      const float* v = address(node.inputs[1]);
      const int64_t v_stride = graph_.values()[static_cast<size_t>(node.inputs[1])].stride();
#pragma omp parallel for schedule(static) if (planes * plane > 65536)
      for (int64_t p = 0; p < planes; ++p) {
        const float value = v[p / in.shape[1] * v_stride + p % in.shape[1]];
        for (int64_t i = 0; i < plane; ++i) y[p * plane + i] = x[p * plane + i] + value;
      }
      break;
    }
    case OpKind::Geglu: {
      const int64_t rows = in.rows(), half = in.cols() / 2;
#pragma omp parallel for schedule(static) if (rows * half > 65536)
      for (int64_t r = 0; r < rows; ++r) {
        float* out = y + r * half;
        elementwise_.unary(kernels::Unary::GeluErf, x + r * in.cols() + half, out, half);
        elementwise_.binary(kernels::Binary::Mul, out, x + r * in.cols(), false, out, 1, half);
      }
      break;
    }
    case OpKind::LayerNorm:
      rows_.layer_norm(x, node.gamma, node.beta, node.eps, y, in.rows(), in.cols());
      break;
    case OpKind::RmsNorm:
      rows_.rms_norm(x, node.gamma, node.eps, y, in.rows(), in.cols());
      break;
    case OpKind::Softmax:
      rows_.softmax(x, y, in.rows(), in.cols());
      break;
    case OpKind::Attention: {
      const Value& k = graph_.values()[static_cast<size_t>(node.inputs[1])];
      const Value& v = graph_.values()[static_cast<size_t>(node.inputs[2])];
      const kernels::AttentionArgs args{.q = x, .k = address(node.inputs[1]), .v = address(node.inputs[2]), .out = y,
                                        .q_stride = in.stride(), .k_stride = k.stride(), .v_stride = v.stride(),
                                        .out_stride = in.cols(), .batch = in.shape[0], .q_tokens = in.shape[1],
                                        .kv_tokens = k.shape[1], .heads = node.heads,
                                        .head_dim = in.cols() / node.heads, .causal = node.causal};
      kernels::attention_kernel(isa_level(), node.attention_math)(args);
      ops = kernels::attention_flops(args);
      break;
    }
    case OpKind::Unary:
      elementwise_.unary(node.unary, x, y, in.numel());
      break;
    case OpKind::Binary: {
      const Value& b = graph_.values()[static_cast<size_t>(node.inputs[1])];
      elementwise_.binary(node.binary, x, address(node.inputs[1]), b.shape != in.shape, y, in.rows(), in.cols());
      break;
    }
    case OpKind::Modulate: {
      const int64_t batch = in.shape[0], tokens = in.shape[1], cols = in.cols();
      const float* scale = address(node.inputs[1]);
      const float* shift = address(node.inputs[2]);
      const int64_t scale_stride = graph_.values()[static_cast<size_t>(node.inputs[1])].stride();
      const int64_t shift_stride = graph_.values()[static_cast<size_t>(node.inputs[2])].stride();
      for (int64_t b = 0; b < batch; ++b) {
        elementwise_.modulate(x + b * tokens * cols, scale + b * scale_stride, shift + b * shift_stride,
                              y + b * tokens * cols, tokens, cols);
      }
      break;
    }
    case OpKind::GatedResidual: {
      const int64_t batch = in.shape[0], tokens = in.shape[1], cols = in.cols();
      const float* y_in = address(node.inputs[1]);
      const float* gate = address(node.inputs[2]);
      const int64_t gate_stride = graph_.values()[static_cast<size_t>(node.inputs[2])].stride();
      for (int64_t b = 0; b < batch; ++b) {
        elementwise_.gated_residual(x + b * tokens * cols, y_in + b * tokens * cols, gate + b * gate_stride,
                                    y + b * tokens * cols, tokens, cols);
      }
      break;
    }
    case OpKind::Patchify: {
      const int64_t channels = in.shape[1], plane = in.shape[2] * in.shape[3];
      if (node.patch == 1) {  // [channels, pixels] -> [pixels, channels] per image: a transpose (UNet's tokens)
        for (int64_t b = 0; b < in.shape[0]; ++b) {
          parallel_transpose(x + b * channels * plane, plane, channels, plane, y + b * channels * plane, channels);
        }
      } else {
        kernels::patchify(x, y, in.shape[0], channels, in.shape[2], in.shape[3], node.patch);
      }
      break;
    }
    case OpKind::Unpatchify: {
      const Value& image = graph_.values()[static_cast<size_t>(node.output)];
      const int64_t channels = image.shape[1], plane = image.shape[2] * image.shape[3];
      if (node.patch == 1) {
        for (int64_t b = 0; b < image.shape[0]; ++b) {
          parallel_transpose(x + b * channels * plane, channels, plane, channels, y + b * channels * plane, plane);
        }
      } else {
        kernels::unpatchify(x, y, image.shape[0], channels, image.shape[2], image.shape[3], node.patch);
      }
      break;
    }
    case OpKind::TimestepEmbedding:
      kernels::timestep_embedding(x, y, in.shape[0], graph_.values()[static_cast<size_t>(node.output)].cols(),
                                  node.frequency_shift);
      break;
    case OpKind::Embedding: {
      const int64_t cols = graph_.values()[static_cast<size_t>(node.output)].cols();
      for (int64_t b = 0; b < in.numel(); ++b) {
        const float id = x[b];
        if (!(id >= 0.0f && id < static_cast<float>(node.table_rows)) || id != std::floor(id)) {
          throw Error("embedding id " + std::to_string(id) + " is not a row of a table of " +
                      std::to_string(node.table_rows));
        }
        const size_t row_bytes = static_cast<size_t>(cols) * dtype_size(node.table.dtype);
        convert_to_f32(node.table.dtype, static_cast<const std::byte*>(node.table.data) + static_cast<size_t>(id) * row_bytes,
                       y + b * cols, static_cast<size_t>(cols));
      }
      break;
    }
    case OpKind::View:
      break;
  }
  const bool float_path = (node.kind == OpKind::Linear || node.kind == OpKind::Conv2d) && !node.weight;
  profile_.add(node.kind, float_path, seconds_since(start), ops);
  release_quantized(static_cast<size_t>(&node - graph_.nodes().data()));
}

QuantizedActivation& Executor::quantized_slot(int root) {
  auto& slot = quantized_[static_cast<size_t>(root)];
  if (!slot && !free_quantized_.empty()) {
    slot = std::move(free_quantized_.back());
    free_quantized_.pop_back();
  }
  if (!slot) slot = std::make_unique<QuantizedActivation>();
  return *slot;
}

void Executor::release_quantized(size_t node_index) {
  for (const int root : quantized_last_read_[node_index]) {
    auto& slot = quantized_[static_cast<size_t>(root)];
    if (slot) free_quantized_.push_back(std::move(slot));
    quantized_in_run_[static_cast<size_t>(root)] = -1;
  }
}

}  // namespace tiledraw::runtime
