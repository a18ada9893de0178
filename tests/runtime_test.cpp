// The graph, the memory planner and the executor.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "kernels/layout/layout.h"
#include "runtime/executor.h"
#include "test_util.h"
#include "tiledraw/error.h"
#include "tiledraw/quant8s.h"

namespace tiledraw::runtime {
namespace {

using kernels::Binary;
using kernels::Unary;

struct Weight {
  std::vector<int8_t> q;
  std::vector<float> scale, bias;
  std::unique_ptr<PackedWeight> packed;
};

Weight make_weight(const Accelerator& accel, int64_t n, int64_t k, uint32_t seed) {
  Weight w;
  const std::vector<float> f = test::random_floats(static_cast<size_t>(n * k), seed, 1.0f / std::sqrt(float(k)));
  w.q.resize(f.size());
  w.scale.resize(static_cast<size_t>(n));
  quantize_rows_8bit_s(f.data(), static_cast<size_t>(n), static_cast<size_t>(k), w.q.data(), w.scale.data());
  w.bias = test::random_floats(static_cast<size_t>(n), seed + 1, 0.1f);
  w.packed = accel.pack({w.q.data(), w.scale.data(), n, k});
  return w;
}

// Lifetimes computed here, independently of the planner: first producer to last reader.
std::vector<std::pair<int, int>> lifetimes(const Graph& g) {
  std::vector<std::pair<int, int>> life(g.values().size());
  for (size_t v = 0; v < g.values().size(); ++v) life[v] = {g.values()[v].producer, g.values()[v].producer};
  for (size_t n = 0; n < g.nodes().size(); ++n) {
    for (int in : g.nodes()[n].inputs) life[static_cast<size_t>(g.root(in))].second = std::max<int>(life[static_cast<size_t>(g.root(in))].second, static_cast<int>(n));
  }
  for (int out : g.outputs()) life[static_cast<size_t>(g.root(out))].second = static_cast<int>(g.nodes().size());
  return life;
}

TEST(Planner, RandomGraphsNeverOverlapLiveValuesAndMatchFreshAllocations) {
  const auto accel = make_accelerator("ref");
  std::mt19937 rng(2026);
  std::vector<Weight> weights;
  const std::vector<int64_t> widths = {8, 24, 40};
  for (int64_t n : widths) {
    for (int64_t k : widths) weights.push_back(make_weight(*accel, n, k, static_cast<uint32_t>(n * 100 + k)));
  }
  int in_place = 0;
  for (int trial = 0; trial < 30; ++trial) {
    Graph g;
    const int64_t rows = 1 + trial % 7;
    std::vector<int> values = {g.input({rows, 24})};
    const int steps = 15 + trial;
    for (int s = 0; s < steps; ++s) {
      const int a = values[std::uniform_int_distribution<size_t>(0, values.size() - 1)(rng)];
      const int64_t width = g.values()[static_cast<size_t>(a)].cols();
      switch (std::uniform_int_distribution<int>(0, 5)(rng)) {
        case 5: {  // a linear with a residual of its output's width, when one exists
          std::vector<int> residuals;
          for (int v : values) {
            if (g.values()[static_cast<size_t>(v)].shape == std::vector<int64_t>{rows, width}) residuals.push_back(v);
          }
          const Weight& w = weights[static_cast<size_t>(std::find(widths.begin(), widths.end(), width) - widths.begin()) * 4];
          const int r = residuals[std::uniform_int_distribution<size_t>(0, residuals.size() - 1)(rng)];
          values.push_back(g.linear_residual(a, *w.packed, w.bias.data(), r));
          break;
        }
        case 0: {
          const int64_t n = widths[std::uniform_int_distribution<size_t>(0, 2)(rng)];
          const Weight& w = weights[static_cast<size_t>(std::find(widths.begin(), widths.end(), n) - widths.begin()) * 3 +
                                    static_cast<size_t>(std::find(widths.begin(), widths.end(), width) - widths.begin())];
          values.push_back(g.linear(a, *w.packed, w.bias.data(), Activation::GeluTanh));
          break;
        }
        case 1:
          values.push_back(g.unary(Unary::Silu, a));
          break;
        case 2:
          values.push_back(g.layer_norm(a, nullptr, nullptr, 1e-6f));
          break;
        default: {
          std::vector<int> same;
          for (int v : values) {
            if (g.values()[static_cast<size_t>(v)].shape == g.values()[static_cast<size_t>(a)].shape) same.push_back(v);
          }
          const int b = same[std::uniform_int_distribution<size_t>(0, same.size() - 1)(rng)];
          values.push_back(g.binary(s % 2 ? Binary::Add : Binary::Mul, a, b));
        }
      }
    }
    for (size_t i = values.size() - 3; i < values.size(); ++i) g.output(values[i]);
    g.output(values[values.size() / 2]);

    const MemoryPlan plan = plan_memory(g);
    const auto life = lifetimes(g);
    // An output written over its residual: the residual must have no reader after that linear.
    const auto took_over = [&](size_t later, size_t earlier) {
      for (int v = static_cast<int>(later); v >= 0; v = plan.in_place_of[static_cast<size_t>(v)]) {
        if (static_cast<size_t>(v) == earlier) return true;
      }
      return false;
    };
    for (size_t o = 0; o < g.values().size(); ++o) {
      const int r = plan.in_place_of[o];
      if (r < 0) continue;
      ++in_place;
      ASSERT_EQ(life[static_cast<size_t>(r)].second, g.values()[o].producer) << "residual " << r << " is read after it is overwritten";
    }
    for (size_t a = 0; a < g.values().size(); ++a) {
      for (size_t b = a + 1; b < g.values().size(); ++b) {
        const Value &va = g.values()[a], &vb = g.values()[b];
        if (va.producer < 0 || vb.producer < 0 || va.view_of >= 0 || vb.view_of >= 0 || took_over(b, a)) continue;
        const bool alive_together = life[a].first <= life[b].second && life[b].first <= life[a].second;
        const bool share_bytes = plan.offset[a] < plan.offset[b] + vb.bytes() && plan.offset[b] < plan.offset[a] + va.bytes();
        ASSERT_FALSE(alive_together && share_bytes) << "trial " << trial << ": values " << a << " and " << b;
      }
    }
    EXPECT_LE(plan.arena_bytes, plan.no_reuse_bytes);

    const std::vector<float> x = test::random_floats(static_cast<size_t>(rows * 24), static_cast<uint32_t>(trial));
    ProgramCache cache;
    Executor reused(g, *accel, cache, true), fresh(g, *accel, cache, false);
    reused.run({x.data()});
    fresh.run({x.data()});
    for (int out : g.outputs()) {
      const int64_t n = g.values()[static_cast<size_t>(out)].numel();
      ASSERT_EQ(std::vector<float>(reused.data(out), reused.data(out) + n), std::vector<float>(fresh.data(out), fresh.data(out) + n))
          << "trial " << trial << " output " << out;
    }
  }
  EXPECT_GT(in_place, 0) << "no residual was ever overwritten in place: that path went untested";
}

TEST(Graph, RefusesShapesThatDoNotFit) {
  const auto accel = make_accelerator("ref");
  const Weight w = make_weight(*accel, 8, 16, 1);
  Graph g;
  const int x = g.input({2, 3, 24});
  EXPECT_THAT([&] { g.linear(x, *w.packed, nullptr); }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr("linear of [2, 3, 24] by a weight [8, 16]")));
  EXPECT_THROW(g.binary(Binary::Add, x, g.input({3, 24})), Error);
  EXPECT_THROW(g.reshape(x, {5, 24}), Error);
  EXPECT_THROW(g.modulate(x, g.input({2, 23}), g.input({2, 24})), Error);
  EXPECT_THROW(g.input({2, 0}), Error);
}

TEST(Graph, SliceTakesTheLastDimensionOfAnyRankAsAView) {
  Graph g;
  const int x = g.input({2, 3, 24});
  const int s = g.slice(x, 8, 16);
  const Value& view = g.values()[static_cast<size_t>(s)];
  EXPECT_EQ(view.shape, (std::vector<int64_t>{2, 3, 16}));
  EXPECT_EQ(view.view_offset, 8);
  EXPECT_EQ(view.stride(), 24);
  EXPECT_EQ(view.rows(), 6);
  EXPECT_FALSE(view.contiguous());
  const int inner = g.slice(s, 4, 8);  // a slice of a slice: offsets add, the stride stays the root's
  EXPECT_EQ(g.values()[static_cast<size_t>(inner)].shape, (std::vector<int64_t>{2, 3, 8}));
  EXPECT_EQ(g.values()[static_cast<size_t>(inner)].view_offset, 12);
  EXPECT_EQ(g.values()[static_cast<size_t>(inner)].stride(), 24);
  EXPECT_EQ(g.root(inner), x);
  const std::vector<int> parts = g.chunk(g.input({4, 5, 6, 12}), 3);
  EXPECT_EQ(g.values()[static_cast<size_t>(parts[2])].shape, (std::vector<int64_t>{4, 5, 6, 4}));
  EXPECT_EQ(g.values()[static_cast<size_t>(parts[2])].view_offset, 8);
  EXPECT_THAT([&] { g.slice(x, 20, 8); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("cannot take [20, 28) of the last dimension of [2, 3, 24]")));
  EXPECT_THROW(g.reshape(s, {6, 16}), Error);
}

TEST(Planner, AViewKeepsItsRootAliveUntilItsLastReader) {
  const auto accel = make_accelerator("ref");
  Graph g;
  const int x = g.input({1, 8, 24});
  const int packed = g.unary(Unary::Silu, x);  // read only through its slices, by the last op
  const int q = g.slice(packed, 0, 8), k = g.slice(packed, 8, 8), v = g.slice(packed, 16, 8);
  const int between = g.unary(Unary::GeluTanh, x);  // made after the slices, before their reader
  const int later = g.layer_norm(between, nullptr, nullptr, 1e-6f);
  g.output(g.attention(q, k, v, 2));
  g.output(later);
  const MemoryPlan plan = plan_memory(g);
  const auto share_bytes = [&](int a, int b) {
    const int64_t a_end = plan.offset[static_cast<size_t>(a)] + g.values()[static_cast<size_t>(a)].bytes();
    const int64_t b_end = plan.offset[static_cast<size_t>(b)] + g.values()[static_cast<size_t>(b)].bytes();
    return plan.offset[static_cast<size_t>(a)] < b_end && plan.offset[static_cast<size_t>(b)] < a_end;
  };
  EXPECT_FALSE(share_bytes(packed, between));
  EXPECT_FALSE(share_bytes(packed, later));
  EXPECT_EQ(plan.offset[static_cast<size_t>(k)], plan.offset[static_cast<size_t>(packed)]) << "a view has its root's memory";

  const auto in = test::random_floats(8 * 24, 4);
  ProgramCache cache;
  Executor reused(g, *accel, cache, true), fresh(g, *accel, cache, false);
  reused.run({in.data()});
  fresh.run({in.data()});
  for (int out : g.outputs()) {
    const int64_t n = g.values()[static_cast<size_t>(out)].numel();
    EXPECT_EQ(std::vector<float>(reused.data(out), reused.data(out) + n), std::vector<float>(fresh.data(out), fresh.data(out) + n));
  }
}

// A DiT-style MLP half-block: modulated layer norm, MLP with GELU, residual.
struct Block {
  int64_t width = 48, hidden = 192;
  Weight fc1, fc2;
  Block(const Accelerator& accel) : fc1(make_weight(accel, 192, 48, 11)), fc2(make_weight(accel, 48, 192, 12)) {}

