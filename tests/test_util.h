#pragma once

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "tiledraw/cpu.h"

namespace tiledraw {

// Parameterised tests name ISA levels by their names.
inline void PrintTo(IsaLevel level, std::ostream* os) { *os << isa_level_name(level); }

}  // namespace tiledraw

namespace tiledraw::test {

// A fresh folder per test, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tiledraw-test-XXXXXX").string();
    if (!mkdtemp(pattern.data())) std::abort();
    path_ = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path_)) names.push_back(e.path().filename().string());
    return names;
  }

 private:
  std::filesystem::path path_;
};

// Writes a safetensors file byte by byte as given, for malformed-file tests.
inline void write_raw_safetensors(const std::string& path, const std::string& header, const std::string& data,
                                  uint64_t header_len) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&header_len), 8);
  out << header << data;
}

inline void write_raw_safetensors(const std::string& path, const std::string& header, const std::string& data) {
  write_raw_safetensors(path, header, data, header.size());
}

inline std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// |w - q * scale| <= scale / 2, evaluated exactly in double. The allowance of
// 2^-16 is the rounding of w / scale to float before it is rounded to an integer
// (|w / scale| <= 127, half an ulp each: 127 * 2^-24 < 2^-16 / 2).
inline bool within_half_scale(float w, int8_t q, float scale) {
  const double error = std::abs(static_cast<double>(w) - static_cast<double>(q) * static_cast<double>(scale));
  return error <= static_cast<double>(scale) / 2 * (1 + 1.0 / 65536);
}

template <typename T>
std::span<const std::byte> bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

}  // namespace tiledraw::test
