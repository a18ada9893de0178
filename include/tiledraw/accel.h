#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <map>
#include <vector>

namespace tiledraw {

// The one operation a matrix accelerator runs, the 8-bit S linear layer:
//   y[m, n] = act( (sum_k qx[m, k] * qw[n, k]) * sx[m] * sw[n] + bias[n] )  (+ y[m, n] when accumulating)
// with the int8 products summed exactly in int32 over the whole of K.
enum class Activation : uint8_t { None, GeluTanh, Silu };

struct Epilogue {
  bool bias = false;
  Activation activation = Activation::None;
  bool accumulate = false;  // add into y (a residual) instead of overwriting it

  auto operator<=>(const Epilogue&) const = default;
};

struct MatmulShape {
  int64_t m = 0;  // rows of x (tokens)
  int64_t n = 0;  // outputs
  int64_t k = 0;  // inputs
  Epilogue epilogue;

  auto operator<=>(const MatmulShape&) const = default;
};

// An 8-bit S weight as it lies in a file: q[n, k] row-major, one scale per row;
// or, when the file stores it so (n and k multiples of 64, docs/FORMAT.md), in
// the vnni and amx backends' panel layout, which those backends then use in
// place (q is null).
struct WeightView {
  const int8_t* q;
  const float* scale;
  int64_t n;
  int64_t k;
  const uint8_t* panels = nullptr;
};

// Activations quantized per row, sx[m] = max_k |x[m, k]| / 127, round half to
// even, as 8-bit S weights are. Rows are padded with zeros to a multiple of 64
// bytes, and zero rows follow up to a multiple of 32 rows: the layout every
// backend reads directly (AMX loads whole 16 x 64-byte tiles). Quantize once, use
// for every linear layer that reads the same input (Q, K and V; the adaLN outputs).
class QuantizedActivation {
 public:
  static constexpr int64_t kRowAlign = 64;
  static constexpr int64_t kRowBlock = 32;

  void quantize(const float* x, int64_t rows, int64_t cols, int64_t ldx);
  // The same a row at a time, for producers that make rows one by one (a
  // fused norm): reset(), then quantize_row() for every row, from any thread.
  void reset(int64_t rows, int64_t cols);
  void quantize_row(int64_t row, const float* x);
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t stride() const { return stride_; }
  const int8_t* data() const { return q_.get(); }
  const float* scales() const { return scales_.data(); }
  // sum_k q[m, k], for kernels that multiply unsigned bytes: with weights
  // stored as w + 128, sum_k (w + 128) * q = sum_k w * q + 128 * row_sum.
  const int32_t* row_sums() const { return row_sums_.data(); }
  // For producers that write quantized rows themselves (a convolution's
  // im2col): reset(), then every row's bytes (zero past cols), scale and sum.
  int8_t* mutable_data() { return q_.get(); }
  float* mutable_scales() { return scales_.data(); }
  int32_t* mutable_row_sums() { return row_sums_.data(); }

 private:
  struct FreeAligned {
    void operator()(int8_t* p) const;
  };
  int64_t rows_ = 0, cols_ = 0, stride_ = 0, capacity_ = 0;
  std::unique_ptr<int8_t, FreeAligned> q_;
  std::vector<float> scales_;
  std::vector<int32_t> row_sums_;
};

// A weight re-laid out, once at load, into what one backend's kernels read.
// It remembers where it came from, so that another backend can pack it too
// when this one declines a problem; that needs the source (the mapped model
// file) to outlive it.
class PackedWeight {
 public:
  virtual ~PackedWeight() = default;
  int64_t n() const { return source_.n; }
  int64_t k() const { return source_.k; }
  const WeightView& source() const { return source_; }
  // Whether its runs read the source's memory (stored panels used in place),
  // which must then stay mapped while it lives.
  virtual bool reads_source() const { return false; }

 protected:
  explicit PackedWeight(const WeightView& source) : source_(source) {}

 private:
  WeightView source_;
};

// Everything a backend decides per shape (blocking, thread split, kernel).
// Prepared for a bucket of m, it runs any m up to shape().m.
class Program {
 public:
  virtual ~Program() = default;
  const MatmulShape& shape() const { return shape_; }

 protected:
  explicit Program(const MatmulShape& shape) : shape_(shape) {}

 private:
  MatmulShape shape_;
};

struct MatmulArgs {
  const QuantizedActivation* x;  // [m, k]
  const PackedWeight* weight;    // [n, k], packed by the same backend
  const float* bias;             // [n], when the epilogue has a bias
  float* y;                      // [m, n] with row stride ldy
  int64_t ldy;
};

class Accelerator {
 public:
  virtual ~Accelerator() = default;
  virtual std::string_view name() const = 0;
  // The kernel this backend runs here, for `tiledraw info` and benchmarks.
  virtual std::string kernel() const { return std::string(name()); }
  // Whether this backend can run the shape at all (not whether it is fast).
  virtual bool supports(const MatmulShape& shape) const = 0;
  virtual std::unique_ptr<PackedWeight> pack(const WeightView& weight) const = 0;
  virtual std::unique_ptr<Program> prepare(const MatmulShape& shape) const = 0;
  // Runs x.rows() rows (at most program.shape().m) with the program's threads.
  // Call it outside OpenMP parallel regions: oneDNN, run from inside one,
  // computes wrong results rather than failing.
  virtual void run(const Program& program, const MatmulArgs& args) const = 0;
};

// Backends by name: "ref", "vnni", "onednn", "amx", and "auto", the default:
// our preferred backend and onednn, timed on each new weight shape, the faster
// kept (TILEDRAW_ACCEL names another). Returns null for a backend this machine
// or build cannot run, with the reason in `why`. Throws Error for an unknown name.
std::unique_ptr<Accelerator> make_accelerator(std::string_view name, std::string* why = nullptr);
// Our own backend that `auto` puts first: amx, else vnni, else ref (the first
// that runs here), and why.
std::string preferred_accelerator_name(std::string* why = nullptr);
std::vector<std::string> accelerator_names();

// Programs by (backend, m bucket, n, k, epilogue): with weights passed at run
// time, one program serves every layer of a shape. Safe from several threads.
class ProgramCache {
 public:
  struct Stats {
    uint64_t hits = 0;
    uint64_t misses = 0;
    double prepare_seconds = 0.0;
    size_t programs = 0;
  };

  const Program& get(const Accelerator& accel, const MatmulShape& shape);
  Stats stats() const;
  // Token counts that differ a little share a program: m rounds up to 16, then
  // to a quarter of its power of two (at most 25% above m).
  static int64_t bucket_m(int64_t m);

 private:
  using Key = std::tuple<std::string, MatmulShape>;
  mutable std::mutex mutex_;
  std::map<Key, std::unique_ptr<Program>> programs_;
  Stats stats_;
};

// Quantizes x, finds or prepares the program, and runs it: the whole 8-bit S
// linear layer. `scratch` keeps its buffer between calls.
void linear_8bit_s(const Accelerator& accel, ProgramCache& cache, const float* x, int64_t m, int64_t ldx,
                   const PackedWeight& weight, const float* bias, const Epilogue& epilogue, float* y, int64_t ldy,
                   QuantizedActivation& scratch);

}  // namespace tiledraw
