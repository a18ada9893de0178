// 8-bit S pairs (an I8 or U8 "weight" and its "weight_scale") as the loaders meet
// them: the input decodes to a small safetensors file of a few tensors named
// from a dictionary ("x.weight", "x.weight_scale", "x.bias", "y.*"), of any of
// six dtypes and small shapes, which is then validated (find_8bit_s_weights,
// load_scales) and loaded as the linear layer "x" (and "x" stacked with "y",
// as diffusers' q, k, v are) at every Precision on the ref accelerator.
// tiledraw::Error is the expected answer to a bad pair; anything else is a bug.
//
// Input layout (fuzz/make_corpus.py writes seeds in it): a tensor count byte,
// then per tensor: name, dtype, rank, one byte per dimension, a fill mode and,
// for two of the modes, the bytes it needs.

#include <cmath>
#include <set>

#include "fuzz_util.h"
#include "models/weights.h"
#include "tiledraw/accel.h"
#include "tiledraw/error.h"
#include "tiledraw/quant8s.h"

namespace {

using tiledraw::DType;
using tiledraw::SafetensorsFile;
using tiledraw::TensorInfo;
using tiledraw::models::LinearWeights;
using tiledraw::Precision;
using tiledraw::models::WeightStore;

constexpr const char* kNames[] = {"x.weight", "x.weight_scale", "x.bias", "y.weight", "y.weight_scale",
                                  "y.bias",   "x.bias_scale",   "x",      "x.weight_scale_scale"};
constexpr DType kDtypes[] = {DType::I8, DType::F32, DType::F16, DType::BF16, DType::U8, DType::I32};
constexpr int64_t kMaxDim = 64;
constexpr uint64_t kMaxElements = 8192;  // keeps every file small and every input fast

enum class Fill { SmallValues, Pattern, Raw };

std::vector<fuzz::TensorBytes> decode_tensors(fuzz::ByteReader& in) {
  std::vector<fuzz::TensorBytes> tensors;
  std::set<std::string> names;
  const size_t count = 1 + in.below(6);
  for (size_t i = 0; i < count; ++i) {
    fuzz::TensorBytes t{in.pick(kNames), in.pick(kDtypes), {}, {}};
    const size_t rank = in.below(4);
    uint64_t elements = 1;
    for (size_t d = 0; d < rank; ++d) {
      const int64_t dim = static_cast<int64_t>(in.below(kMaxDim + 1));
      if (elements * static_cast<uint64_t>(dim) > kMaxElements) continue;  // a lower rank rather than a big file
      elements *= static_cast<uint64_t>(dim);
      t.shape.push_back(dim);
    }
    const size_t size = fuzz::byte_size(t.dtype, t.shape);
    switch (static_cast<Fill>(in.below(3))) {
      case Fill::SmallValues:
        t.bytes = fuzz::small_values(t.dtype, elements);
        break;
      case Fill::Pattern: {  // one element's bytes repeated: all NaN, all zero, all -128...
        const std::string pattern = in.bytes(tiledraw::dtype_size(t.dtype));
        for (size_t b = 0; b < size; ++b) t.bytes += pattern.empty() ? '\0' : pattern[b % pattern.size()];
        break;
      }
      case Fill::Raw:
        t.bytes = in.bytes(size);
        t.bytes.resize(size, '\0');
        break;
    }
    if (names.insert(t.name).second) tensors.push_back(std::move(t));
  }
  return tensors;
}

// What find_8bit_s_weights promises about each pair it returns.
void check_pairs(const SafetensorsFile& file) {
  for (const tiledraw::Weight8BitS& w : tiledraw::find_8bit_s_weights(file)) {
    fuzz::check((w.values->dtype == DType::I8 || w.values->dtype == DType::U8) && w.values->shape.size() >= 2,
                "a non-matrix accepted as 8-bit S");
    fuzz::check(w.values->dtype == DType::I8 || tiledraw::fits_panels_8bit_s(w.rows, w.cols), "panels that do not fit accepted");
    fuzz::check(w.scale->dtype == DType::F32 || w.scale->dtype == DType::F16 || w.scale->dtype == DType::BF16,
                "a scale of a non-float dtype accepted");
    fuzz::check(w.rows == w.values->shape[0] && w.rows * w.cols == w.values->numel(), "rows x cols is not the weight's shape");
    fuzz::check(w.scale->numel() == w.rows, "a scale that is not one per row accepted");
    try {
      const std::vector<float> scales = w.load_scales(file);
      fuzz::check(scales.size() == static_cast<size_t>(w.rows), "load_scales gave the wrong count");
      for (float s : scales) fuzz::check(std::isfinite(s), "load_scales passed a non-finite scale");
    } catch (const tiledraw::Error& error) {
      fuzz::refused(error);  // a non-finite scale
    }
  }
}

// Reads every byte the layer's pointers claim, so ASan sees any that lie
// outside their buffers (mapped file bytes excepted: those are compared
// against the file's views), and runs it once through the accelerator.
void check_layer(const LinearWeights& w, const tiledraw::Accelerator& accel, Precision precision, bool stored_int8) {
  const bool int8 = precision == Precision::Int8 || (precision == Precision::AsStored && stored_int8);
  fuzz::check(int8 == (w.weight != nullptr) && int8 != (w.float_weight.data != nullptr), "the layer runs at the wrong precision");
  const int64_t n = int8 ? w.weight->n() : w.float_weight.n, k = w.in_features();
  fuzz::check(n > 0 && k > 0 && static_cast<uint64_t>(n * k) <= 2 * kMaxElements, "a layer of an impossible size");
  volatile float sink = 0.0f;
  for (int64_t i = 0; i < n; ++i) sink = sink + w.bias[i];
  if (!int8) {
    for (int64_t i = 0; i < n * k; ++i) sink = sink + w.float_weight.data[i];
    return;
  }
  const tiledraw::WeightView& source = w.weight->source();
  int64_t sum = 0;
  for (int64_t i = 0; i < n * k; ++i) sum += source.panels ? source.panels[i] : source.q[i];
  for (int64_t i = 0; i < n; ++i) sink = sink + source.scale[i];
  sink = sink + static_cast<float>(sum);

  tiledraw::ProgramCache cache;
  tiledraw::QuantizedActivation scratch;
  const std::vector<float> x(static_cast<size_t>(k), 1.0f);
  std::vector<float> y(static_cast<size_t>(n));
  tiledraw::linear_8bit_s(accel, cache, x.data(), 1, k, *w.weight, w.bias, {.bias = true}, y.data(), n, scratch);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile input;
  static const std::unique_ptr<tiledraw::Accelerator> accel = tiledraw::make_accelerator("ref");

  fuzz::ByteReader in(data, size);
  const std::vector<fuzz::TensorBytes> tensors = decode_tensors(in);
  const SafetensorsFile file = SafetensorsFile::open(input.write(fuzz::safetensors_bytes(tensors, {})));
  bool pairs_valid = true;
  try {
    check_pairs(file);
  } catch (const tiledraw::Error& error) {
    pairs_valid = false;  // then every WeightStore must refuse the file too
    fuzz::refused(error);
  }

  for (Precision precision : {Precision::AsStored, Precision::Float, Precision::Int8}) {
    for (const std::vector<std::string>& prefixes : {std::vector<std::string>{"x"}, std::vector<std::string>{"x", "y"}}) {
      try {
        WeightStore store(file, *accel, precision, "a fuzz layer", "x.weight and x.bias");
        fuzz::check(pairs_valid, "WeightStore accepted a file with an invalid 8-bit S pair");
        const TensorInfo* weight = file.find("x.weight");
        const LinearWeights layer = store.linear(prefixes);
        const bool stored_int8 =
            weight && (weight->dtype == DType::I8 || (weight->dtype == DType::U8 && file.find("x.weight_scale")));
        check_layer(layer, *accel, precision, stored_int8);
        if (stored_int8 && layer.weight && prefixes.size() == 1) {  // used in place: must be exactly the tensor's bytes
          const tiledraw::WeightView& source = layer.weight->source();
          const auto* stored = reinterpret_cast<const void*>(file.data(*weight).data());
          fuzz::check((source.panels ? static_cast<const void*>(source.panels) : source.q) == stored &&
                          layer.weight->n() * layer.weight->k() == weight->numel(),
                      "an 8-bit S layer that is not its tensor's bytes");
        }
      } catch (const tiledraw::Error& error) {
        fuzz::refused(error);  // missing, mismatched or invalid tensors
      }
    }
  }
  return 0;
}
