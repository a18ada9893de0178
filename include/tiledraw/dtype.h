#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tiledraw {

// Element types of the safetensors format, spelled as the format spells them.
enum class DType : uint8_t {
  BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64,
};

std::string_view dtype_name(DType dtype);
std::optional<DType> parse_dtype(std::string_view name);
size_t dtype_size(DType dtype);
bool is_float_dtype(DType dtype);  // F16, BF16, F32, F64: types convert reads as float

float half_to_float(uint16_t bits);
uint16_t float_to_half(float value);  // round to nearest even, overflow to infinity
float bf16_to_float(uint16_t bits);
uint16_t float_to_bf16(float value);  // round to nearest even, NaN stays NaN

// Converts `count` elements of a float dtype (see is_float_dtype) to float32.
// `src` need not be aligned.
void convert_to_f32(DType dtype, const void* src, float* dst, size_t count);

}  // namespace tiledraw
