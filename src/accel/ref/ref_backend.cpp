#include <cstring>
#include <vector>

#include "accel/backends.h"
#include "kernels/activation/activation.h"

namespace tiledraw::accel {
namespace {

class RefWeight final : public PackedWeight {
 public:
  explicit RefWeight(const WeightView& w)
      : PackedWeight(w), q(weight_rows(w)), scale(w.scale, w.scale + w.n) {}
  std::vector<int8_t> q;
  std::vector<float> scale;
};

class RefProgram final : public Program {
 public:
  explicit RefProgram(const MatmulShape& shape) : Program(shape) {}
};

// Plain loops, one thread: the oracle every other backend is tested against.
class RefBackend final : public Accelerator {
 public:
  std::string_view name() const override { return "ref"; }
  std::string kernel() const override { return "scalar C++ loops (the oracle)"; }
  bool supports(const MatmulShape&) const override { return true; }
  std::unique_ptr<PackedWeight> pack(const WeightView& w) const override {
    validate_weight(w);
    return std::make_unique<RefWeight>(w);
  }
  std::unique_ptr<Program> prepare(const MatmulShape& shape) const override {
    return std::make_unique<RefProgram>(shape);
  }
  void run(const Program& program, const MatmulArgs& args) const override {
    validate_run(program, args);
    const auto& w = static_cast<const RefWeight&>(*args.weight);
    const Epilogue& e = program.shape().epilogue;
    const QuantizedActivation& x = *args.x;
    for (int64_t m = 0; m < x.rows(); ++m) {
      const int8_t* xq = x.data() + m * x.stride();
      for (int64_t n = 0; n < w.n(); ++n) {
        const int8_t* wq = w.q.data() + n * w.k();
        int32_t sum = 0;
        for (int64_t k = 0; k < w.k(); ++k) sum += int32_t{xq[k]} * int32_t{wq[k]};
        float z = static_cast<float>(sum) * x.scales()[m] * w.scale[static_cast<size_t>(n)];
        if (e.bias) z += args.bias[n];
        z = kernels::activate(e.activation, z);
        float& out = args.y[m * args.ldy + n];
        out = e.accumulate ? out + z : z;
      }
    }
  }
};

}  // namespace

std::unique_ptr<Accelerator> make_ref_backend() { return std::make_unique<RefBackend>(); }

}  // namespace tiledraw::accel
