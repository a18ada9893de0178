#include <algorithm>
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "accel/backends.h"
#include "kernels/epilogue/linear_epilogue.h"
#include "kernels/gemm/onednn_util.h"
#include "tiledraw/cpu.h"
#include "tiledraw/error.h"

// The vendor-library path: oneDNN's int8 matmul, as CoreML is in the design this
// project follows. It runs the whole operation (scales, bias, activation and
// residual in a vectorised pass after oneDNN's sums), so that comparing it with
// our own kernels is fair.
namespace tiledraw::accel {
namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

using kernels::onednn::engine;

class OnednnWeight final : public PackedWeight {
 public:
  explicit OnednnWeight(const WeightView& w)
      : PackedWeight(w), plain(weight_rows(w)), scale(w.scale, w.scale + w.n) {}

  // The weights in the layout a primitive asked for, reordered once per layout.
  const memory& for_layout(const memory::desc& desc) const {
    std::lock_guard lock(mutex_);
    for (const auto& [layout, reordered] : reordered_) {
      if (layout == desc) return reordered;
    }
    const memory::desc plain_desc({k(), n()}, dt::s8, tag::ba);
    memory source(plain_desc, engine(), const_cast<int8_t*>(plain.data()));
    memory target(desc, engine());
    dnnl::stream stream(engine());
    dnnl::reorder(source, target).execute(stream, source, target);
    stream.wait();
    reordered_.emplace_back(desc, target);
    return reordered_.back().second;
  }

  std::vector<int8_t> plain;
  std::vector<float> scale;

 private:
  mutable std::mutex mutex_;
  mutable std::vector<std::pair<memory::desc, memory>> reordered_;
};

struct Primitive {
  dnnl::matmul matmul;
  dnnl::matmul::primitive_desc desc;
};

class OnednnProgram final : public Program {
 public:
  explicit OnednnProgram(const MatmulShape& shape) : Program(shape) {}

  // oneDNN specialises its kernels to the exact M, so the program keeps one
  // primitive per M seen within its bucket. The primitive computes the plain
  // sums in float: oneDNN 2.6 has no per-row (activation) scale, and emulating
  // one with a binary post-op drops it to its reference kernel, so the scales,
  // bias and activation are one vectorised pass afterwards.
  const Primitive& primitive(int64_t m, int64_t x_stride, int64_t ld_sums) const {
    std::lock_guard lock(mutex_);
    const auto key = std::make_tuple(m, x_stride, ld_sums);
    if (const auto it = primitives_.find(key); it != primitives_.end()) return it->second;
    const memory::desc src({m, shape().k}, dt::s8, memory::dims{x_stride, 1});
    const memory::desc weights({shape().k, shape().n}, dt::s8, tag::any);
    const memory::desc dst({m, shape().n}, dt::f32, memory::dims{ld_sums, 1});
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, weights, dst), kernels::onednn::user_scratchpad(), engine());
    return primitives_.emplace(key, Primitive{dnnl::matmul(pd), pd}).first->second;
  }

 private:
  mutable std::mutex mutex_;
  mutable std::map<std::tuple<int64_t, int64_t, int64_t>, Primitive> primitives_;
};

class OnednnBackend final : public Accelerator {
 public:
  OnednnBackend() : epilogue_(kernels::linear_epilogue_kernel(isa_level())) {}
  std::string_view name() const override { return "onednn"; }
  std::string kernel() const override { return "oneDNN " + version() + " s8 matmul"; }
  bool supports(const MatmulShape& shape) const override { return shape.m > 0 && shape.n > 0 && shape.k > 0; }
  std::unique_ptr<PackedWeight> pack(const WeightView& w) const override {
    validate_weight(w);
    return std::make_unique<OnednnWeight>(w);
  }
  std::unique_ptr<Program> prepare(const MatmulShape& shape) const override {
    auto program = std::make_unique<OnednnProgram>(shape);
    try {
      program->primitive(shape.m, (shape.k + 63) / 64 * 64, shape.n);
    } catch (const dnnl::error& e) {
      throw Error(std::string("oneDNN cannot run this matmul: ") + e.what());
    }
    return program;
  }

  void run(const Program& program, const MatmulArgs& args) const override {
    validate_run(program, args);
    const auto& p = static_cast<const OnednnProgram&>(program);
    const auto& w = static_cast<const OnednnWeight&>(*args.weight);
    const QuantizedActivation& x = *args.x;
    const MatmulShape& s = p.shape();
    const int64_t m = x.rows();
    // Sums go straight into y unless y must be kept for the residual add.
    thread_local std::vector<float> scratch;
    float* sums = args.y;
    int64_t ld_sums = args.ldy;
    if (s.epilogue.accumulate) {
      scratch.resize(static_cast<size_t>(m * s.n));
      sums = scratch.data();
      ld_sums = s.n;
    }
    try {
      const Primitive& prim = p.primitive(m, x.stride(), ld_sums);
      memory src(prim.desc.src_desc(), engine(), const_cast<int8_t*>(x.data()));
      memory dst(prim.desc.dst_desc(), engine(), sums);
      thread_local dnnl::stream stream(engine());
      prim.matmul.execute(stream, {{DNNL_ARG_SRC, src},
                                   {DNNL_ARG_WEIGHTS, w.for_layout(prim.desc.weights_desc())},
                                   {DNNL_ARG_DST, dst},
                                   {DNNL_ARG_SCRATCHPAD, kernels::onednn::thread_scratchpad(prim.desc.scratchpad_desc())}});
      stream.wait();
    } catch (const dnnl::error& e) {
      throw Error(std::string("oneDNN matmul failed: ") + e.what());
    }
    epilogue_({sums, ld_sums, x.scales(), w.scale.data(), s.epilogue.bias ? args.bias : nullptr, s.epilogue.activation,
               s.epilogue.accumulate, args.y, args.ldy, m, s.n});
  }

 private:
  kernels::LinearEpilogueFn epilogue_;

  static std::string version() {
    const dnnl_version_t* v = dnnl_version();
    return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  }
};

}  // namespace

std::unique_ptr<Accelerator> make_onednn_backend(std::string*) { return std::make_unique<OnednnBackend>(); }

}  // namespace tiledraw::accel
