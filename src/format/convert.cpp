#include "tiledraw/convert.h"

#include <fnmatch.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "tiledraw/error.h"
#include "tiledraw/quant8s.h"
#include "tiledraw/safetensors.h"
#include "tiledraw/tiledraw.h"

namespace tiledraw {
namespace {

// Rows converted and quantized at a time: bounds scratch memory for large tensors.
constexpr size_t kBlockElements = 1 << 20;
// Hidden layers widen at most 8-fold (GEGLU's two halves of 4x) and narrow at
// most 4-fold, so a layer that widens more reads the model's input (pixels,
// latents) and one that narrows 8-fold or more writes its output.
constexpr int64_t kEdgeLayerRatio = 8;

struct Decision {
  TensorAction action;
  std::string reason;
};

bool contains_ignoring_case(std::string_view text, std::string_view word) {
  return std::search(text.begin(), text.end(), word.begin(), word.end(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == b;
         }) != text.end();
}

// The layer's own name: "time_embedding.linear_1.weight" -> "linear_1", so that
// a table that is looked up ("token_embedding.weight", "embedding_table.weight")
// is told from a matrix inside a module named after embeddings.
std::string_view layer_name(std::string_view tensor_name) {
  std::string_view layer = tensor_name.substr(0, tensor_name.size() - std::string_view("weight").size());
  if (layer.ends_with('.') || layer.ends_with('_')) layer.remove_suffix(1);
  const size_t dot = layer.rfind('.');
  return dot == std::string_view::npos ? layer : layer.substr(dot + 1);
}

Decision decide(const TensorInfo& t, const ConvertOptions& options, const std::set<std::string>& already_8bit_s) {
  if (already_8bit_s.count(t.name)) return {TensorAction::Copied, "already 8-bit S"};
  for (const std::string& pattern : options.keep_patterns) {
    if (fnmatch(pattern.c_str(), t.name.c_str(), 0) == 0) return {TensorAction::Kept, "matches the keep pattern '" + pattern + "'"};
  }
  if (!is_float_dtype(t.dtype)) return {TensorAction::Copied, "not floating point"};
  if (t.shape.size() != 2 && t.shape.size() != 4) {
    return {TensorAction::Kept, "rank " + std::to_string(t.shape.size()) + ", not a matrix"};
  }
  if (!std::string_view(t.name).ends_with("weight")) return {TensorAction::Kept, "not a weight"};
  if (contains_ignoring_case(layer_name(t.name), "embedding")) return {TensorAction::Kept, "embedding table"};
  if (t.numel() < options.min_elements) {
    return {TensorAction::Kept, "fewer than " + std::to_string(options.min_elements) + " elements"};
  }
  // Measured (docs/FORMAT.md): in float, the output layer halves DiT's error
  // and the first and last layers together take 4-9% off SD's, for a few KiB.
  const std::string widths = std::to_string(t.shape[0]) + " rows from " + std::to_string(t.shape[1]) + " input channels";
  if (t.shape[0] * kEdgeLayerRatio <= t.shape[1]) return {TensorAction::Kept, "output layer: " + widths};
  if (t.shape[1] * kEdgeLayerRatio < t.shape[0]) return {TensorAction::Kept, "input layer: " + widths};
  return {TensorAction::Quantized, ""};
}

// Quantizes a weight block by block, after `update` (if any) changed its
// floats, handing each block to `visit`.
template <typename Visit>
void quantize_blocks(const SafetensorsFile& file, const TensorInfo& t, const ConvertOptions::RowsUpdate* update,
                     Visit visit) {
  const size_t rows = static_cast<size_t>(t.shape[0]);
  const size_t cols = rows == 0 ? 0 : static_cast<size_t>(t.numel()) / rows;
  const size_t block_rows = std::max<size_t>(1, kBlockElements / std::max<size_t>(cols, 1));
  std::vector<float> x(std::min(rows, block_rows) * cols);
  std::vector<int8_t> q(x.size());
  std::vector<float> scales(std::min(rows, block_rows));
  const std::byte* src = file.data(t).data();
  const size_t row_bytes = cols * dtype_size(t.dtype);
  for (size_t r0 = 0; r0 < rows; r0 += block_rows) {
    const size_t n = std::min(block_rows, rows - r0);
    convert_to_f32(t.dtype, src + r0 * row_bytes, x.data(), n * cols);
    if (update) (*update)(static_cast<int64_t>(r0), static_cast<int64_t>(n), static_cast<int64_t>(cols), x.data());
    quantize_rows_8bit_s(x.data(), n, cols, q.data(), scales.data());
    require_finite_scales(scales.data(), n, r0, file.path() + ": tensor '" + t.name + "'");
    visit(r0, n, cols, x.data(), q.data(), scales.data());
  }
}

// Floats back into a float dtype's bytes (round to nearest even).
void write_f32_as(DType dtype, const std::vector<float>& x, std::span<std::byte> dst) {
  if (dtype == DType::F32) {
    std::memcpy(dst.data(), x.data(), x.size() * sizeof(float));
    return;
  }
  if (dtype != DType::F16 && dtype != DType::BF16) throw Error(std::string("cannot write ") + std::string(dtype_name(dtype)));
  auto* out = reinterpret_cast<uint16_t*>(dst.data());
  for (size_t i = 0; i < x.size(); ++i) out[i] = dtype == DType::F16 ? float_to_half(x[i]) : float_to_bf16(x[i]);
}

std::map<std::string, std::string> output_metadata(const SafetensorsFile& in, const ConvertOptions& options) {
  std::map<std::string, std::string> metadata = in.metadata();
  metadata["format"] = kFormat8BitS;
  metadata["format_version"] = kFormat8BitSVersion;
  metadata["converted_by"] = std::string("tiledraw ") + version();
  if (!options.architecture.empty()) metadata["architecture"] = options.architecture;
  if (!options.config_json.empty()) {
    const auto config = nlohmann::json::parse(options.config_json, nullptr, false);
    if (config.is_discarded() || !config.is_object()) throw Error("the config to record is not a JSON object");
    metadata["config"] = config.dump();
  }
  return metadata;
}

// Every update must be for one of `files` (canonical paths): one for a file
// that is not converted would be dropped without a word.
void require_updates_for(const ConvertOptions& options, const std::set<std::string>& files, const std::string& what) {
  for (const auto& [where, update] : options.updates) {
    if (!files.count(where.first)) throw Error(what + ": holds no file " + where.first + " to update '" + where.second + "' in");
  }
}

ConvertReport convert_file(const std::string& input_path, const std::string& output_path, const ConvertOptions& options,
                           const ConvertProgress& progress) {
  const SafetensorsFile in = SafetensorsFile::open(input_path);
  const std::map<std::string, std::string> metadata = output_metadata(in, options);
  std::set<std::string> already_8bit_s;
  std::map<std::string, Weight8BitS> stored_weights;
  for (const Weight8BitS& w : find_8bit_s_weights(in)) {
    already_8bit_s.insert(w.values->name);
    already_8bit_s.insert(w.scale->name);
    stored_weights.emplace(w.values->name, w);
  }
  const auto written_as_panels = [&options](int64_t rows, int64_t cols) {
    return options.layout == Layout8BitS::Panels && fits_panels_8bit_s(rows, cols);
  };

  const std::string canonical_path = std::filesystem::weakly_canonical(input_path).string();
  size_t updated = 0;
  ConvertReport report;
  report.bytes_in = in.file_size();
  report.tensors.reserve(in.tensors().size());  // fills below keep pointers into it
  std::vector<TensorSource> out;
  std::vector<double> error_sq(in.tensors().size()), norm_sq(in.tensors().size());
  std::set<std::string> replaced;
  for (const TensorSource& extra : options.extra_tensors) replaced.insert(extra.name);
  for (const TensorInfo& t : in.tensors()) {
    if (replaced.count(t.name)) continue;
    const Decision decision = decide(t, options, already_8bit_s);
    report.tensors.push_back({t.name, t.dtype, t.shape, decision.action, decision.reason, 0.0});
    const auto found = options.updates.find({canonical_path, t.name});
    const ConvertOptions::RowsUpdate* update = found == options.updates.end() ? nullptr : &found->second;
    if (update) {
      ++updated;
      if (already_8bit_s.count(t.name)) {
        throw Error(input_path + ": '" + t.name + "' is 8-bit S already; bake adapters into the float weights it came from");
      }
      if (decision.action != TensorAction::Quantized && t.dtype != DType::F32 && t.dtype != DType::F16 &&
          t.dtype != DType::BF16) {
        throw Error(input_path + ": '" + t.name + "' is " + std::string(dtype_name(t.dtype)) +
                    "; adapters are baked into F32, F16 or BF16 weights");
      }
    }
    if (const auto stored = stored_weights.find(t.name); stored != stored_weights.end()) {
      const Weight8BitS& w = stored->second;
      const bool as_panels = written_as_panels(w.rows, w.cols);
      report.panels += as_panels;
      if (as_panels != (w.layout() == Layout8BitS::Panels)) {
        report.tensors.back().reason += as_panels ? ", written as panels" : ", written as rows";
        out.push_back({t.name, as_panels ? DType::U8 : DType::I8, t.shape, [&in, &w, as_panels](std::span<std::byte> dst) {
                         const std::vector<int8_t> q = w.read_rows(in);
                         if (as_panels) {
                           rows_to_panels_8bit_s(q.data(), w.rows, w.cols, reinterpret_cast<uint8_t*>(dst.data()));
                         } else {
                           std::memcpy(dst.data(), q.data(), q.size());
                         }
                       }});
        continue;
      }
    }
    if (decision.action != TensorAction::Quantized) {
      if (!update) {
        out.push_back(TensorSource::from_bytes(t.name, t.dtype, t.shape, in.data(t)));
        continue;
      }
      // Kept in float with the update added, in the dtype it had.
      out.push_back({t.name, t.dtype, t.shape, [&in, &t, update](std::span<std::byte> dst) {
                       const int64_t rows = t.shape[0], cols = t.numel() / rows;
                       std::vector<float> x(static_cast<size_t>(t.numel()));
                       convert_to_f32(t.dtype, in.data(t).data(), x.data(), x.size());
                       (*update)(0, rows, cols, x.data());
                       write_f32_as(t.dtype, x, dst);
                     }});
      continue;
    }
    const std::string scale_name = scale_tensor_name(t.name);
    if (in.find(scale_name)) {
      throw Error(input_path + ": tensor '" + scale_name + "' is in the way of the scale of '" + t.name +
                  "'; keep '" + t.name + "' in float");
    }
    const size_t index = report.tensors.size() - 1;
    const int64_t rows = t.shape[0], cols = t.numel() / rows;
    const bool as_panels = written_as_panels(rows, cols);
    report.panels += as_panels;
    out.push_back({t.name, as_panels ? DType::U8 : DType::I8, t.shape, [&in, &t, &error_sq, &norm_sq, index, as_panels, rows,
                                                                        cols, update](std::span<std::byte> dst) {
                     std::vector<int8_t> rows_q(as_panels ? static_cast<size_t>(rows * cols) : 0);
                     auto* q_out = as_panels ? rows_q.data() : reinterpret_cast<int8_t*>(dst.data());
                     quantize_blocks(in, t, update, [&](size_t r0, size_t n, size_t width, const float* x, const int8_t* q,
                                                const float* scales) {
                       std::memcpy(q_out + r0 * width, q, n * width);
                       for (size_t r = 0; r < n; ++r) {
                         for (size_t k = 0; k < width; ++k) {
                           const double w = x[r * width + k];
                           const double e = w - static_cast<double>(q[r * width + k]) * scales[r];
                           error_sq[index] += e * e;
                           norm_sq[index] += w * w;
                         }
                       }
                     });
                     if (as_panels) rows_to_panels_8bit_s(rows_q.data(), rows, cols, reinterpret_cast<uint8_t*>(dst.data()));
                   }});
    out.push_back({scale_name, DType::F32, {t.shape[0]}, [&in, &t, update](std::span<std::byte> dst) {
                     quantize_blocks(in, t, update, [&](size_t r0, size_t n, size_t, const float*, const int8_t*,
                                                const float* scales) {
                       std::memcpy(dst.data() + r0 * sizeof(float), scales, n * sizeof(float));
                     });
                   }});
  }

  for (const auto& [where, update] : options.updates) {
    if (where.first == canonical_path && !in.find(where.second)) {
      throw Error(input_path + ": has no tensor '" + where.second + "' to update");
    }
  }
  report.updated += updated;
  out.insert(out.end(), options.extra_tensors.begin(), options.extra_tensors.end());
  write_safetensors(output_path, std::move(out), metadata, progress);

  double error_total = 0.0;
  for (size_t i = 0; i < report.tensors.size(); ++i) {
    ConvertedTensor& t = report.tensors[i];
    if (t.action != TensorAction::Quantized) continue;
    t.relative_error = norm_sq[i] > 0.0 ? std::sqrt(error_sq[i] / norm_sq[i]) : 0.0;
    ++report.quantized;
    error_total += t.relative_error;
    if (report.worst_tensor.empty() || t.relative_error > report.worst_relative_error) {
      report.worst_relative_error = t.relative_error;
      report.worst_tensor = t.name;
    }
  }
  report.mean_relative_error = report.quantized ? error_total / static_cast<double>(report.quantized) : 0.0;
  struct stat st {};
  if (stat(output_path.c_str(), &st) == 0) report.bytes_out = static_cast<uint64_t>(st.st_size);
  return report;
}

}  // namespace

ConvertReport convert_to_8bit_s(const std::string& input_path, const std::string& output_path,
                                const ConvertOptions& options, const ConvertProgress& progress) {
  require_updates_for(options, {std::filesystem::weakly_canonical(input_path).string()}, input_path);
  return convert_file(input_path, output_path, options, progress);
}

ConvertReport convert_folder_to_8bit_s(const std::string& input_folder, const std::string& output_folder,
                                       const ConvertOptions& options, const ConvertProgress& progress) {
  namespace fs = std::filesystem;
  const fs::path in(input_folder), out(output_folder);
  if (!fs::is_regular_file(in / "model_index.json")) {
    throw Error(input_folder + ": not a diffusers folder (no model_index.json)");
  }
  if (!options.extra_tensors.empty()) {
    throw Error(input_folder + ": a diffusers folder keeps its tokenizer in tokenizer/; nothing is embedded");
  }
  std::error_code error;
  if (fs::exists(out, error)) throw Error(output_folder + ": already exists; give a new folder");
  // Written beside the destination and renamed when complete, so that an
  // error or an interrupt never leaves a folder that looks finished.
  const fs::path partial = out.parent_path() / ("." + out.filename().string() + ".partial");
  fs::remove_all(partial, error);
  ConvertReport report;
  double error_total = 0.0;
  try {
    std::vector<fs::path> files;
    for (const fs::directory_entry& entry : fs::recursive_directory_iterator(in)) {
      if (entry.is_regular_file()) files.push_back(fs::relative(entry.path(), in));
    }
    std::sort(files.begin(), files.end());
    std::set<std::string> converted;
    for (const fs::path& file : files) {
      if (file.extension() == ".safetensors") converted.insert(fs::weakly_canonical(in / file).string());
    }
    require_updates_for(options, converted, input_folder);
    for (const fs::path& file : files) {
      fs::create_directories((partial / file).parent_path());
      if (file.extension() != ".safetensors") {
        fs::copy_file(in / file, partial / file);
        continue;
      }
      const ConvertReport part = convert_file((in / file).string(), (partial / file).string(), options, progress);
      const std::string component = file.parent_path().string() + "/";
      for (ConvertedTensor t : part.tensors) {
        t.name = component + t.name;
        report.tensors.push_back(std::move(t));
      }
      report.bytes_in += part.bytes_in;
      report.bytes_out += part.bytes_out;
      report.quantized += part.quantized;
      report.panels += part.panels;
      report.updated += part.updated;
      error_total += part.mean_relative_error * static_cast<double>(part.quantized);
      if (part.quantized && (report.worst_tensor.empty() || part.worst_relative_error > report.worst_relative_error)) {
        report.worst_relative_error = part.worst_relative_error;
        report.worst_tensor = component + part.worst_tensor;
      }
    }
    fs::rename(partial, out);
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(partial, error);
    throw Error(output_folder + ": " + e.code().message() + " (" + e.path1().string() + ")");
  } catch (...) {
    fs::remove_all(partial, error);
    throw;
  }
  report.mean_relative_error = report.quantized ? error_total / static_cast<double>(report.quantized) : 0.0;
  return report;
}

}  // namespace tiledraw
