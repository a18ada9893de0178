#include "tiledraw/quant8s.h"

#include <cmath>

#include "accel/panel_weight.h"
#include "kernels/quantize/quantize_rows.h"
#include "tiledraw/cpu.h"
#include "tiledraw/error.h"

namespace tiledraw {

std::string scale_tensor_name(std::string_view weight_name) { return std::string(weight_name) + "_scale"; }

Precision parse_precision(std::string_view name) {
  if (name == "auto") return Precision::AsStored;
  if (name == "float") return Precision::Float;
  if (name == "8bit-s" || name == "int8") return Precision::Int8;
  throw Error("unknown precision '" + std::string(name) + "' (expected auto, float or 8bit-s)");
}

void quantize_rows_8bit_s(const float* x, size_t rows, size_t cols, int8_t* q, float* scales) {
  static const kernels::QuantizeRowsFn kernel = kernels::quantize_rows_kernel(isa_level());
  kernel(x, rows, cols, q, scales);
}

void require_finite_scales(const float* scales, size_t rows, size_t first_row, const std::string& what) {
  for (size_t r = 0; r < rows; ++r) {
    if (std::isnan(scales[r])) {
      throw Error(what + " holds NaN or infinity (row " + std::to_string(first_row + r) + "); cannot quantize it");
    }
  }
}

Layout8BitS parse_layout_8bit_s(std::string_view name) {
  if (name == "rows") return Layout8BitS::Rows;
  if (name == "panels") return Layout8BitS::Panels;
  throw Error("unknown 8-bit S layout '" + std::string(name) + "' (expected rows or panels)");
}

bool fits_panels_8bit_s(int64_t rows, int64_t cols) { return accel::fits_stored_panels(rows, cols); }

void rows_to_panels_8bit_s(const int8_t* q, int64_t rows, int64_t cols, uint8_t* panels) {
  accel::pack_stored_panels(q, rows, cols, panels);
}

void panels_to_rows_8bit_s(const uint8_t* panels, int64_t rows, int64_t cols, int8_t* q) {
  accel::unpack_stored_panels(panels, rows, cols, q);
}

std::vector<int8_t> Weight8BitS::read_rows(const SafetensorsFile& file) const {
  const std::byte* stored = file.data(*values).data();
  if (layout() == Layout8BitS::Rows) {
    const auto* q = reinterpret_cast<const int8_t*>(stored);
    return {q, q + rows * cols};
  }
  std::vector<int8_t> q(static_cast<size_t>(rows * cols));
  panels_to_rows_8bit_s(reinterpret_cast<const uint8_t*>(stored), rows, cols, q.data());
  return q;
}

std::vector<float> Weight8BitS::dequantize(const SafetensorsFile& file) const {
  const std::vector<float> scales = load_scales(file);
  const std::vector<int8_t> q = read_rows(file);
  std::vector<float> w(q.size());
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(q[i]) * scales[i / static_cast<size_t>(cols)];
  return w;
}

std::vector<float> Weight8BitS::load_scales(const SafetensorsFile& file) const {
  std::vector<float> out(static_cast<size_t>(rows));
  convert_to_f32(scale->dtype, file.data(*scale).data(), out.data(), out.size());
  for (size_t r = 0; r < out.size(); ++r) {
    if (!std::isfinite(out[r])) {
      throw Error(file.path() + ": tensor '" + scale->name + "': scale of row " + std::to_string(r) + " is not finite");
    }
  }
  return out;
}

bool holds_8bit_s_values(const SafetensorsFile& file, const TensorInfo& t) {
  return t.dtype == DType::I8 || (t.dtype == DType::U8 && file.find(scale_tensor_name(t.name)));
}

std::vector<Weight8BitS> find_8bit_s_weights(const SafetensorsFile& file) {
  std::vector<Weight8BitS> weights;
  for (const TensorInfo& values : file.tensors()) {
    if (values.dtype != DType::I8 && values.dtype != DType::U8) continue;
    const TensorInfo* scale = file.find(scale_tensor_name(values.name));
    if (!scale) continue;
    const std::string where = file.path() + ": 8-bit S weight '" + values.name + "': ";
    if (values.shape.size() < 2) {
      throw Error(where + "has rank " + std::to_string(values.shape.size()) + ", expected a matrix (rank 2 or more)");
    }
    const int64_t rows = values.shape[0];
    if (scale->dtype != DType::F32 && scale->dtype != DType::F16 && scale->dtype != DType::BF16) {
      throw Error(where + "scale '" + scale->name + "' is " + std::string(dtype_name(scale->dtype)) +
                  ", expected F32, F16 or BF16");
    }
    const bool row_shape = (scale->shape.size() == 1 && scale->shape[0] == rows) ||
                           (scale->shape.size() == 2 && scale->shape[0] == rows && scale->shape[1] == 1);
    if (!row_shape) {
      throw Error(where + "scale '" + scale->name + "' has shape " + shape_string(scale->shape) + ", expected [" + std::to_string(rows) +
                  "] (one per output row)");
    }
    const int64_t cols = rows == 0 ? 0 : values.numel() / rows;
    if (values.dtype == DType::U8 && !fits_panels_8bit_s(rows, cols)) {
      throw Error(where + "is U8 (panels) of shape " + shape_string(values.shape) +
                  ", but panels need rows and columns that are multiples of 64");
    }
    weights.push_back({&values, scale, rows, cols});
  }
  return weights;
}

}  // namespace tiledraw
