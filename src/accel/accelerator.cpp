#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "accel/backends.h"
#include "accel/panel_weight.h"
#include "kernels/quantize/quantize_rows.h"
#include "runtime/stopwatch.h"
#include "tiledraw/cpu.h"
#include "tiledraw/error.h"

namespace tiledraw {

void QuantizedActivation::FreeAligned::operator()(int8_t* p) const { std::free(p); }

void QuantizedActivation::reset(int64_t rows, int64_t cols) {
  const int64_t stride = (cols + kRowAlign - 1) / kRowAlign * kRowAlign;
  const int64_t padded_rows = (rows + kRowBlock - 1) / kRowBlock * kRowBlock;
  const int64_t bytes = padded_rows * stride;
  if (bytes > capacity_) {
    q_.reset(static_cast<int8_t*>(std::aligned_alloc(kRowAlign, static_cast<size_t>(std::max<int64_t>(bytes, 64)))));
    if (!q_) throw std::bad_alloc();
    capacity_ = bytes;
  }
  rows_ = rows;
  cols_ = cols;
  stride_ = stride;
  scales_.resize(static_cast<size_t>(rows));
  row_sums_.resize(static_cast<size_t>(rows));
  std::memset(q_.get() + rows * stride, 0, static_cast<size_t>((padded_rows - rows) * stride));
}

void QuantizedActivation::quantize_row(int64_t r, const float* x) {
  static const kernels::QuantizeRowsFn kernel = kernels::quantize_rows_kernel(isa_level());
  row_sums_[static_cast<size_t>(r)] =
      kernels::quantize_padded_row(kernel, x, static_cast<size_t>(cols_), static_cast<size_t>(stride_),
                                   q_.get() + r * stride_, &scales_[static_cast<size_t>(r)]);
}

void QuantizedActivation::quantize(const float* x, int64_t rows, int64_t cols, int64_t ldx) {
  reset(rows, cols);
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) quantize_row(r, x + r * ldx);
}

int64_t ProgramCache::bucket_m(int64_t m) {
  if (m <= 16) return 16;
  const int64_t step = std::max<int64_t>(16, std::bit_floor(static_cast<uint64_t>(m - 1)) / 4);
  return (m + step - 1) / step * step;
}

const Program& ProgramCache::get(const Accelerator& accel, const MatmulShape& shape) {
  MatmulShape bucketed = shape;
  bucketed.m = bucket_m(shape.m);
  Key key{std::string(accel.name()), bucketed};
  {
    std::lock_guard lock(mutex_);
    if (const auto it = programs_.find(key); it != programs_.end()) {
      ++stats_.hits;
      return *it->second;
    }
  }
  // Prepared outside the lock: preparing may time kernels. Two threads may both
  // prepare a new shape; the first to finish wins.
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<Program> program = accel.prepare(bucketed);
  const double seconds = seconds_since(start);
  std::lock_guard lock(mutex_);
  ++stats_.misses;
  stats_.prepare_seconds += seconds;
  const auto [it, inserted] = programs_.emplace(std::move(key), std::move(program));
  stats_.programs = programs_.size();
  return *it->second;
}

ProgramCache::Stats ProgramCache::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void linear_8bit_s(const Accelerator& accel, ProgramCache& cache, const float* x, int64_t m, int64_t ldx,
                   const PackedWeight& weight, const float* bias, const Epilogue& epilogue, float* y, int64_t ldy,
                   QuantizedActivation& scratch) {
  scratch.quantize(x, m, weight.k(), ldx);
  const Program& program = cache.get(accel, {m, weight.n(), weight.k(), epilogue});
  accel.run(program, {&scratch, &weight, bias, y, ldy});
}

