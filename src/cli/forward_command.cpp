#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>

#include "cli/commands.h"
#include "cli/progress.h"
#include "models/dit.h"
#include "models/vae.h"
#include "runtime/executor.h"
#include "runtime/text.h"
#include "tiledraw/tiledraw.h"

namespace tiledraw::cli {
namespace {

struct ForwardArgs {
  std::string model;
  std::string inputs;
  std::string output;
  std::string precision = "auto";
  int64_t runs = 0;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
};

// The process's peak resident memory (VmHWM), or 0 where /proc does not say.
uint64_t peak_resident_bytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

// Runs the forward pass once (writing nothing else), then `runs` more times
// when asked, and reports the timings on stderr for benchmarks.
void run_and_time(const ForwardArgs& args, runtime::Executor& exec, const std::vector<const float*>& inputs) {
  const double load = seconds_since(args.start);
  auto start = std::chrono::steady_clock::now();
  exec.run(inputs);
  const double first = seconds_since(start);
  if (args.runs <= 0) return;
  std::vector<double> times;
  for (int64_t r = 0; r < args.runs; ++r) {
    start = std::chrono::steady_clock::now();
    exec.run(inputs);
    times.push_back(seconds_since(start));
  }
  std::sort(times.begin(), times.end());
  std::fprintf(stderr, "load %.3f s, first run %.3f s, median %.4f s of %lld runs (min %.4f, max %.4f), arena %s, peak resident %s\n",
               load, first, times[times.size() / 2], static_cast<long long>(args.runs), times.front(), times.back(),
               human_bytes(static_cast<uint64_t>(exec.plan().arena_bytes)).c_str(), human_bytes(peak_resident_bytes()).c_str());
}

// Any float or integer tensor as floats (timesteps and class ids come as either).
std::vector<float> read_floats(const SafetensorsFile& file, const std::string& name, const std::string& expected) {
  const TensorInfo* t = file.find(name);
  if (!t) throw Error(file.path() + ": no tensor '" + name + "' (this model's forward reads " + expected + ")");
  std::vector<float> out(static_cast<size_t>(t->numel()));
  const std::byte* data = file.data(*t).data();
  if (is_float_dtype(t->dtype)) {
    convert_to_f32(t->dtype, data, out.data(), out.size());
  } else if (t->dtype == DType::I64 || t->dtype == DType::I32) {
    for (size_t i = 0; i < out.size(); ++i) {
      int64_t v = 0;
      if (t->dtype == DType::I64) {
        std::memcpy(&v, data + 8 * i, 8);
      } else {
        int32_t narrow = 0;
        std::memcpy(&narrow, data + 4 * i, 4);
        v = narrow;
      }
      out[i] = static_cast<float>(v);
    }
  } else {
    throw Error(file.path() + ": tensor '" + name + "' is " + std::string(dtype_name(t->dtype)) +
                ", expected floats or integers");
  }
  return out;
}

void write_output(const ForwardArgs& args, const runtime::Graph& graph, const runtime::Executor& exec, int output,
                  const Accelerator& accel) {
  const runtime::Value& out = graph.values()[static_cast<size_t>(output)];
  const auto* bytes = reinterpret_cast<const std::byte*>(exec.data(output));
  std::vector<TensorSource> tensors;
  tensors.push_back(TensorSource::from_bytes("out", DType::F32, out.shape, {bytes, static_cast<size_t>(out.bytes())}));
  write_safetensors(args.output, std::move(tensors),
                    {{"model", args.model}, {"accelerator", accel.kernel()}, {"produced_by", std::string("tiledraw ") + version()}});
}

const TensorInfo& image_input(const SafetensorsFile& inputs, const char* name, int64_t channels, const char* expected) {
  const TensorInfo* t = inputs.find(name);
  if (!t || t->shape.size() != 4) {
    throw Error(inputs.path() + ": needs a tensor '" + name + "' of rank 4 (this model's forward reads " + expected + ")");
  }
  if (t->shape[1] != channels) {
    throw Error(inputs.path() + ": '" + name + "' has " + std::to_string(t->shape[1]) + " channels, the model takes " +
                std::to_string(channels));
  }
  return *t;
}

void run_dit(const ForwardArgs& args, const SafetensorsFile& model_file, const SafetensorsFile& inputs,
             const Accelerator& accel) {
  const models::DitModel model(model_file, accel, models::parse_precision(args.precision, "--precision"));
  const char* expected = "x [batch, channels, height, width], t [batch] and y [batch]";
  const TensorInfo& x_info = image_input(inputs, "x", model.config().in_channels, expected);
  const int64_t batch = x_info.shape[0];
  const std::vector<float> x = read_floats(inputs, "x", expected);
  const std::vector<float> t = read_floats(inputs, "t", expected);
  const std::vector<float> y = read_floats(inputs, "y", expected);
  if (static_cast<int64_t>(t.size()) != batch || static_cast<int64_t>(y.size()) != batch) {
    throw Error(inputs.path() + ": 't' and 'y' need one value per batch element (" + std::to_string(batch) + ")");
  }
  const auto built = model.build(batch, x_info.shape[2], x_info.shape[3]);
  ProgramCache cache;
  runtime::Executor exec(built->graph, accel, cache);
  run_and_time(args, exec, {x.data(), t.data(), y.data()});
  write_output(args, built->graph, exec, built->output, accel);
}

void run_vae(const ForwardArgs& args, const SafetensorsFile& model_file, const SafetensorsFile& inputs,
             const Accelerator& accel) {
  const models::VaeDecoder vae(model_file, accel, models::parse_precision(args.precision, "--precision"));
  const char* expected = "z [batch, latent channels, height, width], as AutoencoderKL.decode takes it";
  const TensorInfo& z_info = image_input(inputs, "z", vae.config().latent_channels, expected);
  const std::vector<float> z = read_floats(inputs, "z", expected);
  const auto built = vae.build(z_info.shape[0], z_info.shape[2], z_info.shape[3]);
  ProgramCache cache;
  runtime::Executor exec(built->graph, accel, cache);
  run_and_time(args, exec, {z.data()});
  write_output(args, built->graph, exec, built->image, accel);
}

void run_forward(const ForwardArgs& args) {
  const SafetensorsFile model_file = SafetensorsFile::open(args.model);
  const SafetensorsFile inputs = SafetensorsFile::open(args.inputs);
  const std::unique_ptr<Accelerator> accel = make_accelerator("auto");
  if (model_file.find("decoder.conv_in.weight")) {
    run_vae(args, model_file, inputs, *accel);
  } else {
    run_dit(args, model_file, inputs, *accel);
  }
}

}  // namespace

void add_forward_command(CLI::App& app) {
  auto args = std::make_shared<ForwardArgs>();
  CLI::App* cmd = app.add_subcommand("forward", "Run one forward pass of a model on named input tensors");
  cmd->add_option("-m,--model", args->model, "Model safetensors: a DiT (original or diffusers layout) or a VAE decoder")
      ->required();
  cmd->add_option("--inputs", args->inputs, "Inputs safetensors: for a DiT x [batch, channels, h, w], t and y [batch]; "
                                            "for a VAE decoder z [batch, channels, h, w]")
      ->required();
  cmd->add_option("--precision", args->precision, "Matrices as stored (auto), all float, or all 8bit-s")
      ->capture_default_str();
  cmd->add_option("-o,--output", args->output, "Output safetensors, with the tensor 'out'")->required();
  cmd->add_option("--runs", args->runs, "Run N more times and print load, median time, arena and peak memory (stderr)")
      ->check(CLI::Range(0, 100000));
  cmd->callback([args] { run_forward(*args); });
}

}  // namespace tiledraw::cli
