#pragma once

#include <cstdint>

#include "accel/panel_weight.h"
#include "tiledraw/accel.h"

// The amx backend's kernel: a run of tasks on one thread, each task one weight
// panel against a run of rows, in blocks of 32 rows x 32 columns (2 x 2 tiles
// of 16 x 16 int32 sums). TDPBSUD multiplies signed activations by the shifted
// (unsigned) panels that the AVX512-VNNI kernel also reads, so the small-M
// fallback needs no second copy of the weights.
namespace tiledraw::accel::amx {

struct AmxGemm {
  const QuantizedActivation* x;  // rows padded with zero rows to a multiple of 32
  const PanelWeight* weight;     // shifted
  const float* bias;             // null without one
  float* y;
  int64_t ldy;
  Activation activation;
  bool accumulate;
  int64_t rows_per_task;  // a multiple of 32
  int64_t row_tasks;      // task t is panel t / row_tasks, rows (t % row_tasks) * rows_per_task...
};

// Loads the tile configuration once, runs tasks [begin, end), releases the tiles.
using AmxTasksFn = void (*)(const AmxGemm& gemm, int64_t begin, int64_t end);

void qs8_qc8w_gemm_f32__amx_32x32(const AmxGemm& gemm, int64_t begin, int64_t end);

}  // namespace tiledraw::accel::amx
