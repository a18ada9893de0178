#pragma once

#include <cstdint>

#include "accel/panel_weight.h"
#include "tiledraw/accel.h"

// The vnni backend's micro-kernels, on PanelWeight's layout.
namespace tiledraw::accel::vnni {

// One call: up to a kernel's row count of x against one panel of weights.
struct GemmTile {
  const int8_t* a;         // first row of quantized x
  int64_t lda;             // its row stride, a multiple of 64
  const float* a_scale;    // one per row
  const int8_t* b;         // the panel
  int64_t k_groups;        // padded K / 4
  const float* b_scale;    // 64 per-column scales (zero past N)
  const int32_t* a_sum;    // per-row sums of x, for the shifted weights
  const float* bias;       // the panel's first bias, or null
  float* y;
  int64_t ldy;
  int64_t rows;            // valid rows, up to the kernel's
  int64_t cols;            // valid columns, up to 64
  Activation activation;
  bool accumulate;
};

// 6 rows x 64 columns, shifted weights (unsigned) times x (signed, broadcast
// straight from memory).
void qs8_qc8w_gemm_f32__avx512vnni_6x64(const GemmTile& tile);
inline constexpr int64_t kRowsAvx512 = 6;

// 4 rows x 64 columns in four 16-column passes, weights not shifted: |x| times
// sign(x) * w with VPMADDUBSW, which cannot saturate since |x|, |w| <= 127.
void qs8_qc8w_gemm_f32__avx2_4x16(const GemmTile& tile);
inline constexpr int64_t kRowsAvx2 = 4;

}  // namespace tiledraw::accel::vnni
