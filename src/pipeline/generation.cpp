#include "pipeline/generation.h"

#include <cmath>
#include <chrono>
#include <cstdio>
#include <optional>

#include "pipeline/denoiser.h"
#include "runtime/planner.h"
#include "runtime/stopwatch.h"
#include "runtime/text.h"
#include "sampling/sampler.h"
#include "tiledraw/error.h"
#include "tiledraw/memory.h"

namespace tiledraw::pipeline {
namespace {

std::string base_name(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p.substr(p.rfind('/') + 1);
}

std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

// One executor's profile as text (--profile prints the VAE's, then the model's).
std::string profile_text(const runtime::Executor& exec, const Accelerator& accel, const ProgramCache& cache) {
  char* buffer = nullptr;
  size_t size = 0;
  std::FILE* out = open_memstream(&buffer, &size);
  if (!out) return {};
  exec.profile().print(out, accel, cache.stats(), exec.plan().arena_bytes);
  std::fclose(out);
  std::string text(buffer, size);
  std::free(buffer);
  return text;
}

// The model works on (VAE latents - shift) x scaling: the VAE config's
// values when it states them, else the model's latent format's.
struct LatentScaling {
  double scaling, shift;
};
LatentScaling latent_scaling(const LoadedModel& m) {
  const models::VaeConfig& vae = m.vae->config();
  const models::LatentFormat format = m.model->latent_format();
  return vae.scaling_factor > 0 ? LatentScaling{vae.scaling_factor, vae.shift_factor}
                                : LatentScaling{format.scaling_factor, format.shift_factor};
}

// The init picture at the request's size as the model's latents (one image's).
std::vector<float> init_latents(const LoadedModel& m, const Accelerator& accel, ProgramCache& cache,
                                const GenerationRequest& r, int64_t height, int64_t width,
                                const std::atomic<bool>* cancel) {
  if (!m.vae) throw Error(m.model_info.path + ": starting from an image needs a VAE, and the model has none");
  const models::VaeEncoder& encoder = m.vae_encoder(accel);
  const int64_t channels = encoder.config().in_channels;
  if (r.init_image->channels != 1 && r.init_image->channels != 3) {
    throw Error("the init image has " + std::to_string(r.init_image->channels) + " channels, expected 1 or 3");
  }
  const Image picture = resize_image(*r.init_image, width, height);
  std::vector<float> planes(static_cast<size_t>(channels * height * width));
  for (int64_t c = 0; c < channels; ++c) {
    const int64_t from = picture.channels == 1 ? 0 : std::min(c, picture.channels - 1);
    for (int64_t i = 0; i < height * width; ++i) {
      planes[static_cast<size_t>(c * height * width + i)] =
          picture.pixels[static_cast<size_t>(i * picture.channels + from)] / 127.5f - 1.0f;
    }
  }
  const auto built = encoder.build(1, height, width);
  runtime::Executor exec(built->graph, accel, cache);
  exec.set_cancel_flag(cancel);
  exec.run({planes.data()});
  const runtime::Value& mean = built->graph.values()[static_cast<size_t>(built->mean)];
  const float* z = exec.data(built->mean);
  const LatentScaling latent = latent_scaling(m);
  std::vector<float> latents(static_cast<size_t>(mean.numel()));
  for (size_t i = 0; i < latents.size(); ++i) latents[i] = static_cast<float>((z[i] - latent.shift) * latent.scaling);
  return latents;
}

}  // namespace

std::pair<int64_t, int64_t> image_size(const LoadedModel& m, const GenerationRequest& r) {
  const ModelInfo& info = m.model_info;
  const int64_t height = r.height ? r.height : info.default_height, width = r.width ? r.width : info.default_width;
  const int64_t unit = info.size_multiple;
  if (height <= 0 || width <= 0 || height % unit || width % unit) {
    throw Error("image size " + std::to_string(width) + " x " + std::to_string(height) + " is not a positive multiple of " +
                std::to_string(unit) + (m.vae ? " (the VAE's factor times the model's)" : " (the patch size)"));
  }
  return {height, width};
}

GenerationResult generate(const LoadedModel& m, const Accelerator& accel, ProgramCache& cache, const GenerationRequest& r,
                          const ProgressCallback& progress, const std::atomic<bool>* cancel, const ReleaseHooks& release) {
  if (!m.model) throw Error(m.model_info.path + ": " + m.info.description + ", not a model that generates");
  const models::DiffusionModel& model = *m.model;
  const models::LatentFormat format = model.latent_format();
  if (!m.vae && !format.pixels()) {
    throw Error(m.model_info.path + ": the model makes " + std::to_string(format.channels) +
                "-channel latents, not pixels; decoding them needs a VAE, and none was given or found with the model");
  }
  const int steps = r.steps.value_or(model.default_steps());
  const Sampler sampler = r.sampler.value_or(model.default_sampler());
  const double cfg_scale = r.cfg_scale.value_or(model.default_cfg_scale());
  const auto [height, width] = image_size(m, r);
  const int64_t factor = m.vae_factor();
  const int64_t latent_h = height / factor, latent_w = width / factor;
  if (!(r.strength >= 0.0 && r.strength <= 1.0)) throw Error("strength " + number(r.strength) + " is outside 0..1");
  const auto adapters = match_adapters(m, accel, request_loras(m, r));
  const Conditioning conditioning = m.conditioner->encode(r, {accel, cache, cancel, height, width, adapters->text_layers()});
  if (release.text_encoder) release.text_encoder();
  const int64_t images = conditioning.images, channels = format.channels;
  const int64_t per_image = channels * latent_h * latent_w;
  const bool guided = cfg_scale != 1.0;

  // The latents, the sampler's copies of them, the denoiser's buffers and the
  // pictures: reserved with the graphs and arenas before the first step.
  const std::string what = std::to_string(images) + " image" + (images == 1 ? "" : "s") + " of " +
                           std::to_string(width) + " x " + std::to_string(height);
  const int64_t floats = 6 * images * per_image + ModelDenoiser::buffer_floats(model, conditioning, guided, latent_h, latent_w);
  const MemoryReservation latents_memory(static_cast<uint64_t>(floats) * sizeof(float) +
                                             static_cast<uint64_t>(images * height * width * (m.vae ? m.vae->config().out_channels : channels)),
                                         "the latents and pictures of " + what);
  const sampling::ModelSampling sampling(model.noise_schedule());
  // img2img runs the schedule's last floor(strength x steps) steps from the
  // picture noised to where they start; all of them start from noise alone.
  const std::vector<double> schedule = sampling::sigmas_for(sampling, r.scheduler, sampler, steps);
  const int run_steps = r.init_image ? static_cast<int>(std::floor(steps * r.strength)) : steps;
  const std::vector<double> sigmas(schedule.end() - run_steps - 1, schedule.end());
  const std::vector<float> start = r.init_image && run_steps < steps ? init_latents(m, accel, cache, r, height, width, cancel)
                                                                     : std::vector<float>();
  auto denoiser = std::make_unique<ModelDenoiser>(model, sampling, conditioning, cfg_scale, latent_h, latent_w, !m.vae,
                                                  accel, cache, cancel, adapters->unet_layers());
  // The VAE runs after the model's activations are freed: up front, only what
  // its arena needs beyond theirs is reserved.
  std::unique_ptr<models::VaeDecoder::Graph> decoder;
  std::optional<MemoryReservation> vae_beyond_model;
  if (m.vae) {
    decoder = m.vae->build(1, latent_h, latent_w);
    const int64_t beyond = runtime::plan_memory(decoder->graph).arena_bytes - denoiser->executor().plan().arena_bytes;
    vae_beyond_model.emplace(static_cast<uint64_t>(std::max<int64_t>(beyond, 0)), "the VAE decoder's activations");
  }

  // Each image's noise from its own seed; given noise still advances the streams.
  sampling::BatchNoise noise(r.seed, images, per_image);
  std::vector<float> x(static_cast<size_t>(images * per_image));
  noise.fill(x.data());
  if (r.initial_noise) {
    const std::vector<int64_t> expected = {images, channels, latent_h, latent_w};
    if (r.initial_noise->shape != expected || r.initial_noise->data.size() != x.size()) {
      throw Error("the initial noise has shape " + shape_string(r.initial_noise->shape) + ", this request needs " +
                  shape_string(expected));
    }
    x = r.initial_noise->data;
  }
  for (size_t i = 0; i < x.size(); ++i) {
    const double clean = start.empty() ? 0.0 : start[i % start.size()];
    x[i] = static_cast<float>(sampling.add_noise(clean, x[i], sigmas.front()));
  }

  const auto sampling_start = std::chrono::steady_clock::now();
  int done_steps = 0;
  denoiser->set_step(0, run_steps);
  try {
    if (run_steps > 0) {
      sampling::sample(sampler, sigmas, sampling, x, std::ref(*denoiser), noise, [&](int done, int total) {
        done_steps = done;
        denoiser->set_step(done, total);
        if (!runtime::all_finite(x.data(), static_cast<int64_t>(x.size()))) {
          throw Error("step " + std::to_string(done) + "/" + std::to_string(total) + ": the " + sampler_name(sampler) +
                      " update made the latents NaN or Inf (is the guidance scale too large?)");
        }
        if (progress) progress(done, total);
      });
    }
  } catch (const Cancelled&) {
    throw Cancelled("cancelled at step " + std::to_string(done_steps + 1) + "/" + std::to_string(run_steps));
  }
  GenerationResult result;
  result.sampling_seconds = seconds_since(sampling_start);
  result.latents = {{images, channels, latent_h, latent_w}, x};
  if (r.profile) result.profile = profile_text(denoiser->executor(), accel, cache);
  denoiser.reset();
  vae_beyond_model.reset();
  // Read from the model before it may go.
  const LatentScaling latent = m.vae ? latent_scaling(m) : LatentScaling{1.0, 0.0};
  if (release.model) release.model();
  std::unique_ptr<runtime::Executor> vae_exec;
  if (decoder) {
    vae_exec = std::make_unique<runtime::Executor>(decoder->graph, accel, cache);
    vae_exec->set_cancel_flag(cancel);
  }

  // Pixels: the samples themselves, or decoded one image at a time (the VAE's
  // activations at full resolution are the largest of the whole run).
  const auto decode_start = std::chrono::steady_clock::now();
  if (m.vae) {
    std::vector<float> z(static_cast<size_t>(per_image));
    const int64_t pixels = m.vae->config().out_channels * height * width;
    for (int64_t i = 0; i < images; ++i) {
      std::transform(x.begin() + i * per_image, x.begin() + (i + 1) * per_image, z.begin(),
                     [&](float v) { return static_cast<float>(v / latent.scaling + latent.shift); });
      vae_exec->run({z.data()});
      if (!runtime::all_finite(vae_exec->data(decoder->image), pixels)) {
        const std::string op = vae_exec->locate_non_finite({z.data()});
        throw Error("VAE decode of image " + std::to_string(i + 1) + ": NaN or Inf in the output" +
                    (op.empty() ? std::string() : ", first made by " + op));
      }
      result.images.push_back(image_from_planes(vae_exec->data(decoder->image), m.vae->config().out_channels, height, width));
    }
  } else {
    for (int64_t i = 0; i < images; ++i) result.images.push_back(image_from_planes(x.data() + i * per_image, channels, height, width));
  }
  result.decode_seconds = seconds_since(decode_start);

  // A1111's parameters text: the subject, then the settings (its own seed per image).
  const std::string settings_head = "\nSteps: " + std::to_string(steps) + ", Sampler: " + sampler_label(sampler) +
                                    (r.scheduler == Scheduler::Default ? "" : std::string(", Schedule type: ") + scheduler_label(r.scheduler)) +
                                    ", CFG scale: " + number(cfg_scale) + ", Seed: ";
  const std::string img2img = r.init_image ? ", Denoising strength: " + number(r.strength) : std::string();
  const std::string settings_tail = ", Size: " + std::to_string(width) + "x" + std::to_string(height) +
                                    ", Model: " + base_name(m.model_info.path) +
                                    (m.vae && m.vae_path != m.model_info.path ? ", VAE: " + base_name(m.vae_path) : std::string()) +
                                    img2img + conditioning.settings + ", Accelerator: " + accel.kernel();
  // File names need not be UTF-8; the PNG's text must be.
  for (int64_t i = 0; i < images; ++i) {
    result.parameters.push_back(to_utf8(conditioning.subjects[static_cast<size_t>(i)] + settings_head +
                                        std::to_string(r.seed + static_cast<uint64_t>(i)) + settings_tail));
  }
  result.batch_parameters = to_utf8(conditioning.batch_subject + settings_head + std::to_string(r.seed) + settings_tail);
  if (r.profile && vae_exec) result.profile = profile_text(*vae_exec, accel, cache) + result.profile;
  return result;
}

}  // namespace tiledraw::pipeline
