#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>

#include "cli/commands.h"
#include "runtime/stopwatch.h"
#include "runtime/text.h"
#include "tiledraw/tiledraw.h"

namespace tiledraw::cli {
namespace {

struct ForwardArgs {
  std::string model, family, component, inputs, output, precision = "auto";
  std::vector<std::string> loras;
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

// Every tensor of the inputs file as floats (timesteps and class ids come as integers too).
std::map<std::string, FloatTensor> read_inputs(const std::string& path) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  std::map<std::string, FloatTensor> inputs;
  for (const TensorInfo& t : file.tensors()) {
    FloatTensor& out = inputs[t.name];
    out.shape = t.shape;
    out.data.resize(static_cast<size_t>(t.numel()));
    const std::byte* data = file.data(t).data();
    if (is_float_dtype(t.dtype)) {
      convert_to_f32(t.dtype, data, out.data.data(), out.data.size());
    } else if (t.dtype == DType::I64 || t.dtype == DType::I32) {
      for (size_t i = 0; i < out.data.size(); ++i) {
        int64_t v = 0;
        if (t.dtype == DType::I64) {
          std::memcpy(&v, data + 8 * i, 8);
        } else {
          int32_t narrow = 0;
          std::memcpy(&narrow, data + 4 * i, 4);
          v = narrow;
        }
        out.data[i] = static_cast<float>(v);
      }
    } else {
      throw Error(path + ": tensor '" + t.name + "' is " + std::string(dtype_name(t.dtype)) + ", expected floats or integers");
    }
  }
  return inputs;
}

void run_forward(const ForwardArgs& args) {
  std::map<std::string, FloatTensor> inputs = read_inputs(args.inputs);
  LoadOptions options;
  options.family = args.family;
  options.precision = precision_flag(args.precision, "--precision");
  options.vae_precision = options.precision;
  options.accelerator = global_options().accelerator;
  const std::unique_ptr<Pipeline> pipeline = Pipeline::load(args.model, options);
  const double load = seconds_since(args.start);
  const std::vector<LoraRequest> loras = lora_flags(args.loras);
  for_flag("--lora", [&] { pipeline->check_loras(loras); });
  Pipeline::ForwardTiming timing;
  const std::map<std::string, FloatTensor> outputs = for_flag("--inputs " + args.inputs, [&] {
    return pipeline->forward(args.component, inputs, static_cast<int>(args.runs), &timing, loras);
  });
  std::vector<TensorSource> tensors;
  for (const auto& [name, tensor] : outputs) {
    tensors.push_back(TensorSource::from_bytes(name, DType::F32, tensor.shape, std::as_bytes(std::span(tensor.data))));
  }
  write_safetensors(args.output, std::move(tensors),
                    {{"model", args.model}, {"accelerator", pipeline->accelerator().kernel()},
                     {"produced_by", std::string("tiledraw ") + version()}});
  if (args.runs > 0) {
    std::fprintf(stderr,
                 "load %.3f s, first run %.3f s, median %.4f s of %lld runs (min %.4f, max %.4f), arena %s "
                 "(without reuse %s), peak resident %s\n",
                 load, timing.first_seconds, timing.median_seconds, static_cast<long long>(timing.runs), timing.min_seconds,
                 timing.max_seconds, human_bytes(static_cast<uint64_t>(timing.arena_bytes)).c_str(),
                 human_bytes(static_cast<uint64_t>(timing.arena_without_reuse_bytes)).c_str(),
                 human_bytes(peak_resident_bytes()).c_str());
  }
}

}  // namespace

void add_forward_command(CLI::App& app) {
  auto args = std::make_shared<ForwardArgs>();
  CLI::App* cmd = app.add_subcommand("forward", "Run one forward pass of a model on named input tensors");
  cmd->add_option("-m,--model", args->model, "Model: a safetensors file or a diffusers folder")->required();
  cmd->add_option("--family", args->family, "The model's family when detection should not decide");
  cmd->add_option("--component", args->component,
                  "diffusion_model (default; unet for Stable Diffusion), text_encoder, vae_encoder or vae_decoder "
                  "(the default for a VAE alone)");
  cmd->add_option("--inputs", args->inputs,
                  "Inputs safetensors: for a diffusion model x [batch, channels, h, w], t [batch] and its conditioning "
                  "(y [batch] for class labels, encoder_hidden_states [batch, tokens, width] for a UNet); for a "
                  "text encoder input_ids [batch, 77 k]; for a VAE encoder image [batch, 3, H, W]; for a VAE decoder "
                  "z [batch, channels, h, w]")
      ->required();
  cmd->add_option("--precision", args->precision, "Matrices as stored (auto), all float, or all 8bit-s")->capture_default_str();
  cmd->add_option("-o,--output", args->output,
                  "Output safetensors: 'out' (the model's raw output), 'hidden_states' and 'pooled' (a text "
                  "encoder's), 'mean' (a VAE encoder's) or 'image' (a VAE decoder's)")
      ->required();
  cmd->add_option("--lora", args->loras,
                  "A LoRA file to run beside the model's layers, as FILE[:TE[:UNET]]: at a strength on the text "
                  "encoder (default 1) and on the UNet (default: the same); repeatable");
  cmd->add_option("--runs", args->runs, "Run N more times and print load, median time, arena and peak memory (stderr)")
      ->check(CLI::Range(0, 100000));
  cmd->callback([args] { run_forward(*args); });
}

}  // namespace tiledraw::cli