  Graph build(int64_t batch, int64_t tokens) const {
    Graph g;
    const int x = g.input({batch, tokens, width});
    const int scale = g.input({batch, width});
    const int shift = g.input({batch, width});
    const int h = g.modulate(g.layer_norm(x, nullptr, nullptr, 1e-6f), scale, shift);
    const int m = g.linear(g.linear(h, *fc1.packed, fc1.bias.data(), Activation::GeluTanh), *fc2.packed, fc2.bias.data());
    g.output(g.binary(Binary::Add, x, m));
    return g;
  }

  // The same block in plain loops, double precision, from the float weights' 8-bit S values.
  std::vector<float> reference(const std::vector<float>& x, const std::vector<float>& scale,
                               const std::vector<float>& shift, int64_t batch, int64_t tokens) const {
    std::vector<float> out(x.size());
    const auto linear = [](const Weight& w, const std::vector<double>& in, int64_t n, int64_t k) {
      float absmax = 0;
      for (double v : in) absmax = std::max(absmax, std::abs(float(v)));
      std::vector<float> row(in.begin(), in.end());
      std::vector<int8_t> q(static_cast<size_t>(k));
      float sx;
      quantize_rows_8bit_s(row.data(), 1, static_cast<size_t>(k), q.data(), &sx);
      std::vector<double> y(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j) {
        int64_t sum = 0;
        for (int64_t i = 0; i < k; ++i) sum += int64_t{q[i]} * w.q[static_cast<size_t>(j * k + i)];
        y[j] = double(sum) * sx * w.scale[j] + w.bias[j];
      }
      return y;
    };
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t t = 0; t < tokens; ++t) {
        const float* in = &x[static_cast<size_t>((b * tokens + t) * width)];
        double mean = 0, var = 0;
        for (int64_t c = 0; c < width; ++c) mean += in[c];
        mean /= width;
        for (int64_t c = 0; c < width; ++c) var += (in[c] - mean) * (in[c] - mean);
        std::vector<double> h(static_cast<size_t>(width));
        for (int64_t c = 0; c < width; ++c) {
          const double normed = float((in[c] - mean) / std::sqrt(var / width + 1e-6));
          h[c] = float(normed * (1.0f + scale[b * width + c]) + shift[b * width + c]);
        }
        std::vector<double> m = linear(fc1, h, hidden, width);
        for (double& v : m) v = 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
        const std::vector<double> y = linear(fc2, m, width, hidden);
        for (int64_t c = 0; c < width; ++c) out[static_cast<size_t>((b * tokens + t) * width + c)] = float(in[c] + y[c]);
      }
    }
    return out;
  }
};

