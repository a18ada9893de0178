#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "accel/backends.h"
#include "tiledraw/cpu.h"
#include "tiledraw/error.h"
#include "tiledraw/quant8s.h"

namespace tiledraw {

void QuantizedActivation::FreeAligned::operator()(int8_t* p) const { std::free(p); }

void QuantizedActivation::quantize(const float* x, int64_t rows, int64_t cols, int64_t ldx) {
  const int64_t stride = (cols + kRowAlign - 1) / kRowAlign * kRowAlign;
  const int64_t bytes = rows * stride;
  if (bytes > capacity_) {
    q_.reset(static_cast<int8_t*>(std::aligned_alloc(kRowAlign, static_cast<size_t>(std::max<int64_t>(bytes, 64)))));
    if (!q_) throw std::bad_alloc();
    capacity_ = bytes;
  }
  rows_ = rows;
  cols_ = cols;
  stride_ = stride;
  scales_.resize(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    int8_t* row = q_.get() + r * stride;
    quantize_rows_8bit_s(x + r * ldx, 1, static_cast<size_t>(cols), row, &scales_[static_cast<size_t>(r)]);
    std::memset(row + cols, 0, static_cast<size_t>(stride - cols));
  }
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
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
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
  for (int64_t i = 0; i < w.n * w.k; ++i) {
    if (w.q[i] == -128) {
      throw Error("8-bit S weight holds -128 at row " + std::to_string(i / w.k) + "; values must be in [-127, 127]");
    }
  }
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

std::string default_accelerator_name(std::string* why) {
  if (const char* env = std::getenv("TILEDRAW_ACCEL"); env && *env && std::string_view(env) != "auto") {
    if (why) *why = "set by TILEDRAW_ACCEL";
    return env;
  }
  const CpuFeatures& cpu = cpu_features();
  if (cpu.amx_int8) {
    if (why) *why = "AMX-INT8 is available";
    return "amx";
  }
  if (cpu.avx2) {
    if (why) *why = "no usable AMX (" + cpu.amx_status + "); AVX" + (cpu.avx512_vnni ? "512-VNNI" : "2") + " int8 kernels";
    return "vnni";
  }
  if (why) *why = "no AVX2: plain C++";
  return "ref";
}

std::unique_ptr<Accelerator> make_accelerator(std::string_view name, std::string* why) {
  if (name == "auto") {
    std::string reason;
    const std::string chosen = default_accelerator_name(&reason);
    if (chosen == "auto") throw Error("TILEDRAW_ACCEL: 'auto' cannot name itself");
    std::unique_ptr<Accelerator> accel = make_accelerator(chosen, why);
    if (why) *why = reason;
    return accel;
  }
  if (name == "ref") return accel::make_ref_backend();
  if (name == "vnni") return accel::make_vnni_backend(why);
  if (name == "onednn") return accel::make_onednn_backend(why);
  if (name == "amx") return accel::make_amx_backend(why);
  throw Error("unknown accelerator '" + std::string(name) + "' (use auto, amx, vnni, onednn or ref)");
}

}  // namespace tiledraw
