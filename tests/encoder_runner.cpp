// Runs a text encoder or VAE encoder on the tensors of a safetensors file and
// writes its outputs: the C++ half of tests/reference/test_encoders.py, which
// tests each encoder alone, from its own file and after any layer (`tiledraw
// forward --component text_encoder|vae_encoder` runs them, with the same
// tensor names, only as parts of a whole checkpoint), and the timing of the
// two encoders with the executor's profile.
//
//   tiledraw_encoder_runner text_encoder|vae_encoder MODEL PREFIX auto|float|8bit-s IN OUT
//                           [--layers N] [--runs N] [--profile]
//
// text_encoder reads input_ids [batch, 77] (I64 or F32) and writes
// hidden_states after --layers layers (default all) and the final layer norm,
// plus pooled when every layer ran; vae_encoder reads image [batch, 3, H, W]
// and writes mean.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "models/clip_text.h"
#include "models/vae.h"
#include "runtime/executor.h"
#include "tiledraw/error.h"
#include "tiledraw/quant8s.h"
#include "tiledraw/safetensors.h"

namespace tiledraw {
namespace {

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

Tensor read_input(const std::string& path, const std::string& name) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  const TensorInfo* t = file.find(name);
  if (!t) throw Error(path + ": no tensor '" + name + "'");
  Tensor out{t->shape, std::vector<float>(static_cast<size_t>(t->numel()))};
  const std::byte* data = file.data(*t).data();
  if (t->dtype == DType::I64) {
    for (size_t i = 0; i < out.data.size(); ++i) {
      int64_t v = 0;
      std::memcpy(&v, data + 8 * i, 8);
      out.data[i] = static_cast<float>(v);
    }
  } else if (is_float_dtype(t->dtype)) {
    convert_to_f32(t->dtype, data, out.data.data(), out.data.size());
  } else {
    throw Error(path + ": tensor '" + name + "' is " + std::string(dtype_name(t->dtype)) + ", expected I64 or floats");
  }
  return out;
}

// Runs the graph `runs` times (at least once) and prints the time per run, and the profile when asked.
void run(const runtime::Graph& graph, const Accelerator& accel, const float* input, int runs, bool profile,
         const std::function<void(const runtime::Executor&)>& collect) {
  ProgramCache cache;
  runtime::Executor exec(graph, accel, cache);
  std::vector<double> seconds;
  for (int i = 0; i < std::max(runs, 1); ++i) {
    const auto start = std::chrono::steady_clock::now();
    exec.run({input});
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  collect(exec);
  if (runs > 0) {
    std::fprintf(stderr, "runs:");
    for (const double s : seconds) std::fprintf(stderr, " %.3f s", s);
    std::fprintf(stderr, "\n");
  }
  if (profile) exec.profile().print(stderr, accel, cache.stats(), exec.plan().arena_bytes);
}

int main_checked(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: %s text_encoder|vae_encoder MODEL PREFIX auto|float|8bit-s IN OUT [--layers N] [--runs N] [--profile]\n", argv[0]);
    return 2;
  }
  const std::string component = argv[1], model = argv[2], prefix = argv[3], in = argv[5], out = argv[6];
  const Precision precision = parse_precision(argv[4]);
  int64_t layers = 0;
  int runs = 0;
  bool profile = false;
  for (int i = 7; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--profile") {
      profile = true;
    } else if ((flag == "--layers" || flag == "--runs") && i + 1 < argc) {
      if (flag == "--layers") {
        layers = std::stoll(argv[++i]);
      } else {
        runs = std::stoi(argv[++i]);
      }
    } else {
      throw Error("unknown argument '" + flag + "'");
    }
  }
  const SafetensorsFile file = SafetensorsFile::open(model);
  const models::WeightView view(file, prefix, {}, models::model_config_json(file));
  const auto accel = make_accelerator("auto");
  std::vector<std::vector<float>> storage;
  std::vector<TensorSource> outputs;
  const auto keep = [&](const std::string& name, std::vector<int64_t> shape, const float* data, size_t count) {
    storage.emplace_back(data, data + count);
    outputs.push_back(TensorSource::from_bytes(name, DType::F32, std::move(shape), std::as_bytes(std::span(storage.back()))));
  };
  storage.reserve(2);
  if (component == "text_encoder") {
    const models::ClipTextEncoder encoder(view, *accel, precision);
    const Tensor ids = read_input(in, "input_ids");
    const int64_t batch = ids.shape.empty() ? 0 : ids.shape[0], width = encoder.config().width;
    if (layers == 0) layers = encoder.config().layers;
    const bool full = layers == encoder.config().layers;
    const auto built = encoder.build(batch, {layers, true, full});
    if (ids.data.size() != static_cast<size_t>(batch * encoder.config().positions)) throw Error(in + ": input_ids is not [batch, positions]");
    run(built->graph, *accel, ids.data.data(), runs, profile, [&](const runtime::Executor& exec) {
      const float* hidden = exec.data(built->hidden_states);
      keep("hidden_states", {batch, encoder.config().positions, width}, hidden, static_cast<size_t>(batch * encoder.config().positions * width));
      if (full) {
        const std::vector<float> pooled = encoder.pooled(ids.data.data(), exec.data(built->pooling_source), batch);
        keep("pooled", {batch, static_cast<int64_t>(pooled.size()) / batch}, pooled.data(), pooled.size());
      }
    });
  } else if (component == "vae_encoder") {
    const models::VaeEncoder encoder(view, *accel, precision);
    const Tensor image = read_input(in, "image");
    if (image.shape.size() != 4 || image.shape[1] != encoder.config().in_channels) {
      throw Error(in + ": image is not [batch, " + std::to_string(encoder.config().in_channels) + ", height, width]");
    }
    const auto built = encoder.build(image.shape[0], image.shape[2], image.shape[3]);
    const std::vector<int64_t> shape = built->graph.values()[static_cast<size_t>(built->mean)].shape;
    run(built->graph, *accel, image.data.data(), runs, profile, [&](const runtime::Executor& exec) {
      keep("mean", shape, exec.data(built->mean), static_cast<size_t>(shape[0] * shape[1] * shape[2] * shape[3]));
    });
  } else {
    throw Error("unknown component '" + component + "' (text_encoder or vae_encoder)");
  }
  write_safetensors(out, std::move(outputs), {});
  return 0;
}

}  // namespace
}  // namespace tiledraw

int main(int argc, char** argv) {
  try {
    return tiledraw::main_checked(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
