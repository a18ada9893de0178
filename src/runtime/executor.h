#pragma once

#include <array>
#include <atomic>
#include <cstdio>
#include <map>
#include <string>
#include <memory>
#include <vector>

#include "accel/aligned.h"
#include "kernels/attention/attention.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/layout/layout.h"
#include "kernels/norm/norm.h"
#include "kernels/quantize/im2col_quantize.h"
#include "runtime/graph.h"
#include "runtime/planner.h"
#include "tiledraw/accel.h"
#include "tiledraw/memory.h"

namespace tiledraw::runtime {

// Time and work by kind of op, summed over runs: what `--profile` prints.
class Profile {
 public:
  struct Entry {
    int64_t calls = 0;
    double seconds = 0.0;
    double ops = 0.0;  // arithmetic operations, where counted (linear: 2 m n k)
  };
  // Linear layers and convolutions on the float path count apart from those
  // on the accelerator.
  void add(OpKind kind, bool float_path, double seconds, double ops);
  const Entry& at(OpKind kind, bool float_path = false) const { return entries_[index(kind, float_path)]; }
  // The table: calls, ms, share, GOP/s by op; the matmul backend, program
  // cache figures and the arena size.
  void print(std::FILE* out, const Accelerator& accel, const ProgramCache::Stats& cache, int64_t arena_bytes) const;
  // A matmul the accelerator declined and another backend ran.
  void add_fallback(const std::string& backend) { fallbacks_[backend] += 1; }
  const std::map<std::string, int64_t>& fallbacks() const { return fallbacks_; }

 private:
  std::map<std::string, int64_t> fallbacks_;
  static size_t index(OpKind kind, bool float_path);
  std::array<Entry, kOpKinds + 2> entries_{};
};

// True when none of the `count` floats is NaN or infinite.
bool all_finite(const float* x, int64_t count);

// Runs a graph: intermediates in one arena laid out by the planner (reused
// across runs, so across denoising steps), each op on the fastest kernel this
// CPU has, linear layers through the accelerator. An input read by several
// linear layers is quantized once per run.
class Executor {
 public:
  Executor(const Graph& graph, const Accelerator& accel, ProgramCache& cache, bool reuse_memory = true);

  // One pointer per graph input, in the order they were declared. Throws
  // Cancelled between two ops once the cancel flag is set.
  void run(const std::vector<const float*>& inputs);
  void set_cancel_flag(const std::atomic<bool>* cancel) { cancel_ = cancel; }
  // Runs again on the same inputs after a run whose output held NaN or Inf,
  // checking each op's output, and describes the first op that made one
  // (Graph::describe); empty when none did.
  std::string locate_non_finite(const std::vector<const float*>& inputs);
  // A value's memory after a run (outputs stay valid until the next run).
  const float* data(int value) const;
  const MemoryPlan& plan() const { return plan_; }
  const Profile& profile() const { return profile_; }

 private:
  void bind(const std::vector<const float*>& inputs);
  bool output_finite(size_t node) const;
  float* address(int value) const;
  const QuantizedActivation& quantized(int value);
  void run_node(const Node& node);
  double run_conv2d(const Node& node, const float* x, float* y);
  // out[c * ld_out + r] = in[r * ld_in + c], the columns split between the threads.
  void parallel_transpose(const float* in, int64_t ld_in, int64_t rows, int64_t cols, float* out, int64_t ld_out) const;
  // The accelerator for a matmul, and the weight as that backend packed it: the
  // executor's own, or, when it declines the shape, the first of vnni and ref
  // that accepts it, with the weight packed again from its source (once).
  std::pair<const Accelerator*, const PackedWeight*> backend_for(const MatmulShape& shape, const PackedWeight& weight);
  void run_norm_modulate(const Node& node, const float* x, float* y);
  QuantizedActivation& quantized_slot(int root);  // the value's buffer, from the pool when it has none
  void release_quantized(size_t node_index);
  bool only_quantized_linears_read(int value) const;

  const Graph& graph_;
  const Accelerator& accel_;
  ProgramCache& cache_;
  MemoryPlan plan_;
  MemoryReservation arena_reservation_;
  accel::AlignedArray<std::byte> arena_;
  std::vector<const float*> inputs_;
  // The 8-bit copy of each value a quantized linear reads, held from its
  // first reader to its last: then the buffer goes back to a pool for the
  // next value, so that a run holds the copies still to be read, not one per
  // value (1.7 GiB for SDXL's UNet at 1024 x 1024).
  std::vector<std::unique_ptr<QuantizedActivation>> quantized_;  // per value
  std::vector<int64_t> quantized_in_run_;
  std::vector<std::vector<int>> quantized_last_read_;  // per node: the values it reads quantized last
  std::vector<std::unique_ptr<QuantizedActivation>> free_quantized_;
  std::vector<bool> quantize_only_;  // per node: a NormModulate whose floats nobody reads
  std::map<std::string, std::unique_ptr<Accelerator>> fallbacks_;
  std::map<std::pair<const Accelerator*, const PackedWeight*>, std::unique_ptr<PackedWeight>> repacked_;
  int64_t run_count_ = 0;
  const std::atomic<bool>* cancel_ = nullptr;
  kernels::Im2colQuantizeFn im2col_quantize_;
  kernels::TransposeFn transpose_;
  // Convolution scratch: each input pixel's absolute maximum over channels,
  // a chunk of im2col rows (float path) or their quantized bytes, and the
  // chunk's outputs.
  std::vector<float> conv_absmax_, conv_rows_, conv_out_;
  QuantizedActivation conv_x_;
  const kernels::ElementwiseKernels& elementwise_;
  const kernels::RowKernels& rows_;
  Profile profile_;
};

}  // namespace tiledraw::runtime