namespace accel {

void validate_weight(const WeightView& w) {
  if (w.n <= 0 || w.k <= 0) {
    throw Error("8-bit S weight of shape [" + std::to_string(w.n) + ", " + std::to_string(w.k) + "] is empty");
  }
  const auto bytes = static_cast<size_t>(w.n * w.k);
  int64_t row = -1;
  if (w.panels) {  // -128 is stored as 0 there
    if (const void* found = std::memchr(w.panels, 0, bytes)) {
      const int64_t at = static_cast<const uint8_t*>(found) - w.panels;
      row = at / (kPanel * w.k) * kPanel + at % kGroupBytes / 4;
    }
  } else if (const void* found = std::memchr(w.q, 0x80, bytes)) {
    row = (static_cast<const int8_t*>(found) - w.q) / w.k;
  }
  if (row >= 0) throw Error("8-bit S weight holds -128 at row " + std::to_string(row) + "; values must be in [-127, 127]");
}

std::vector<int8_t> weight_rows(const WeightView& w) {
  if (!w.panels) return {w.q, w.q + w.n * w.k};
  std::vector<int8_t> rows(static_cast<size_t>(w.n * w.k));
  unpack_stored_panels(w.panels, w.n, w.k, rows.data());
  return rows;
}

void validate_run(const Program& program, const MatmulArgs& args) {
  const MatmulShape& shape = program.shape();
  if (args.x->cols() != args.weight->k() || args.weight->k() != shape.k || args.weight->n() != shape.n) {
    throw Error("matmul operands disagree: x has " + std::to_string(args.x->cols()) + " columns, the weight is [" +
                std::to_string(args.weight->n()) + ", " + std::to_string(args.weight->k()) + "], the program [" +
                std::to_string(shape.n) + ", " + std::to_string(shape.k) + "]");
  }
  if (args.x->rows() > shape.m) {
    throw Error("matmul of " + std::to_string(args.x->rows()) + " rows on a program prepared for " +
                std::to_string(shape.m));
  }
  if (shape.epilogue.bias && !args.bias) throw Error("matmul program expects a bias and none was given");
}

}  // namespace accel

std::vector<std::string> accelerator_names() { return {"auto", "amx", "vnni", "onednn", "ref"}; }

namespace {

// Our own first backend in order of preference that runs here: AMX, then the
// CPU's own int8 instructions, then plain C++.
std::unique_ptr<Accelerator> make_preferred(std::string* why) {
  std::string passed_over;
  for (const char* name : {"amx", "vnni"}) {
    std::string reason;
    if (std::unique_ptr<Accelerator> accel = make_accelerator(name, &reason)) {
      if (why) *why = passed_over.empty() ? "the preferred backend" : "passed over " + passed_over;
      return accel;
    }
    passed_over += (passed_over.empty() ? "" : ", ") + std::string(name) + " (" + reason + ")";
  }
  if (why) *why = "passed over " + passed_over;
  return make_accelerator("ref");
}

}  // namespace

std::string preferred_accelerator_name(std::string* why) { return std::string(make_preferred(why)->name()); }

std::unique_ptr<Accelerator> make_accelerator(std::string_view name, std::string* why) {
  if (name == "auto") {
    const char* env = std::getenv("TILEDRAW_ACCEL");
    if (!env || !*env || std::string_view(env) == "auto") {
      std::string reason;
      std::unique_ptr<Accelerator> preferred = make_preferred(&reason);
      std::unique_ptr<Accelerator> onednn = make_accelerator("onednn");
      if (!onednn) {
        if (why) *why = std::string(preferred->name()) + ", " + reason;
        return preferred;
      }
      if (why) *why = std::string(preferred->name()) + " (" + reason + ") or onednn, whichever is faster per shape";
      std::vector<std::unique_ptr<Accelerator>> candidates;
      candidates.push_back(std::move(preferred));
      candidates.push_back(std::move(onednn));
      return accel::make_auto_backend(std::move(candidates), accel::default_choices_file());
    }
    std::unique_ptr<Accelerator> accel = make_accelerator(env, why);
    if (!accel) throw Error(std::string("TILEDRAW_ACCEL=") + env + ": cannot run here: " + (why ? *why : ""));
    if (why) *why = "set by TILEDRAW_ACCEL";
    return accel;
  }
  if (name == "ref") return accel::make_ref_backend();
  if (name == "vnni") return accel::make_vnni_backend(why);
  if (name == "onednn") return accel::make_onednn_backend(why);
  if (name == "amx") return accel::make_amx_backend(why);
  throw Error("unknown accelerator '" + std::string(name) + "' (use auto, amx, vnni, onednn or ref)");
}

}  // namespace tiledraw
