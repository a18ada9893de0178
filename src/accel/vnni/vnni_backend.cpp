#include <omp.h>

#include <algorithm>

#include "accel/backends.h"
#include "accel/vnni/gemm.h"
#include "tiledraw/cpu.h"

namespace tiledraw::accel {
namespace {

using vnni::GemmTile;

class VnniProgram final : public Program {
 public:
  VnniProgram(const MatmulShape& shape, int64_t rows_per_task, int threads)
      : Program(shape), rows_per_task(rows_per_task), threads(threads) {}
  int64_t rows_per_task;  // a multiple of the kernel's rows
  int threads;
};

using GemmKernel = void (*)(const GemmTile&);

// AVX512-VNNI (or AVX2) int8 kernels on the CPU cores: for CPUs without AMX,
// and for small M, where AMX's set-up does not pay.
class VnniBackend final : public Accelerator {
 public:
  VnniBackend(GemmKernel kernel, int64_t kernel_rows, bool shifted_weights, const char* kernel_name)
      : kernel_(kernel), kernel_rows_(kernel_rows), shifted_weights_(shifted_weights), kernel_name_(kernel_name) {}

  std::string_view name() const override { return "vnni"; }
  std::string kernel() const override { return kernel_name_; }
  bool supports(const MatmulShape& shape) const override {
    return shape.m > 0 && shape.n > 0 && shape.k > 0 && shape.k <= (int64_t{1} << 16);  // int32 sums cannot overflow
  }
  std::unique_ptr<PackedWeight> pack(const WeightView& w) const override {
    return std::make_unique<PanelWeight>(w, shifted_weights_);
  }

  // Work is split in tasks of (a run of rows) x (one weight panel), row-major:
  // each thread takes whole runs of rows across every panel, so that its
  // activation rows stay in its cache while the panels stream past. A run
  // holds about 64 KiB of activations (at least 24 rows, so that each panel
  // serves several kernel calls), and fewer rows when that leaves threads
  // idle. Panels over 512 KiB (K > 8192) are the exception: re-reading them
  // costs more than streaming the rows, so their runs take every row. On the
  // SD 1.5 UNet's shapes (bench/matmul_bench.cpp, sd15_unet; BENCHMARKS.md)
  // this beat panel-major runs of every row most where many tokens meet few
  // channels.
  std::unique_ptr<Program> prepare(const MatmulShape& shape) const override {
    constexpr int64_t kActivationRunBytes = 64 << 10;
    constexpr int64_t kMinRunRows = 24;
    constexpr int64_t kStreamedPanelBytes = 512 << 10;
    const int threads = omp_get_max_threads();
    const int64_t panels = (shape.n + kPanel - 1) / kPanel;
    const int64_t row_blocks = (shape.m + kernel_rows_ - 1) / kernel_rows_;
    const int64_t padded_k = (shape.k + QuantizedActivation::kRowAlign - 1) / QuantizedActivation::kRowAlign *
                             QuantizedActivation::kRowAlign;
    const int64_t cached_blocks = padded_k * kPanel > kStreamedPanelBytes
                                      ? row_blocks
                                      : std::max(kMinRunRows, kActivationRunBytes / padded_k) / kernel_rows_;
    const int64_t row_splits = std::clamp<int64_t>((4 * threads + panels - 1) / panels, 1, row_blocks);
    const int64_t blocks_per_task = std::max<int64_t>(1, std::min((row_blocks + row_splits - 1) / row_splits, cached_blocks));
    return std::make_unique<VnniProgram>(shape, blocks_per_task * kernel_rows_, threads);
  }

  void run(const Program& program, const MatmulArgs& args) const override {
    validate_run(program, args);
    const auto& p = static_cast<const VnniProgram&>(program);
    const auto& w = static_cast<const PanelWeight&>(*args.weight);
    const QuantizedActivation& x = *args.x;
    const Epilogue& e = p.shape().epilogue;
    const int64_t m = x.rows();
    const int64_t row_tasks = (m + p.rows_per_task - 1) / p.rows_per_task;
    const int64_t tasks = w.panels() * row_tasks;
#pragma omp parallel for schedule(static) num_threads(p.threads) if (p.threads > 1 && tasks > 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t panel = task % w.panels();
      const int64_t row_task = task / w.panels();
      const int64_t col0 = panel * kPanel;
      GemmTile tile{};
      tile.lda = x.stride();
      tile.b = w.panel(panel);
      tile.k_groups = w.k_groups();
      tile.b_scale = w.scale() + col0;
      tile.bias = e.bias ? args.bias + col0 : nullptr;
      tile.ldy = args.ldy;
      tile.cols = std::min(kPanel, w.n() - col0);
      tile.activation = e.activation;
      tile.accumulate = e.accumulate;
      const int64_t row_end = std::min(m, (row_task + 1) * p.rows_per_task);
      for (int64_t row = row_task * p.rows_per_task; row < row_end; row += kernel_rows_) {
        tile.a = x.data() + row * x.stride();
        tile.a_scale = x.scales() + row;
        tile.a_sum = x.row_sums() + row;
        tile.y = args.y + row * args.ldy + col0;
        tile.rows = std::min(kernel_rows_, row_end - row);
        kernel_(tile);
      }
    }
  }

 private:
  GemmKernel kernel_;
  int64_t kernel_rows_;
  bool shifted_weights_;
  const char* kernel_name_;
};

}  // namespace

std::unique_ptr<Accelerator> make_vnni_backend(std::string* why) {
  if (isa_level() >= IsaLevel::Avx512 && cpu_features().avx512_vnni) {
    return std::make_unique<VnniBackend>(vnni::qs8_qc8w_gemm_f32__avx512vnni_6x64, vnni::kRowsAvx512, true,
                                         "qs8_qc8w_gemm_f32__avx512vnni_6x64");
  }
  if (isa_level() >= IsaLevel::Avx2) {
    return std::make_unique<VnniBackend>(vnni::qs8_qc8w_gemm_f32__avx2_4x16, vnni::kRowsAvx2, false,
                                         "qs8_qc8w_gemm_f32__avx2_4x16");
  }
  if (why) *why = "needs AVX2 (this CPU, or TILEDRAW_ISA, allows " + std::string(isa_level_name(isa_level())) + ")";
  return nullptr;
}

}  // namespace tiledraw::accel
