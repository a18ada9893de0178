#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tiledraw/safetensors.h"

namespace tiledraw {

// 8-bit S: a weight W[N, K] stored as int8 q[N, K] plus one float scale per
// output row, W[n, k] ~= q[n, k] * scale[n]. See docs/FORMAT.md.
inline constexpr std::string_view kFormat8BitS = "8bit-s";
inline constexpr std::string_view kFormat8BitSVersion = "2";  // 2: panels

std::string scale_tensor_name(std::string_view weight_name);  // "<name>_scale"

// How a model's matrices run: as the file stores them, all in float (8-bit S
// dequantized), or all in 8-bit S (float weights quantized at load).
enum class Precision { AsStored, Float, Int8 };
Precision parse_precision(std::string_view name);  // auto, float, 8bit-s

// Quantizes `rows` rows of `cols` floats:
//   scale[r] = max(max_k |x[r, k]| / 127, FLT_MIN)   (an all-zero row never gets a zero scale)
//   q[r, k] = clamp(round_half_even(x[r, k] / scale[r]), -127, 127)
// so that |x - q * scale| <= scale / 2 for every element. A row holding NaN or
// infinity gets zeros and a NaN scale. Picks the fastest kernel this CPU
// supports; all kernels give identical bits.
void quantize_rows_8bit_s(const float* x, size_t rows, size_t cols, int8_t* q, float* scales);

// For weights, which must be finite: an Error "WHAT holds NaN or infinity (row
// N); cannot quantize it" for the first NaN scale, rows numbered from `first_row`.
void require_finite_scales(const float* scales, size_t rows, size_t first_row, const std::string& what);

// How a file stores an 8-bit S weight's values: I8 rows q[N, K] (ComfyUI's
// int8 checkpoints), or U8 panels, the accelerator's own layout, which loading
// maps instead of re-laying (N and K multiples of 64; docs/FORMAT.md).
enum class Layout8BitS { Rows, Panels };
Layout8BitS parse_layout_8bit_s(std::string_view name);  // rows, panels
// Whether a weight of N rows and K columns can be stored as panels.
bool fits_panels_8bit_s(int64_t rows, int64_t cols);
// Between the layouts, N * K bytes each way.
void rows_to_panels_8bit_s(const int8_t* q, int64_t rows, int64_t cols, uint8_t* panels);
void panels_to_rows_8bit_s(const uint8_t* panels, int64_t rows, int64_t cols, int8_t* q);

// An 8-bit S weight found in a file: the values tensor (I8 rows or U8 panels)
// and its scale tensor.
struct Weight8BitS {
  const TensorInfo* values;
  const TensorInfo* scale;
  int64_t rows;  // N, the output dimension (shape[0])
  int64_t cols;  // K, all other dimensions folded

  Layout8BitS layout() const { return values->dtype == DType::U8 ? Layout8BitS::Panels : Layout8BitS::Rows; }
  std::vector<float> load_scales(const SafetensorsFile& file) const;
  // q[N, K] row-major, whichever the layout.
  std::vector<int8_t> read_rows(const SafetensorsFile& file) const;
  // W[N, K] ~= q * scale, row-major.
  std::vector<float> dequantize(const SafetensorsFile& file) const;
};

// Every 8-bit S weight in the file, validated: an I8 or U8 tensor of rank >= 2
// whose "<name>_scale" tensor exists is one, and its scale must then be F32,
// F16 or BF16 of shape [N] or [N, 1] (and a U8 one fit the panels). Throws
// Error naming the file and tensor otherwise.
std::vector<Weight8BitS> find_8bit_s_weights(const SafetensorsFile& file);

// Whether a loader reads tensor `t` as an 8-bit S weight's values: any I8
// tensor (its scale is then required), or a U8 one beside its scale.
bool holds_8bit_s_values(const SafetensorsFile& file, const TensorInfo& t);

}  // namespace tiledraw