TEST(Executor, RunsOneBlockAtThreeShapesWithTheSameWeights) {
  std::string why;
  const auto accel = make_accelerator("auto", &why);
  const Block block(*accel);
  ProgramCache cache;
  for (const auto& [batch, tokens] : std::vector<std::pair<int64_t, int64_t>>{{1, 16}, {2, 37}, {2, 256}}) {
    const Graph g = block.build(batch, tokens);
    const auto x = test::random_floats(static_cast<size_t>(batch * tokens * block.width), 1);
    const auto scale = test::random_floats(static_cast<size_t>(batch * block.width), 2, 0.1f);
    const auto shift = test::random_floats(static_cast<size_t>(batch * block.width), 3, 0.1f);
    Executor exec(g, *accel, cache);
    exec.run({x.data(), scale.data(), shift.data()});
    const std::vector<float> expected = block.reference(x, scale, shift, batch, tokens);
    const float* y = exec.data(g.outputs()[0]);
    for (size_t i = 0; i < expected.size(); ++i) {
      // The reference rounds as the kernels do at each quantization; a one-step
      // difference in a quantized value moves y by about a scale, 1e-3 here.
      ASSERT_NEAR(y[i], expected[i], 2e-3 * (1 + std::abs(expected[i]))) << "batch " << batch << " tokens " << tokens << " at " << i;
    }
    EXPECT_LT(exec.plan().arena_bytes, exec.plan().no_reuse_bytes);
  }
}

TEST(Executor, AttentionInAGraphMatchesTheOracleAndViewsCostNothing) {
  const auto accel = make_accelerator("ref");
  Graph g;
  const int flat = g.input({2 * 33, 3 * 4 * 8});
  const int qkv = g.reshape(flat, {2, 33, 3 * 4 * 8});
  g.output(g.attention(qkv, 4));
  EXPECT_THROW(g.attention(qkv, 5), Error);
  ProgramCache cache;
  Executor exec(g, *accel, cache);
  EXPECT_EQ(exec.plan().arena_bytes, 2 * 33 * 32 * 4) << "the reshape and slices share the input's memory; only the output is new";
  const auto x = test::random_floats(2 * 33 * 96, 8);
  exec.run({x.data()});
  std::vector<float> expected(2 * 33 * 32);
  kernels::f32_attention__scalar({.q = x.data(), .k = x.data() + 32, .v = x.data() + 64, .out = expected.data(),
                                  .q_stride = 96, .k_stride = 96, .v_stride = 96, .out_stride = 32, .batch = 2,
                                  .q_tokens = 33, .kv_tokens = 33, .heads = 4, .head_dim = 8});
  const float* y = exec.data(g.outputs()[0]);
  for (size_t i = 0; i < expected.size(); ++i) ASSERT_NEAR(y[i], expected[i], 2e-5 * (1 + std::abs(expected[i])));
}

