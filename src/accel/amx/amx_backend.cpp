#include "accel/amx/amx_backend.h"

#include <omp.h>

#include <algorithm>

#include "accel/backends.h"
#include "accel/panel_weight.h"
#include "tiledraw/cpu.h"

namespace tiledraw::accel {
namespace {

class AmxProgram final : public Program {
 public:
  AmxProgram(const MatmulShape& shape, int64_t rows_per_task, int threads)
      : Program(shape), rows_per_task(rows_per_task), threads(threads) {}
  int64_t rows_per_task;  // a multiple of 32
  int threads;
  std::unique_ptr<Program> fallback;  // the AVX512-VNNI program, when it measured faster here
};

class AmxBackend final : public Accelerator {
 public:
  AmxBackend(amx::AmxTasksFn tasks, const char* kernel_name, bool measure_fallback)
      : tasks_(tasks), kernel_name_(kernel_name), measure_fallback_(measure_fallback) {
    // The fallback must read the same shifted panels: only the AVX512-VNNI kernel does.
    std::unique_ptr<Accelerator> vnni = make_vnni_backend(nullptr);
    if (vnni && vnni->kernel().find("avx512vnni") != std::string::npos) vnni_ = std::move(vnni);
  }

  std::string_view name() const override { return "amx"; }
  std::string kernel() const override {
    return std::string(kernel_name_) + (vnni_ && measure_fallback_ ? ", or " + vnni_->kernel() + " where faster" : "");
  }
  bool supports(const MatmulShape& shape) const override {
    return shape.m > 0 && shape.n > 0 && shape.k > 0 && shape.k <= (int64_t{1} << 16);
  }
  std::unique_ptr<PackedWeight> pack(const WeightView& w) const override {
    return std::make_unique<PanelWeight>(w, true);
  }

  // Tasks are (one panel) x (a run of 32-row blocks), panel-major; rows are
  // split only when panels alone cannot keep every thread busy. For small M
  // the tiles' set-up does not pay: each new shape times the tiles against the
  // AVX512-VNNI kernel (a few runs on random data) and keeps the faster.
  std::unique_ptr<Program> prepare(const MatmulShape& shape) const override {
    const int threads = omp_get_max_threads();
    const int64_t panels = (shape.n + kPanel - 1) / kPanel;
    const int64_t row_blocks = (shape.m + 31) / 32;
    const int64_t row_splits = std::clamp<int64_t>((2 * threads + panels - 1) / panels, 1, row_blocks);
    auto program = std::make_unique<AmxProgram>(shape, (row_blocks + row_splits - 1) / row_splits * 32, threads);
    if (measure_fallback_ && vnni_) {
      std::unique_ptr<Program> fallback = vnni_->prepare(shape);
      const std::vector<double> seconds = median_seconds_per_run({{vnni_.get(), fallback.get()}, {this, program.get()}});
      if (seconds[0] < seconds[1]) program->fallback = std::move(fallback);
    }
    return program;
  }

  void run(const Program& program, const MatmulArgs& args) const override {
    validate_run(program, args);
    const auto& p = static_cast<const AmxProgram&>(program);
    if (p.fallback) return vnni_->run(*p.fallback, args);
    const auto& w = static_cast<const PanelWeight&>(*args.weight);
    const Epilogue& e = p.shape().epilogue;
    const int64_t row_tasks = (args.x->rows() + p.rows_per_task - 1) / p.rows_per_task;
    const amx::AmxGemm gemm{args.x,         &w,           e.bias ? args.bias : nullptr, args.y, args.ldy,
                            e.activation,   e.accumulate, p.rows_per_task,              row_tasks};
    const int64_t tasks = w.panels() * row_tasks;
    const int threads = static_cast<int>(std::min<int64_t>(p.threads, tasks));
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
      const int64_t t = omp_get_thread_num(), count = omp_get_num_threads();
      const int64_t begin = tasks * t / count, end = tasks * (t + 1) / count;
      if (begin < end) tasks_(gemm, begin, end);
    }
  }

 private:
  amx::AmxTasksFn tasks_;
  const char* kernel_name_;
  bool measure_fallback_;
  std::unique_ptr<Accelerator> vnni_;
};

}  // namespace

std::unique_ptr<Accelerator> make_amx_backend_with(amx::AmxTasksFn tasks, const char* kernel_name,
                                                   bool measure_fallback) {
  return std::make_unique<AmxBackend>(tasks, kernel_name, measure_fallback);
}

std::unique_ptr<Accelerator> make_amx_backend(std::string* why) {
  if (!cpu_features().amx_int8 || isa_level() < IsaLevel::Avx512) {
    if (why) *why = cpu_features().amx_int8 ? "needs AVX-512 for its epilogue (TILEDRAW_ISA)" : cpu_features().amx_status;
    return nullptr;
  }
  return make_amx_backend_with(amx::qs8_qc8w_gemm_f32__amx_32x32, "qs8_qc8w_gemm_f32__amx_32x32", true);
}

}  // namespace tiledraw::accel
