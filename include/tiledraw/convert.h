#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tiledraw/dtype.h"
#include "tiledraw/quant8s.h"
#include "tiledraw/safetensors.h"

namespace tiledraw {

struct ConvertOptions {
  // Glob patterns (fnmatch) of tensor names to keep in floating point.
  std::vector<std::string> keep_patterns;
  // Matrices with fewer elements stay in floating point.
  int64_t min_elements = 4096;
  // Written to the metadata when not empty; otherwise the source's values are kept.
  std::string architecture;
  std::string config_json;
  // Tensors added to the output as they are (an embedded tokenizer, say); a
  // source tensor of the same name is left out.
  std::vector<TensorSource> extra_tensors;
  // How 8-bit S weights are written: as panels where they fit (loading then
  // maps them), or all as rows (ComfyUI's int8 checkpoints). Weights already
  // 8-bit S are re-laid to match.
  Layout8BitS layout = Layout8BitS::Panels;
  // Changes to float weights made before they are rounded or written (LoRA
  // adapters baked in), by input file (its path as std::filesystem's
  // weakly_canonical gives it) and tensor name: given rows [first_row,
  // first_row + rows) of `cols` values in f32, it adds to them in place.
  using RowsUpdate = std::function<void(int64_t first_row, int64_t rows, int64_t cols, float* values)>;
  std::map<std::pair<std::string, std::string>, RowsUpdate> updates;
};

enum class TensorAction { Quantized, Kept, Copied };

struct ConvertedTensor {
  std::string name;
  DType source_dtype;
  std::vector<int64_t> shape;
  TensorAction action;
  std::string reason;           // why it was kept or copied
  double relative_error = 0.0;  // ||W - q*s|| / ||W|| for quantized tensors
};

struct ConvertReport {
  std::vector<ConvertedTensor> tensors;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  size_t quantized = 0;
  size_t panels = 0;  // 8-bit S weights written as panels
  size_t updated = 0;  // tensors ConvertOptions::updates changed
  double worst_relative_error = 0.0;
  std::string worst_tensor;
  double mean_relative_error = 0.0;
};

// Called after each output tensor is written: (done, total, tensor name).
using ConvertProgress = std::function<void(size_t, size_t, const std::string&)>;

// Reads a float safetensors file and writes it as 8-bit S: every matrix weight
// (see docs/FORMAT.md for the rule) becomes I8 rows or U8 panels plus a
// row-scale tensor, the rest
// is copied unchanged. The output appears only when complete.
ConvertReport convert_to_8bit_s(const std::string& input_path, const std::string& output_path,
                                const ConvertOptions& options, const ConvertProgress& progress = {});

// A diffusers folder (model_index.json) as 8-bit S, into a new folder: each
// component's safetensors files converted as above, every other file (configs,
// tokenizers, the scheduler) copied. The folder appears only when complete;
// tensor names in the report carry their component ("unet/conv_in.weight").
ConvertReport convert_folder_to_8bit_s(const std::string& input_folder, const std::string& output_folder,
                                       const ConvertOptions& options, const ConvertProgress& progress = {});

}  // namespace tiledraw
