#include <chrono>
#include <map>
#include <mutex>
#include <vector>

#include "accel/backends.h"
#include "runtime/stopwatch.h"

namespace tiledraw::accel {

double seconds_per_run(const Accelerator& accel, const Program& program) {
  const MatmulShape& s = program.shape();
  // Integer matmul time does not depend on the values, so any spread of them
  // serves, and costs far less than a random generator at load.
  const auto spread = [](int64_t i) { return static_cast<int8_t>(i * 7919 % 255 - 127); };
  std::vector<int8_t> q(static_cast<size_t>(s.n * s.k));
  for (size_t i = 0; i < q.size(); ++i) q[i] = spread(static_cast<int64_t>(i));
  const std::vector<float> ones(static_cast<size_t>(s.n), 1.0f);
  const std::unique_ptr<PackedWeight> w = accel.pack({q.data(), ones.data(), s.n, s.k});
  std::vector<float> x(static_cast<size_t>(s.m * s.k));
  for (size_t i = 0; i < x.size(); ++i) x[i] = spread(static_cast<int64_t>(i) + 1);
  QuantizedActivation xq;
  xq.quantize(x.data(), s.m, s.k, s.k);
  std::vector<float> y(static_cast<size_t>(s.m * s.n));
  double best = 1e30;
  for (int i = 0; i < 4; ++i) {
    const auto start = std::chrono::steady_clock::now();
    accel.run(program, {&xq, w.get(), ones.data(), y.data(), s.n});
    const double seconds = seconds_since(start);
    if (i > 0) best = std::min(best, seconds);  // the first run warms caches
  }
  return best;
}

namespace {

// A weight packed by the candidate chosen for its shape.
class ChosenWeight final : public PackedWeight {
 public:
  ChosenWeight(size_t candidate, std::unique_ptr<PackedWeight> packed)
      : PackedWeight(packed->source()), candidate(candidate), packed(std::move(packed)) {}
  size_t candidate;
  std::unique_ptr<PackedWeight> packed;
};

class ChosenProgram final : public Program {
 public:
  ChosenProgram(const MatmulShape& shape, size_t candidate, std::unique_ptr<Program> program)
      : Program(shape), candidate(candidate), program(std::move(program)) {}
  size_t candidate;
  std::unique_ptr<Program> program;
};

class AutoBackend final : public Accelerator {
 public:
  explicit AutoBackend(std::vector<std::unique_ptr<Accelerator>> candidates) : candidates_(std::move(candidates)) {}

  std::string_view name() const override { return "auto"; }
  std::string kernel() const override {
    std::string text = "the faster per shape of";
    for (const auto& c : candidates_) text += " [" + c->kernel() + "]";
    return text;
  }
  bool supports(const MatmulShape& shape) const override {
    for (const auto& c : candidates_) {
      if (c->supports(shape)) return true;
    }
    return false;
  }
  std::unique_ptr<PackedWeight> pack(const WeightView& w) const override {
    const size_t chosen = choose(w.n, w.k);
    return std::make_unique<ChosenWeight>(chosen, candidates_[chosen]->pack(w));
  }
  std::unique_ptr<Program> prepare(const MatmulShape& shape) const override {
    const size_t chosen = choose(shape.n, shape.k);
    return std::make_unique<ChosenProgram>(shape, chosen, candidates_[chosen]->prepare(shape));
  }
  void run(const Program& program, const MatmulArgs& args) const override {
    validate_run(program, args);
    const auto& p = static_cast<const ChosenProgram&>(program);
    const auto& w = static_cast<const ChosenWeight&>(*args.weight);
    MatmulArgs inner = args;
    inner.weight = w.packed.get();
    candidates_[p.candidate]->run(*p.program, inner);
  }

 private:
  size_t choose(int64_t n, int64_t k) const {
    std::lock_guard lock(mutex_);
    const auto key = std::make_pair(n, k);
    if (const auto it = choices_.find(key); it != choices_.end()) return it->second;
    size_t best = 0;
    double best_seconds = 1e30;
    for (size_t i = 0; i < candidates_.size(); ++i) {
      const MatmulShape shape{256, n, k, {}};
      if (!candidates_[i]->supports(shape)) continue;
      const double seconds = seconds_per_run(*candidates_[i], *candidates_[i]->prepare(shape));
      if (seconds < best_seconds) {
        best = i;
        best_seconds = seconds;
      }
    }
    return choices_.emplace(key, best).first->second;
  }

  std::vector<std::unique_ptr<Accelerator>> candidates_;
  mutable std::mutex mutex_;
  mutable std::map<std::pair<int64_t, int64_t>, size_t> choices_;
};

}  // namespace

std::unique_ptr<Accelerator> make_auto_backend(std::vector<std::unique_ptr<Accelerator>> candidates) {
  return std::make_unique<AutoBackend>(std::move(candidates));
}

}  // namespace tiledraw::accel