// Queries from one value, keys and values sliced from another (a stacked k/v
// projection of a text context), with and without the causal mask.
TEST(Executor, CrossAttentionBetweenTwoGraphValuesMatchesTheOracle) {
  const auto accel = make_accelerator("ref");
  const int64_t batch = 2, queries = 9, keys = 5, heads = 4, dim = 8, width = heads * dim;
  Graph g;
  const int x = g.input({batch, queries, width});
  const int context = g.input({batch, keys, 2 * width});
  const int k = g.slice(context, 0, width), v = g.slice(context, width, width);
  g.output(g.attention(x, k, v, heads));
  g.output(g.attention(x, k, v, heads, kernels::AttentionMath::F32, true));
  ProgramCache cache;
  Executor exec(g, *accel, cache);
  EXPECT_EQ(exec.plan().arena_bytes, 2 * batch * queries * width * 4) << "the slices are views: only the outputs are new";
  const auto q_data = test::random_floats(static_cast<size_t>(batch * queries * width), 1);
  const auto kv_data = test::random_floats(static_cast<size_t>(batch * keys * 2 * width), 2);
  exec.run({q_data.data(), kv_data.data()});
  for (const bool causal : {false, true}) {
    std::vector<float> expected(static_cast<size_t>(batch * queries * width));
    kernels::f32_attention__scalar({.q = q_data.data(), .k = kv_data.data(), .v = kv_data.data() + width,
                                    .out = expected.data(), .q_stride = width, .k_stride = 2 * width,
                                    .v_stride = 2 * width, .out_stride = width, .batch = batch, .q_tokens = queries,
                                    .kv_tokens = keys, .heads = heads, .head_dim = dim, .causal = causal});
    const float* y = exec.data(g.outputs()[causal ? 1 : 0]);
    for (size_t i = 0; i < expected.size(); ++i) {
      ASSERT_NEAR(y[i], expected[i], 2e-5 * (1 + std::abs(expected[i]))) << (causal ? "causal " : "") << "at " << i;
    }
  }
  // 4 FLOPs per head dimension of each (query, visible key): 9 x 5 pairs, then
  // 1 + 2 + 3 + 4 + 5 + 4 x 5 = 35 under the mask.
  EXPECT_EQ(exec.profile().at(OpKind::Attention).ops, 4.0 * batch * heads * dim * (9 * 5 + 35));

}

TEST(Graph, AttentionRefusesOperandsThatDoNotFit) {
  Graph g;
  const int q = g.input({2, 9, 32});
  const int context = g.input({2, 5, 64});
  const int k = g.slice(context, 0, 32), v = g.slice(context, 32, 32);
  const auto refuses = [&](const std::function<void()>& build, const std::string& message) {
    EXPECT_THAT(build, ::testing::ThrowsMessage<Error>(::testing::HasSubstr(message)));
  };
  refuses([&] { g.attention(q, k, g.input({2, 6, 32}), 4); },
          "attention needs q [batch, q_tokens, heads * head_dim] and k, v [batch, kv_tokens, heads * head_dim], got "
          "q [2, 9, 32], k [2, 5, 32], v [2, 6, 32] with 4 heads");
  refuses([&] { g.attention(q, g.input({1, 5, 32}), g.input({1, 5, 32}), 4); }, "k [1, 5, 32]");
  refuses([&] { g.attention(q, k, v, 5); }, "with 5 heads");
  refuses([&] { g.attention(g.input({9, 32}), k, v, 4); }, "q [9, 32]");
  refuses([&] { g.layer_norm(k, nullptr, nullptr, 1e-6f); }, "layer_norm needs a contiguous input, got a slice");
}

// The packed-qkv convenience is the three-slice call, so the same bits, in
// either kind of arithmetic.
TEST(Executor, PackedQkvAttentionEqualsTheThreeSliceCallBitForBit) {
  const auto accel = make_accelerator("ref");
  const int64_t heads = 3, width = heads * 24;
  const auto qkv_data = test::random_floats(2 * 70 * 3 * width, 5);
  for (const auto math : {kernels::AttentionMath::F32, kernels::AttentionMath::Bf16Products}) {
    Graph packed, sliced;
    packed.output(packed.attention(packed.input({2, 70, 3 * width}), heads, math));
    const int qkv = sliced.input({2, 70, 3 * width});
    sliced.output(sliced.attention(sliced.slice(qkv, 0, width), sliced.slice(qkv, width, width),
                                   sliced.slice(qkv, 2 * width, width), heads, math));
    ProgramCache cache;
    Executor a(packed, *accel, cache), b(sliced, *accel, cache);
    a.run({qkv_data.data()});
    b.run({qkv_data.data()});
    const float* ya = a.data(packed.outputs()[0]);
    const float* yb = b.data(sliced.outputs()[0]);
    EXPECT_EQ(std::vector<float>(ya, ya + 2 * 70 * width), std::vector<float>(yb, yb + 2 * 70 * width));
  }
}

