#pragma once

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <sstream>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "tiledraw/cpu.h"
#include "tiledraw/safetensors.h"

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

// Sets (or, given nullptr, unsets) environment variables for a test's
// lifetime; the old values come back at the end.
class ScopedEnvironment {
 public:
  ScopedEnvironment() = default;
  ScopedEnvironment(const ScopedEnvironment&) = delete;
  ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;
  ~ScopedEnvironment() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second) {
        setenv(it->first.c_str(), it->second->c_str(), 1);
      } else {
        unsetenv(it->first.c_str());
      }
    }
  }
  void set(const std::string& name, const char* value) {
    const char* old = std::getenv(name.c_str());
    saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
    if (value) {
      setenv(name.c_str(), value, 1);
    } else {
      unsetenv(name.c_str());
    }
  }
  void set(const std::string& name, const std::string& value) { set(name, value.c_str()); }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

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

// The stored panel layout of docs/FORMAT.md, written out from its definition:
// byte ((p * K/4 + g) * 64 + c) * 4 + i holds q[p * 64 + c, 4 g + i] + 128.
inline std::vector<uint8_t> stored_panels(const std::vector<int8_t>& q, int64_t n, int64_t k) {
  std::vector<uint8_t> out(q.size());
  for (int64_t row = 0; row < n; ++row) {
    for (int64_t col = 0; col < k; ++col) {
      const int64_t p = row / 64, c = row % 64, g = col / 4, i = col % 4;
      out[static_cast<size_t>(((p * (k / 4) + g) * 64 + c) * 4 + i)] = static_cast<uint8_t>(q[row * k + col] + 128);
    }
  }
  return out;
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

using TensorShapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

// F32 tensors of these names and shapes, random (a seed per tensor, from
// `seed` on, values within +-scale), written to `path`. A `poisoned` tensor
// gets a NaN as its first value.
inline void write_random_safetensors(const std::string& path, const TensorShapes& shapes,
                                     const std::map<std::string, std::string>& metadata, uint32_t seed = 1,
                                     float scale = 0.2f, const std::string& poisoned = "") {
  std::vector<std::vector<float>> storage;
  storage.reserve(shapes.size());
  std::vector<TensorSource> tensors;
  for (const auto& [name, shape] : shapes) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    storage.push_back(random_floats(static_cast<size_t>(n), seed++, scale));
    if (name == poisoned) storage.back()[0] = std::numeric_limits<float>::quiet_NaN();
    tensors.push_back(TensorSource::from_bytes(name, DType::F32, shape, bytes_of(storage.back())));
  }
  write_safetensors(path, std::move(tensors), metadata);
}

// The tensors of a pixel-space DiT (1 channel, 8 x 8, patch 2, width 32, one
// block, 3 classes, learned sigma) in the original layout.
inline TensorShapes pixel_dit_shapes() {
  const int64_t h = 32, p = 2, tokens = 16, classes = 3;
  return {{"pos_embed", {1, tokens, h}}, {"x_embedder.proj.weight", {h, 1, p, p}}, {"x_embedder.proj.bias", {h}},
          {"t_embedder.mlp.0.weight", {h, 256}}, {"t_embedder.mlp.0.bias", {h}}, {"t_embedder.mlp.2.weight", {h, h}},
          {"t_embedder.mlp.2.bias", {h}}, {"y_embedder.embedding_table.weight", {classes + 1, h}},
          {"blocks.0.attn.qkv.weight", {3 * h, h}}, {"blocks.0.attn.qkv.bias", {3 * h}},
          {"blocks.0.attn.proj.weight", {h, h}}, {"blocks.0.attn.proj.bias", {h}},
          {"blocks.0.mlp.fc1.weight", {4 * h, h}}, {"blocks.0.mlp.fc1.bias", {4 * h}},
          {"blocks.0.mlp.fc2.weight", {h, 4 * h}}, {"blocks.0.mlp.fc2.bias", {h}},
          {"blocks.0.adaLN_modulation.1.weight", {6 * h, h}}, {"blocks.0.adaLN_modulation.1.bias", {6 * h}},
          {"final_layer.linear.weight", {p * p * 2, h}}, {"final_layer.linear.bias", {p * p * 2}},
          {"final_layer.adaLN_modulation.1.weight", {2 * h, h}}, {"final_layer.adaLN_modulation.1.bias", {2 * h}}};
}

// A VAE's tensor shapes under diffusers' names and the original (LDM) ones,
// for tests that write one in either layout.
class VaeTensorShapes {
 public:
  struct Entry {
    std::string diffusers, original;
    std::vector<int64_t> shape;
  };
  void conv(const std::string& d, const std::string& l, int64_t out, int64_t in, int64_t k) {
    entries_.push_back({d + ".weight", l + ".weight", {out, in, k, k}});
    entries_.push_back({d + ".bias", l + ".bias", {out}});
  }
  void norm(const std::string& d, const std::string& l, int64_t c) {
    entries_.push_back({d + ".weight", l + ".weight", {c}});
    entries_.push_back({d + ".bias", l + ".bias", {c}});
  }
  void resnet(const std::string& d, const std::string& l, int64_t in, int64_t out) {
    norm(d + ".norm1", l + ".norm1", in);
    conv(d + ".conv1", l + ".conv1", out, in, 3);
    norm(d + ".norm2", l + ".norm2", out);
    conv(d + ".conv2", l + ".conv2", out, out, 3);
    if (in != out) conv(d + ".conv_shortcut", l + ".nin_shortcut", out, in, 1);
  }
  // The mid block's attention of `half` ("decoder" or "encoder"): diffusers'
  // linear q/k/v/out as 1x1 convolutions or as matrices ([c, c]).
  void mid_attention(const std::string& half, int64_t c, bool as_matrices) {
    norm(half + ".mid_block.attentions.0.group_norm", half + ".mid.attn_1.norm", c);
    for (const auto& [d, l] : std::vector<std::pair<std::string, std::string>>{
             {"to_q", "q"}, {"to_k", "k"}, {"to_v", "v"}, {"to_out.0", "proj_out"}}) {
      conv(half + ".mid_block.attentions.0." + d, half + ".mid.attn_1." + l, c, c, 1);
      if (as_matrices) entries_[entries_.size() - 2].shape = {c, c};
    }
  }
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  std::vector<Entry> entries_;
};

// That DiT with random weights, written as pixel-dit.safetensors in `dir`.
inline std::string write_pixel_dit(const TempDir& dir, const std::string& poisoned = "") {
  write_random_safetensors(dir.file("pixel-dit.safetensors"), pixel_dit_shapes(),
                           {{"config", R"({"num_heads": 2, "input_size": 8})"}}, 1, 0.2f, poisoned);
  return dir.file("pixel-dit.safetensors");
}

// A kohya-ss LoRA file for the bundled text-to-image model (SD 1.x layout),
// random (no alpha: a scale of 1), written to `path` (its folders made): one
// layer of the UNet's self-attention and one of its cross-attention, and
// with `text` one of the text encoder. A layer gets the same values with or
// without the text encoder's.
inline void write_bundled_model_lora(const std::string& path, const std::map<std::string, std::string>& metadata,
                                     bool text = true) {
  TensorShapes shapes = {{"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight", {4, 64}},
                         {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight", {64, 4}},
                         {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_v.lora_down.weight", {4, 128}},
                         {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_v.lora_up.weight", {64, 4}}};
  if (text) {
    shapes.push_back({"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", {4, 128}});
    shapes.push_back({"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", {128, 4}});
  }
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  write_random_safetensors(path, shapes, metadata, 1, 0.5f);
}

}  // namespace tiledraw::test
