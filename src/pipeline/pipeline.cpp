#include "tiledraw/pipeline.h"

#include <algorithm>
#include <chrono>
#include <functional>

#include "pipeline/generation.h"
#include "pipeline/loading.h"
#include "pipeline/text_conditioning.h"
#include "runtime/executor.h"
#include "runtime/stopwatch.h"
#include "tiledraw/error.h"

namespace tiledraw {

struct Pipeline::Impl {
  std::unique_ptr<Accelerator> accel;
  std::unique_ptr<pipeline::LoadedModel> loaded;
  mutable ProgramCache cache;
  bool released = false;  // by generate_and_release
};

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pipeline::~Pipeline() = default;

std::unique_ptr<Pipeline> Pipeline::load(const std::string& path, const LoadOptions& options) {
  auto impl = std::make_unique<Impl>();
  std::string why;
  impl->accel = make_accelerator(options.accelerator.empty() ? "auto" : options.accelerator, &why);
  if (!impl->accel) throw Error("the " + options.accelerator + " accelerator cannot run here: " + why);
  impl->loaded = pipeline::load_model(path, options, *impl->accel);
  return std::unique_ptr<Pipeline>(new Pipeline(std::move(impl)));
}

const ModelInfo& Pipeline::info() const { return impl_->loaded->model_info; }
const Accelerator& Pipeline::accelerator() const { return *impl_->accel; }

std::pair<int64_t, int64_t> Pipeline::image_size(const GenerationRequest& request) const {
  require_weights();
  if (!impl_->loaded->model) throw Error(info().path + ": " + impl_->loaded->info.description + ", not a model that generates");
  return pipeline::image_size(*impl_->loaded, request);
}

std::vector<int64_t> Pipeline::latent_shape(const GenerationRequest& request) const {
  const auto [height, width] = image_size(request);
  const int64_t factor = impl_->loaded->vae_factor();
  return {impl_->loaded->conditioner->images(request), info().latent_channels, height / factor, width / factor};
}

std::vector<int64_t> Pipeline::class_ids(const std::vector<std::string>& items) const {
  require_weights();
  const auto* classes = dynamic_cast<const pipeline::ClassConditioner*>(impl_->loaded->conditioner.get());
  if (!classes) throw Error(info().path + ": " + info().description + " is not class-conditional");
  return classes->ids(items);
}

GenerationResult Pipeline::generate(const GenerationRequest& request, const ProgressCallback& progress,
                                    const std::atomic<bool>* cancel) const {
  require_weights();
  return pipeline::generate(*impl_->loaded, *impl_->accel, impl_->cache, request, progress, cancel);
}

GenerationResult Pipeline::generate_and_release(const GenerationRequest& request, const ProgressCallback& progress,
                                                const std::atomic<bool>* cancel) {
  require_weights();
  impl_->released = true;
  pipeline::LoadedModel& m = *impl_->loaded;
  return pipeline::generate(m, *impl_->accel, impl_->cache, request, progress, cancel,
                            {[&m] { m.text_encoders.clear(); }, [&m] { m.model.reset(); }});
}

void Pipeline::check_loras(const std::vector<LoraRequest>& loras) const {
  require_weights();
  pipeline::check_adapters(*impl_->loaded, loras);
}

std::vector<LoraRequest> Pipeline::prompt_loras(const std::string& prompt) const {
  require_weights();
  std::vector<LoraRequest> loras = pipeline::prompt_loras(*impl_->loaded, prompt);
  pipeline::check_adapters(*impl_->loaded, loras);
  return loras;
}

std::vector<LoraFolderEntry> Pipeline::lora_folder() const {
  return impl_->loaded->lora_folder ? impl_->loaded->lora_folder->entries() : std::vector<LoraFolderEntry>();
}

void Pipeline::refresh_lora_folder() const {
  if (impl_->loaded->lora_folder) impl_->loaded->lora_folder->refresh();
  impl_->loaded->loras.clear();
}

void Pipeline::require_weights() const {
  if (impl_->released) {
    throw Error(info().path + ": its weights were freed by its one generation (generate_and_release); load it again");
  }
}

namespace {

const FloatTensor& named_input(const std::map<std::string, FloatTensor>& inputs, const std::vector<std::string>& names,
                               const std::string& reads) {
  for (const std::string& name : names) {
    if (const auto it = inputs.find(name); it != inputs.end()) return it->second;
  }
  std::string alternatives;
  for (size_t i = 1; i < names.size(); ++i) alternatives += " or '" + names[i] + "'";
  throw Error("no tensor '" + names.front() + "'" + alternatives + " among the inputs (" + reads + ")");
}

// Runs once, then `runs` more times for the timing.
void run_timed(const std::function<void()>& run, int runs, Pipeline::ForwardTiming* timing) {
  auto start = std::chrono::steady_clock::now();
  run();
  if (!timing) return;
  timing->first_seconds = seconds_since(start);
  std::vector<double> times;
  for (int r = 0; r < runs; ++r) {
    start = std::chrono::steady_clock::now();
    run();
    times.push_back(seconds_since(start));
  }
  std::sort(times.begin(), times.end());
  timing->runs = runs;
  if (!times.empty()) {
    timing->median_seconds = times[times.size() / 2];
    timing->min_seconds = times.front();
    timing->max_seconds = times.back();
  }
}

void run_timed(runtime::Executor& exec, const std::vector<const float*>& inputs, int runs, Pipeline::ForwardTiming* timing) {
  run_timed([&] { exec.run(inputs); }, runs, timing);
  if (!timing) return;
  timing->arena_bytes = exec.plan().arena_bytes;
  timing->arena_without_reuse_bytes = exec.plan().no_reuse_bytes;
}

FloatTensor output_of(const runtime::Graph& graph, const runtime::Executor& exec, int value) {
  const runtime::Value& v = graph.values()[static_cast<size_t>(value)];
  const float* data = exec.data(value);
  return {v.shape, std::vector<float>(data, data + v.numel())};
}

}  // namespace

std::map<std::string, FloatTensor> Pipeline::forward(const std::string& component,
                                                     const std::map<std::string, FloatTensor>& inputs, int runs,
                                                     ForwardTiming* timing, const std::vector<LoraRequest>& loras) const {
  require_weights();
  const pipeline::LoadedModel& m = *impl_->loaded;
  const auto adapters = pipeline::match_adapters(m, *impl_->accel, loras);
  const bool decoder = component == "vae_decoder" || component == "vae" || (component.empty() && !m.model);
  if (decoder) {
    if (!m.vae) throw Error(info().path + ": has no VAE decoder");
    const char* reads = "the VAE decoder reads z [batch, latent channels, h, w], as AutoencoderKL.decode takes it";
    const FloatTensor& z = named_input(inputs, {"z", "latents"}, reads);
    if (z.shape.size() != 4 || z.shape[1] != m.vae->config().latent_channels) {
      throw Error("'z' has shape " + shape_string(z.shape) + ", the VAE decodes [batch, " +
                  std::to_string(m.vae->config().latent_channels) + ", h, w]");
    }
    const auto built = m.vae->build(z.shape[0], z.shape[2], z.shape[3]);
    runtime::Executor exec(built->graph, *impl_->accel, impl_->cache);
    run_timed(exec, {z.data.data()}, runs, timing);
    return {{"image", output_of(built->graph, exec, built->image)}};
  }
  if (component == "vae_encoder") {
    const models::VaeEncoder& encoder = m.vae_encoder(*impl_->accel);
    const FloatTensor& image = named_input(inputs, {"image", "sample"}, "the VAE encoder reads image [batch, 3, H, W] in [-1, 1]");
    if (image.shape.size() != 4 || image.shape[1] != encoder.config().in_channels) {
      throw Error("'image' has shape " + shape_string(image.shape) + ", the VAE encodes [batch, " +
                  std::to_string(encoder.config().in_channels) + ", H, W]");
    }
    const auto built = encoder.build(image.shape[0], image.shape[2], image.shape[3]);
    runtime::Executor exec(built->graph, *impl_->accel, impl_->cache);
    run_timed(exec, {image.data.data()}, runs, timing);
    return {{"mean", output_of(built->graph, exec, built->mean)}};
  }
  if (component == "text_encoder") {
    const auto* text = dynamic_cast<const pipeline::TextConditioner*>(m.conditioner.get());
    if (!text) throw Error(info().path + ": " + info().description + " has no text encoder");
    const int64_t chunk = static_cast<int64_t>(text::kChunkLength);
    // Each encoder reads input_ids, or its own input_ids_N (SDXL's second pads with 0).
    std::vector<std::vector<float>> ids;
    std::vector<int64_t> ids_shape;
    for (size_t i = 0; i < text->towers().size(); ++i) {
      const std::string own = "input_ids_" + std::to_string(i + 1);
      const FloatTensor& t = i > 0 && inputs.count(own) ? inputs.at(own)
                                                        : named_input(inputs, {"input_ids", "ids"}, "the text encoder reads input_ids [batch, 77 k]");
      if (t.shape.size() != 2 || t.shape[1] % chunk || t.shape[0] < 1 || t.shape[1] < 1 || (i > 0 && t.shape != ids_shape)) {
        throw Error("'" + (i > 0 && inputs.count(own) ? own : std::string("input_ids")) + "' has shape " + shape_string(t.shape) +
                    ", the text encoder reads [batch, 77 k]" + (i > 0 ? " like input_ids" : ""));
      }
      ids_shape = t.shape;
      ids.push_back(t.data);
    }
    const int64_t batch = ids_shape[0], chunks = ids_shape[1] / chunk;
    pipeline::EncodeContext context{*impl_->accel, impl_->cache, nullptr, 0, 0, adapters->text_layers()};
    pipeline::TextConditioner::Encoded encoded;
    run_timed([&] { encoded = text->encode_ids(ids, batch * chunks, 0, context); }, runs, timing);
    std::map<std::string, FloatTensor> out;
    out["hidden_states"] = {{batch, ids_shape[1], text->context_width()}, std::move(encoded.context)};
    if (const int64_t width = text->pooled_width()) {
      // Each row's pooled vector is its first chunk's.
      FloatTensor& pooled = out["pooled"] = {{batch, width}, {}};
      for (int64_t b = 0; b < batch; ++b) {
        const auto first = encoded.pooled.begin() + b * chunks * width;
        pooled.data.insert(pooled.data.end(), first, first + width);
      }
    }
    return out;
  }
  if (!component.empty() && component != "diffusion_model" && component != "unet") {
    throw Error("unknown component '" + component +
                "' (diffusion_model or unet, text_encoder, vae_decoder, vae_encoder)");
  }
  if (!m.model) throw Error(info().path + ": " + m.info.description + ", has no diffusion model");
  const models::DiffusionModel& model = *m.model;
  const int64_t channels = model.latent_format().channels;
  const std::string reads = "the diffusion model reads x [batch, " + std::to_string(channels) +
                            ", h, w], t [batch] and its conditioning (y [batch] for class labels)";
  const FloatTensor& x = named_input(inputs, models::input_names(models::InputRole::Latents), reads);
  if (x.shape.size() != 4 || x.shape[1] != channels) {
    throw Error("'x' has shape " + shape_string(x.shape) + ", the model takes [batch, " + std::to_string(channels) + ", h, w]");
  }
  const int64_t batch = x.shape[0];
  int64_t context_tokens = 0;
  for (const std::string& name : models::input_names(models::InputRole::TextContext)) {
    if (const auto it = inputs.find(name); it != inputs.end() && it->second.shape.size() == 3) context_tokens = it->second.shape[1];
  }
  const auto built = model.build({batch, x.shape[2], x.shape[3], context_tokens, adapters->unet_layers()});
  std::vector<const float*> bound;
  for (const auto& [role, value] : built->inputs) {
    const FloatTensor& t = named_input(inputs, models::input_names(role), reads);
    const std::vector<int64_t>& shape = built->graph.values()[static_cast<size_t>(value)].shape;
    int64_t expected = 1;
    for (const int64_t d : shape) expected *= d;
    if (static_cast<int64_t>(t.data.size()) != expected) {
      throw Error("'" + models::input_names(role).front() + "' holds " + std::to_string(t.data.size()) + " values, the model reads " +
                  shape_string(shape));
    }
    bound.push_back(t.data.data());
  }
  runtime::Executor exec(built->graph, *impl_->accel, impl_->cache);
  run_timed(exec, bound, runs, timing);
  return {{"out", output_of(built->graph, exec, built->output)}};
}

}  // namespace tiledraw