TEST(Executor, ProfilePrintsATableByOp) {
  const auto accel = make_accelerator("ref");
  const Block block(*accel);
  const Graph g = block.build(1, 8);
  ProgramCache cache;
  Executor exec(g, *accel, cache);
  const auto x = test::random_floats(8 * 48, 1), s = test::random_floats(48, 2);
  exec.run({x.data(), s.data(), s.data()});
  exec.run({x.data(), s.data(), s.data()});
  EXPECT_EQ(exec.profile().at(OpKind::Linear).calls, 4);
  EXPECT_EQ(exec.profile().at(OpKind::Linear).ops, 2 * 2.0 * 8 * (192 * 48 + 48 * 192));
  char* text = nullptr;
  size_t size = 0;
  std::FILE* out = open_memstream(&text, &size);
  exec.profile().print(out, *accel, cache.stats(), exec.plan().arena_bytes);
  std::fclose(out);
  const std::string table(text, size);
  std::free(text);
  EXPECT_THAT(table, ::testing::HasSubstr("linear"));
  EXPECT_THAT(table, ::testing::HasSubstr("layer_norm"));
  EXPECT_THAT(table, ::testing::HasSubstr("cache hits 2, misses 2"));
  EXPECT_THAT(table, ::testing::HasSubstr("arena"));
}

}  // namespace
}  // namespace tiledraw::runtime

namespace tiledraw::runtime {
namespace {

// Every ISA's transpose against its definition, at sizes that leave partial
// 16 x 16 blocks on both edges, between padded leading dimensions.
TEST(LayoutOps, TransposeMovesEveryElementAtEveryIsa) {
  for (const IsaLevel level : {IsaLevel::Scalar, IsaLevel::Avx2, IsaLevel::Avx512}) {
    if (level > isa_level()) continue;
    const kernels::TransposeFn transpose = kernels::transpose_kernel(level);
    for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {16, 16}, {37, 21}, {5, 70}, {64, 3}}) {
      const int64_t ld_in = cols + 3, ld_out = rows + 5;
      std::vector<float> in(static_cast<size_t>(rows * ld_in));
      for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i);
      std::vector<float> out(static_cast<size_t>(cols * ld_out), -1.0f);
      transpose(in.data(), ld_in, rows, cols, out.data(), ld_out);
      for (int64_t c = 0; c < cols; ++c) {
        for (int64_t r = 0; r < ld_out; ++r) {
          const float expected = r < rows ? in[static_cast<size_t>(r * ld_in + c)] : -1.0f;  // padding untouched
          ASSERT_EQ(out[static_cast<size_t>(c * ld_out + r)], expected)
              << isa_level_name(level) << " " << rows << " x " << cols << " at " << c << ", " << r;
        }
      }
    }
  }
}

TEST(LayoutOps, PatchifyAndUnpatchifyFollowDitsOrder) {
  const auto accel = make_accelerator("ref");
  Graph g;
  const int image = g.input({1, 2, 4, 4});
  const int patches = g.patchify(image, 2);
  g.output(patches);
  const int tokens = g.input({1, 4, 8});
  g.output(g.unpatchify(tokens, 2, 4, 4, 2));
  EXPECT_EQ(g.values()[static_cast<size_t>(patches)].shape, (std::vector<int64_t>{1, 4, 8}));
  EXPECT_THROW(g.patchify(image, 3), Error);
  EXPECT_THROW(g.unpatchify(tokens, 3, 4, 4, 2), Error);

  std::vector<float> pixels(32), token_values(32);
  for (int c = 0; c < 2; ++c)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x) pixels[static_cast<size_t>(c * 16 + y * 4 + x)] = float(c * 100 + y * 10 + x);
  // token t, position (y, x) in the patch, channel c: t * 1000 + y * 100 + x * 10 + c
  for (int t = 0; t < 4; ++t)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 2; ++x)
        for (int c = 0; c < 2; ++c) token_values[static_cast<size_t>(t * 8 + (y * 2 + x) * 2 + c)] = float(t * 1000 + y * 100 + x * 10 + c);
  ProgramCache cache;
  Executor exec(g, *accel, cache);
  exec.run({pixels.data(), token_values.data()});
  const float* p = exec.data(g.outputs()[0]);
  // Token 1 is the patch at row 0, column 1: channel 0's 2x2 block, then channel 1's.
  EXPECT_EQ(std::vector<float>(p + 8, p + 16), (std::vector<float>{2, 3, 12, 13, 102, 103, 112, 113}));
  const float* img = exec.data(g.outputs()[1]);
  // Pixel (channel 1, row 3, column 2) is token 3 (row 1, column 1), position (1, 0).
  EXPECT_EQ(img[1 * 16 + 3 * 4 + 2], 3 * 1000 + 1 * 100 + 0 * 10 + 1);
  EXPECT_EQ(img[0 * 16 + 0 * 4 + 1], 0 * 1000 + 0 * 100 + 1 * 10 + 0);
}

TEST(LayoutOps, PerChannelAddAndGegluComputedByHand) {
  const auto accel = make_accelerator("ref");
  Graph g;
  const int x = g.input({2, 2, 1, 2});  // 2 images, 2 channels of 1 x 2 pixels
  const int v = g.input({2, 3});        // its first 2 columns are the per-channel values (a slice)
  g.output(g.add_per_channel(x, g.slice(v, 0, 2)));
  const int gate_in = g.input({1, 2, 4});
  g.output(g.geglu(gate_in));
  ProgramCache cache;
  Executor exec(g, *accel, cache);
  const std::vector<float> pixels = {1, 2, 3, 4, 5, 6, 7, 8}, values = {10, 20, -1, 30, 40, -1};
  // rows [a0 a1 | g0 g1]: a * gelu(g); gelu(0) = 0, gelu(1) = 0.841345, gelu(-1) = -0.158655, gelu(2) = 1.954500
  const std::vector<float> geglu_in = {3, 5, 0, 1, -2, 4, -1, 2};
  exec.run({pixels.data(), values.data(), geglu_in.data()});
  const float* added = exec.data(g.outputs()[0]);
  EXPECT_EQ(std::vector<float>(added, added + 8), (std::vector<float>{11, 12, 23, 24, 35, 36, 47, 48}));
  const float* gated = exec.data(g.outputs()[1]);
  const std::vector<float> expected = {0.0f, 5 * 0.8413447f, -2 * -0.1586553f, 4 * 1.9544997f};
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(gated[i], expected[i], 1e-5) << i;
  EXPECT_THAT([&] { g.add_per_channel(x, v); }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr("cannot add [2, 3]")));
}

