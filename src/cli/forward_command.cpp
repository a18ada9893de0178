#include <cstring>
#include <memory>

#include "cli/commands.h"
#include "models/dit.h"
#include "runtime/executor.h"
#include "tiledraw/tiledraw.h"

namespace tiledraw::cli {
namespace {

struct ForwardArgs {
  std::string model;
  std::string inputs;
  std::string output;
};

// Any float or integer tensor as floats (timesteps and class ids come as either).
std::vector<float> read_floats(const SafetensorsFile& file, const std::string& name, const std::string& expected) {
  const TensorInfo* t = file.find(name);
  if (!t) throw Error(file.path() + ": no tensor '" + name + "' (a DiT forward reads " + expected + ")");
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

void run_forward(const ForwardArgs& args) {
  const SafetensorsFile model_file = SafetensorsFile::open(args.model);
  const SafetensorsFile inputs = SafetensorsFile::open(args.inputs);
  const std::unique_ptr<Accelerator> accel = make_accelerator("auto");
  const models::DitModel model(model_file, *accel);

  const char* expected = "x [batch, channels, height, width], t [batch] and y [batch]";
  const TensorInfo* x_info = inputs.find("x");
  if (!x_info || x_info->shape.size() != 4) {
    throw Error(inputs.path() + ": needs a tensor 'x' of rank 4 (a DiT forward reads " + expected + ")");
  }
  const int64_t batch = x_info->shape[0], channels = x_info->shape[1];
  const int64_t height = x_info->shape[2], width = x_info->shape[3];
  if (channels != model.config().in_channels) {
    throw Error(inputs.path() + ": 'x' has " + std::to_string(channels) + " channels, the model takes " +
                std::to_string(model.config().in_channels));
  }
  const std::vector<float> x = read_floats(inputs, "x", expected);
  const std::vector<float> t = read_floats(inputs, "t", expected);
  const std::vector<float> y = read_floats(inputs, "y", expected);
  if (static_cast<int64_t>(t.size()) != batch || static_cast<int64_t>(y.size()) != batch) {
    throw Error(inputs.path() + ": 't' and 'y' need one value per batch element (" + std::to_string(batch) + ")");
  }

  const auto built = model.build(batch, height, width);
  ProgramCache cache;
  runtime::Executor exec(built->graph, *accel, cache);
  exec.run({x.data(), t.data(), y.data()});
  const runtime::Value& out = built->graph.values()[static_cast<size_t>(built->output)];
  const auto* bytes = reinterpret_cast<const std::byte*>(exec.data(built->output));
  std::vector<TensorSource> tensors;
  tensors.push_back(TensorSource::from_bytes("out", DType::F32, out.shape, {bytes, static_cast<size_t>(out.bytes())}));
  write_safetensors(args.output, std::move(tensors),
                    {{"model", args.model}, {"accelerator", accel->kernel()}, {"produced_by", std::string("tiledraw ") + version()}});
}

}  // namespace

void add_forward_command(CLI::App& app) {
  auto args = std::make_shared<ForwardArgs>();
  CLI::App* cmd = app.add_subcommand("forward", "Run one forward pass of a model on named input tensors");
  cmd->add_option("-m,--model", args->model, "Model safetensors (DiT, original layout, float or 8-bit S)")->required();
  cmd->add_option("--inputs", args->inputs, "Inputs safetensors: x [batch, channels, h, w], t [batch], y [batch]")
      ->required();
  cmd->add_option("-o,--output", args->output, "Output safetensors, with the tensor 'out'")->required();
  cmd->callback([args] { run_forward(*args); });
}

}  // namespace tiledraw::cli
