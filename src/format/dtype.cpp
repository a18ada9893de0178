#include "tiledraw/dtype.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstring>

#include "tiledraw/error.h"

namespace tiledraw {
namespace {

struct DTypeEntry {
  DType dtype;
  std::string_view name;
  size_t size;
};

constexpr std::array<DTypeEntry, 15> kDTypes{{
    {DType::BOOL, "BOOL", 1},       {DType::U8, "U8", 1},   {DType::I8, "I8", 1},
    {DType::F8_E5M2, "F8_E5M2", 1}, {DType::F8_E4M3, "F8_E4M3", 1},
    {DType::I16, "I16", 2},         {DType::U16, "U16", 2}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},       {DType::I32, "I32", 4}, {DType::U32, "U32", 4},
    {DType::F32, "F32", 4},         {DType::F64, "F64", 8}, {DType::I64, "I64", 8},
    {DType::U64, "U64", 8},
}};

const DTypeEntry& entry(DType dtype) { return kDTypes[static_cast<size_t>(dtype)]; }

template <typename T>
T load_unaligned(const std::byte* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

}  // namespace

std::string_view dtype_name(DType dtype) { return entry(dtype).name; }

size_t dtype_size(DType dtype) { return entry(dtype).size; }

std::optional<DType> parse_dtype(std::string_view name) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.name == name) return e.dtype;
  }
  return std::nullopt;
}

bool is_float_dtype(DType dtype) {
  return dtype == DType::F16 || dtype == DType::BF16 || dtype == DType::F32 || dtype == DType::F64;
}

float half_to_float(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  const uint32_t out_exponent = exponent == 31 ? 0xffu : exponent + (127 - 15);
  return std::bit_cast<float>(sign | (out_exponent << 23) | (mantissa << 13));
}

uint16_t float_to_half(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu);
  if (magnitude >= 0x477ff000u) return sign | 0x7c00u;  // 65520 and above round to infinity
  if (magnitude < 0x38800000u) {                         // below 2^-14: a subnormal half
    // Scaling by 2^24 is exact; nearbyint rounds half to even. 1024 encodes 2^-14.
    const float scaled = std::bit_cast<float>(magnitude) * 16777216.0f;
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  uint32_t half = ((((magnitude >> 23) - 127 + 15) << 10) | ((magnitude >> 13) & 0x3ffu));
  const uint32_t rest = magnitude & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
  return sign | static_cast<uint16_t>(half);
}

float bf16_to_float(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

uint16_t float_to_bf16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

void convert_to_f32(DType dtype, const void* src, float* dst, size_t count) {
  const auto* p = static_cast<const std::byte*>(src);
  if (count == 0) return;
  switch (dtype) {
    case DType::F32:
      std::memcpy(dst, p, count * sizeof(float));
      return;
    // Large checkpoints are converted at load: on every thread.
    case DType::F16:
#pragma omp parallel for schedule(static) if (count > (1 << 16))
      for (size_t i = 0; i < count; ++i) dst[i] = half_to_float(load_unaligned<uint16_t>(p + 2 * i));
      return;
    case DType::BF16:
#pragma omp parallel for schedule(static) if (count > (1 << 16))
      for (size_t i = 0; i < count; ++i) dst[i] = bf16_to_float(load_unaligned<uint16_t>(p + 2 * i));
      return;
    case DType::F64:
#pragma omp parallel for schedule(static) if (count > (1 << 16))
      for (size_t i = 0; i < count; ++i) dst[i] = static_cast<float>(load_unaligned<double>(p + 8 * i));
      return;
    default:
      throw Error("cannot read " + std::string(dtype_name(dtype)) + " as floating point");
  }
}

}  // namespace tiledraw