TEST(LayoutOps, TimestepEmbeddingAndEmbeddingLookup) {
  const auto accel = make_accelerator("ref");
  const std::vector<float> table = {0, 1, 10, 11, 20, 21};  // 3 rows of 2
  Graph g;
  const int t = g.input({2});
  g.output(g.timestep_embedding(t, 5));
  const int ids = g.input({2});
  g.output(g.embedding(ids, {table.data(), DType::F32}, 3, 2));
  ProgramCache cache;
  Executor exec(g, *accel, cache);
  const std::vector<float> steps = {0.0f, 1.0f}, labels = {2.0f, 0.0f};
  exec.run({steps.data(), labels.data()});
  const float* e = exec.data(g.outputs()[0]);
  // half = 2, freqs = [1, 10000^-1/2 = 0.01]; then a zero column for the odd size.
  EXPECT_EQ(std::vector<float>(e, e + 5), (std::vector<float>{1, 1, 0, 0, 0}));
  EXPECT_NEAR(e[5], std::cos(1.0f), 1e-7);
  EXPECT_NEAR(e[6], std::cos(0.01f), 1e-7);
  EXPECT_NEAR(e[7], std::sin(1.0f), 1e-7);
  EXPECT_NEAR(e[8], std::sin(0.01f), 1e-7);
  EXPECT_EQ(e[9], 0.0f);
  const float* rows = exec.data(g.outputs()[1]);
  EXPECT_EQ(std::vector<float>(rows, rows + 4), (std::vector<float>{20, 21, 0, 1}));
  // Ids of any shape: [2, 3] ids give [2, 3, 2] rows; an F16 table's rows
  // are converted as they are looked up.
  std::vector<uint16_t> table_f16;
  for (float v : table) table_f16.push_back(float_to_half(v));
  Graph tokens;
  const int token_ids = tokens.input({2, 3});
  const int looked_up = tokens.embedding(token_ids, {table_f16.data(), DType::F16}, 3, 2);
  EXPECT_EQ(tokens.values()[static_cast<size_t>(looked_up)].shape, (std::vector<int64_t>{2, 3, 2}));
  tokens.output(looked_up);
  Executor token_exec(tokens, *accel, cache);
  const std::vector<float> token_values = {0, 2, 1, 1, 1, 0};
  token_exec.run({token_values.data()});
  const float* token_rows = token_exec.data(looked_up);
  EXPECT_EQ(std::vector<float>(token_rows, token_rows + 12), (std::vector<float>{0, 1, 20, 21, 10, 11, 10, 11, 10, 11, 0, 1}));
  for (const std::vector<float>& bad : {std::vector<float>{3.0f, 0.0f}, std::vector<float>{1.5f, 0.0f}, std::vector<float>{-1.0f, 0.0f}}) {
    EXPECT_THAT([&] { exec.run({steps.data(), bad.data()}); },
                ::testing::ThrowsMessage<Error>(::testing::HasSubstr("is not a row of a table of 3")));
  }
}

}  // namespace
}  // namespace tiledraw::runtime

namespace tiledraw::runtime {
namespace {

TEST(Conv2d, MatchesADirectConvolutionAtEveryStrideAndPadding) {
  const auto accel = make_accelerator("auto");
  struct Case {
    int64_t batch, in, height, width, out, kernel, stride, padding, padding_after;
  };
  for (const Case& c : {Case{2, 3, 7, 5, 17, 3, 1, 1, 1}, Case{1, 4, 9, 8, 8, 3, 2, 1, 1}, Case{2, 6, 5, 5, 5, 1, 1, 0, 0},
                        Case{1, 8, 20, 30, 16, 3, 1, 1, 1}, Case{1, 2, 6, 6, 3, 3, 2, 0, 0},
                        // more channels than im2col takes at once; blocks of 256 pixels that straddle images
                        Case{2, 37, 15, 13, 9, 3, 1, 1, 1},
                        // the VAE encoder's down-sampling: padded after only
                        Case{2, 5, 8, 6, 7, 3, 2, 0, 1}}) {
    const int64_t k = c.in * c.kernel * c.kernel;
    // Weights as PyTorch holds them, [out][in][ky][kx], quantized per output channel.
    const std::vector<float> w = test::random_floats(static_cast<size_t>(c.out * k), 5, 0.3f);
    std::vector<int8_t> q(w.size());
    std::vector<float> scale(static_cast<size_t>(c.out));
    quantize_rows_8bit_s(w.data(), static_cast<size_t>(c.out), static_cast<size_t>(k), q.data(), scale.data());
    const std::vector<float> bias = test::random_floats(static_cast<size_t>(c.out), 6);
    const auto packed = accel->pack({q.data(), scale.data(), c.out, k});
    Graph g;
    const int x_in = g.input({c.batch, c.in, c.height, c.width});
    const int y_out = g.conv2d(x_in, *packed, bias.data(), ConvWindow{c.kernel, c.stride, c.padding, c.padding_after});
    g.output(y_out);
    const std::vector<int64_t>& shape = g.values()[static_cast<size_t>(y_out)].shape;
    const int64_t oh = (c.height + c.padding + c.padding_after - c.kernel) / c.stride + 1;
    const int64_t ow = (c.width + c.padding + c.padding_after - c.kernel) / c.stride + 1;
    ASSERT_EQ(shape, (std::vector<int64_t>{c.batch, c.out, oh, ow}));
    const auto x = test::random_floats(static_cast<size_t>(c.batch * c.in * c.height * c.width), 7);
    ProgramCache cache;
    Executor exec(g, *accel, cache);
    exec.run({x.data()});
    const float* y = exec.data(y_out);

    double worst_float = 0, largest = 0;
    for (int64_t b = 0; b < c.batch; ++b) {
      for (int64_t oy = 0; oy < oh; ++oy) {
        for (int64_t ox = 0; ox < ow; ++ox) {
          std::vector<float> window;  // this pixel's inputs in (in, ky, kx) order
          for (int64_t i = 0; i < c.in; ++i) {
            for (int64_t ky = 0; ky < c.kernel; ++ky) {
              for (int64_t kx = 0; kx < c.kernel; ++kx) {
                const int64_t iy = oy * c.stride - c.padding + ky, ix = ox * c.stride - c.padding + kx;
                const bool inside = iy >= 0 && iy < c.height && ix >= 0 && ix < c.width;
                window.push_back(inside ? x[static_cast<size_t>(((b * c.in + i) * c.height + iy) * c.width + ix)] : 0.0f);
              }
            }
          }
          std::vector<int8_t> wq(window.size());
          float sx;
          quantize_rows_8bit_s(window.data(), 1, window.size(), wq.data(), &sx);
          for (int64_t o = 0; o < c.out; ++o) {
            int64_t sum = 0;
            double exact = bias[o];
            for (int64_t j = 0; j < k; ++j) {
              sum += int64_t{wq[j]} * q[static_cast<size_t>(o * k + j)];
              exact += double(window[j]) * w[static_cast<size_t>(o * k + j)];
            }
            const float expected = static_cast<float>(sum) * sx * scale[o] + bias[o];
            const float actual = y[((b * c.out + o) * oh + oy) * ow + ox];
            ASSERT_EQ(actual, expected) << "pixel (" << oy << ", " << ox << ") channel " << o;
            worst_float = std::max(worst_float, std::abs(actual - exact));
            largest = std::max(largest, std::abs(exact));
          }
        }
      }
    }
    // Against the float convolution of the unquantized weights: int8 error only.
    EXPECT_LT(worst_float, 0.03 * largest) << "kernel " << c.kernel << " stride " << c.stride;
  }
}

TEST(Conv2d, GroupNormUpsampleAndConcatInAGraph) {
  const auto accel = make_accelerator("ref");
  Graph g;
  const int a = g.input({1, 2, 2, 2});
  const int b = g.input({1, 1, 2, 2});
  g.output(g.upsample_nearest_2x(a));
  g.output(g.concat_channels(a, b));
  g.output(g.group_norm(a, 2, nullptr, nullptr, 0.0f, true));
  EXPECT_THROW(g.group_norm(a, 3, nullptr, nullptr, 0.0f, false), Error);
  EXPECT_THROW(g.concat_channels(a, g.input({1, 1, 3, 2})), Error);
  ProgramCache cache;
  Executor exec(g, *accel, cache);
  const std::vector<float> av = {1, 2, 3, 4, 10, 20, 30, 40}, bv = {-1, -2, -3, -4};
  exec.run({av.data(), bv.data(), bv.data()});
  const float* up = exec.data(g.outputs()[0]);
  EXPECT_EQ(std::vector<float>(up, up + 8), (std::vector<float>{1, 1, 2, 2, 1, 1, 2, 2}));
  EXPECT_EQ(up[16 + 15], 40.0f);
  const float* cat = exec.data(g.outputs()[1]);
  EXPECT_EQ(std::vector<float>(cat, cat + 12), (std::vector<float>{1, 2, 3, 4, 10, 20, 30, 40, -1, -2, -3, -4}));
  const float* gn = exec.data(g.outputs()[2]);
  const double z = -1.5 / std::sqrt(1.25);  // channel 0: mean 2.5, variance 1.25
  EXPECT_NEAR(gn[0], z / (1 + std::exp(-z)), 1e-6);
}

}  // namespace
}  // namespace tiledraw::runtime

namespace tiledraw::runtime {
namespace {

TEST(FloatPath, LinearAndConvMatchDoublePrecisionReferences) {
  const auto accel = make_accelerator("ref");
  const int64_t m = 37, k = 70, n = 19;
  const std::vector<float> w = test::random_floats(static_cast<size_t>(n * k), 1), bias = test::random_floats(n, 2);
  const std::vector<float> cw = test::random_floats(5 * 3 * 9, 3), cbias = test::random_floats(5, 4);
  Graph g;
  const int x = g.input({m, k});
  g.output(g.linear(x, FloatWeight{w.data(), n, k}, bias.data(), Activation::Silu));
  const int image = g.input({2, 3, 6, 5});
  g.output(g.conv2d(image, FloatWeight{cw.data(), 5, 27}, cbias.data(), ConvWindow::square(3, 2, 1)));
  EXPECT_THROW(g.linear(x, FloatWeight{w.data(), n, k + 1}, nullptr), Error);
  ProgramCache cache;
  Executor exec(g, *accel, cache);
  const auto xv = test::random_floats(static_cast<size_t>(m * k), 5), iv = test::random_floats(2 * 3 * 30, 6);
  exec.run({xv.data(), iv.data()});
  const float* y = exec.data(g.outputs()[0]);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double z = bias[c];
      for (int64_t i = 0; i < k; ++i) z += double(xv[r * k + i]) * w[c * k + i];
      const double expected = z / (1 + std::exp(-z));
      ASSERT_NEAR(y[r * n + c], expected, 1e-5 * (1 + std::abs(expected)));
    }
  }
  const float* conv = exec.data(g.outputs()[1]);  // [2, 5, 3, 3]
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t o = 0; o < 5; ++o) {
      for (int64_t oy = 0; oy < 3; ++oy) {
        for (int64_t ox = 0; ox < 3; ++ox) {
          double z = cbias[o];
          for (int64_t i = 0; i < 3; ++i)
            for (int64_t ky = 0; ky < 3; ++ky)
              for (int64_t kx = 0; kx < 3; ++kx) {
                const int64_t iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx;
                if (iy < 0 || iy >= 6 || ix < 0 || ix >= 5) continue;
                z += double(iv[((b * 3 + i) * 6 + iy) * 5 + ix]) * cw[((o * 3 + i) * 3 + ky) * 3 + kx];
              }
          ASSERT_NEAR(conv[((b * 5 + o) * 3 + oy) * 3 + ox], z, 1e-5 * (1 + std::abs(z)));
        }
      }
    }
  }
  EXPECT_EQ(exec.profile().at(OpKind::Linear, true).calls, 1);
  EXPECT_EQ(exec.profile().at(OpKind::Conv2d, true).calls, 1);
  EXPECT_EQ(exec.profile().at(OpKind::Linear).calls, 0);
}

}  // namespace
}  // namespace tiledraw::runtime

namespace tiledraw::runtime {
namespace {

TEST(Fusion, NormModulateFeedsLinearsDirectlyAndEqualsTheUnfusedOps) {
  const auto accel = make_accelerator("auto");
  const Weight w = make_weight(*accel, 40, 48, 3);
  const auto build = [&](bool fused, bool also_output) {
    Graph g;
    const int x = g.input({2, 9, 48});
    const int mod = g.input({2, 96});
    const std::vector<int> halves = g.chunk(mod, 2);
    const int h = fused ? g.modulated_layer_norm(x, halves[0], halves[1], 1e-6f)
                        : g.modulate(g.layer_norm(x, nullptr, nullptr, 1e-6f), halves[0], halves[1]);
    g.output(g.linear(h, *w.packed, w.bias.data()));
    if (also_output) g.output(h);
    return g;
  };
  const auto x = test::random_floats(2 * 9 * 48, 1, 3.0f), mod = test::random_floats(2 * 96, 2, 0.2f);
  ProgramCache cache;
  const Graph unfused = build(false, true), fused_only_linear = build(true, false), fused_with_output = build(true, true);
  Executor a(unfused, *accel, cache), b(fused_only_linear, *accel, cache), c(fused_with_output, *accel, cache);
  for (Executor* e : {&a, &b, &c}) e->run({x.data(), mod.data()});
  const auto values = [](const Executor& e, const Graph& g, size_t output) {
    const int v = g.outputs()[output];
    return std::vector<float>(e.data(v), e.data(v) + g.values()[static_cast<size_t>(v)].numel());
  };
  EXPECT_EQ(values(b, fused_only_linear, 0), values(a, unfused, 0)) << "quantized straight from the fused pass";
  EXPECT_EQ(values(c, fused_with_output, 0), values(a, unfused, 0));
  EXPECT_EQ(values(c, fused_with_output, 1), values(a, unfused, 1)) << "the floats, when something reads them";
  EXPECT_EQ(b.profile().at(OpKind::NormModulate).calls, 1);
}

}  // namespace
}  // namespace tiledraw::runtime

namespace tiledraw::runtime {
namespace {

// The oracle, declining every problem with more than 64 inputs.
class Declining final : public Accelerator {
 public:
  std::string_view name() const override { return "declining"; }
  bool supports(const MatmulShape& s) const override { return s.k <= 64; }
  std::unique_ptr<PackedWeight> pack(const WeightView& w) const override { return ref_->pack(w); }
  std::unique_ptr<Program> prepare(const MatmulShape& s) const override { return ref_->prepare(s); }
  void run(const Program& p, const MatmulArgs& a) const override { ref_->run(p, a); }

 private:
  std::unique_ptr<Accelerator> ref_ = make_accelerator("ref");
};

TEST(Scheduler, AMatmulTheAcceleratorDeclinesRunsOnAFallbackWithTheSameResult) {
  const Declining declining;
  const auto ref = make_accelerator("ref");
  const Weight narrow = make_weight(declining, 128, 64, 1), wide = make_weight(declining, 16, 128, 2);
  Graph g;
  const int x = g.input({5, 64});
  g.output(g.linear(g.linear(x, *narrow.packed, narrow.bias.data()), *wide.packed, wide.bias.data()));
  const auto xv = test::random_floats(5 * 64, 3);
  ProgramCache cache;
  Executor exec(g, declining, cache);
  exec.run({xv.data()});
  const std::string fallback = make_accelerator("vnni") ? "vnni" : "ref";
  EXPECT_EQ(exec.profile().fallbacks(), (std::map<std::string, int64_t>{{fallback, 1}}));

  const Weight narrow_ref = make_weight(*ref, 128, 64, 1), wide_ref = make_weight(*ref, 16, 128, 2);
  Graph expected_graph;
  const int ex = expected_graph.input({5, 64});
  expected_graph.output(expected_graph.linear(expected_graph.linear(ex, *narrow_ref.packed, narrow_ref.bias.data()),
                                              *wide_ref.packed, wide_ref.bias.data()));
  Executor expected(expected_graph, *ref, cache);
  expected.run({xv.data()});
  const float* y = exec.data(g.outputs()[0]);
  EXPECT_EQ(std::vector<float>(y, y + 80), std::vector<float>(expected.data(expected_graph.outputs()[0]),
                                                             expected.data(expected_graph.outputs()[0]) + 80));
}

}  // namespace
}  // namespace tiledraw::runtime
