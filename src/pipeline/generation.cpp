#include "pipeline/generation.h"

#include <algorithm>
#include <chrono>

#include "runtime/stopwatch.h"
#include "tiledraw/error.h"
#include "tiledraw/memory.h"

namespace tiledraw::pipeline {
namespace {

// Runs a graph and stops with the op's name when its output is not finite: a
// cheap scan of the output per run, the op-by-op search only on failure.
void run_checked(runtime::Executor& exec, const std::vector<const float*>& inputs, int output, int64_t count,
                 const std::string& where) {
  exec.run(inputs);
  if (runtime::all_finite(exec.data(output), count)) return;
  const std::string op = exec.locate_non_finite(inputs);
  throw Error(where + ": NaN or Inf in the output" + (op.empty() ? std::string() : ", first made by " + op));
}

}  // namespace

Generator::Generator(const models::DitModel& model, const models::VaeDecoder* vae, const Accelerator& accel,
                     ProgramCache& cache)
    : model_(model), vae_(vae), accel_(accel), cache_(cache) {
  if (vae && vae->config().latent_channels != model.config().in_channels) {
    throw Error("the VAE decodes " + std::to_string(vae->config().latent_channels) + "-channel latents, the model makes " +
                std::to_string(model.config().in_channels));
  }
}

std::pair<int64_t, int64_t> Generator::image_size(const GenerationRequest& r) const {
  const models::DitConfig& c = model_.config();
  const int64_t factor = vae_ ? vae_->config().factor() : 1, unit = factor * c.patch_size;
  const int64_t height = r.height ? r.height : c.input_size * factor, width = r.width ? r.width : c.input_size * factor;
  if (height <= 0 || width <= 0 || height % unit || width % unit) {
    throw Error("image size " + std::to_string(width) + " x " + std::to_string(height) + " is not a positive multiple of " +
                std::to_string(unit) + (vae_ ? " (the VAE's factor times the patch size)" : " (the patch size)"));
  }
  return {height, width};
}

std::vector<Image> Generator::generate(const GenerationRequest& r, const std::function<void(int, int)>& progress,
                                       GenerationReport* report) const {
  const models::DitConfig& c = model_.config();
  for (const int64_t id : r.classes) {
    if (id < 0 || id >= c.num_classes) throw Error("class " + std::to_string(id) + " is outside 0.." + std::to_string(c.num_classes - 1));
  }
  if (r.classes.empty() || r.per_class < 1 || r.steps < 1) throw Error("nothing to generate: no classes, images or steps");
  const auto [height, width] = image_size(r);
  const int64_t factor = vae_ ? vae_->config().factor() : 1;
  const int64_t latent_h = height / factor, latent_w = width / factor;
  const bool guided = r.cfg_scale != 1.0;
  const int64_t images = static_cast<int64_t>(r.classes.size()) * r.per_class;
  const int64_t rows = guided ? 2 * images : images;  // guidance runs a null-class half
  const int64_t plane = latent_h * latent_w, per_image = c.in_channels * plane;
  const int64_t out_image = c.out_channels() * plane;

  // The latents, the sampler's few copies of them, the model's output and the
  // pictures: reserved with the graphs and arenas before the first step.
  const std::string what = std::to_string(images) + " image" + (images == 1 ? "" : "s") + " of " +
                           std::to_string(width) + " x " + std::to_string(height);
  const MemoryReservation latents_memory(
      static_cast<uint64_t>(rows) * static_cast<uint64_t>(6 * per_image + out_image) * sizeof(float) +
          static_cast<uint64_t>(images * height * width * (vae_ ? vae_->config().out_channels : c.in_channels)),
      "the latents and pictures of " + what);
  const auto built = model_.build(rows, latent_h, latent_w);
  runtime::Executor exec(built->graph, accel_, cache_);
  std::unique_ptr<models::VaeDecoder::Graph> decoder;
  std::unique_ptr<runtime::Executor> vae_exec;
  if (vae_) {
    decoder = vae_->build(1, latent_h, latent_w);
    vae_exec = std::make_unique<runtime::Executor>(decoder->graph, accel_, cache_);
  }

  std::vector<float> classes(static_cast<size_t>(rows), static_cast<float>(c.num_classes));
  for (int64_t i = 0; i < images; ++i) classes[static_cast<size_t>(i)] = static_cast<float>(r.classes[static_cast<size_t>(i / r.per_class)]);
  std::vector<float> x(static_cast<size_t>(rows * per_image));
  sampling::NormalNoise noise(r.seed);
  noise.fill(x.data(), static_cast<size_t>(images * per_image));
  if (guided) std::copy_n(x.begin(), images * per_image, x.begin() + images * per_image);

  // DiT's forward with guidance: the first three channels of the noise are
  // guided (uncond + s (cond - uncond)) for both halves, the rest kept per half.
  int step = 0;
  const std::string steps = std::to_string(r.steps);
  const sampling::Denoiser model_eps = [&](const float* latents, int timestep, float* eps, float* variance) {
    const std::vector<float> t(static_cast<size_t>(rows), static_cast<float>(timestep));
    run_checked(exec, {latents, t.data(), classes.data()}, built->output, rows * out_image,
                "step " + std::to_string(step + 1) + "/" + steps + " (timestep " + std::to_string(timestep) + ")");
    const float* out = exec.data(built->output);
    for (int64_t b = 0; b < rows; ++b) {
      std::copy_n(out + b * out_image, per_image, eps + b * per_image);
      if (variance) {
        if (c.learn_sigma) {
          std::copy_n(out + b * out_image + per_image, per_image, variance + b * per_image);
        } else {
          std::fill_n(variance + b * per_image, per_image, -1.0f);  // the posterior variance
        }
      }
    }
    if (!guided) return;
    const int64_t guided_values = std::min<int64_t>(3, c.in_channels) * plane;
    for (int64_t b = 0; b < images; ++b) {
      float* cond = eps + b * per_image;
      float* uncond = eps + (b + images) * per_image;
      for (int64_t i = 0; i < guided_values; ++i) {
        const float mixed = uncond[i] + static_cast<float>(r.cfg_scale) * (cond[i] - uncond[i]);
        cond[i] = uncond[i] = mixed;
      }
    }
  };

  // Pixel-space models predict images in [-1, 1]: clip their estimates there, as
  // guided-diffusion samples pixel models; latents are not bounded.
  const sampling::Schedule schedule = sampling::Schedule::linear();
  const sampling::Denoiser denoise = vae_ ? model_eps : sampling::clip_denoised(schedule, model_eps, x.size());
  const auto sampling_start = std::chrono::steady_clock::now();
  sampling::sample(r.sampler, r.steps, schedule, x, denoise, noise, [&](int done, int total) {
    step = done;
    if (!runtime::all_finite(x.data(), static_cast<int64_t>(x.size()))) {
      throw Error("step " + std::to_string(done) + "/" + steps + ": the " + sampling::sampler_name(r.sampler) +
                  " update made the latents NaN or Inf (is the guidance scale too large?)");
    }
    if (progress) progress(done, total);
  });
  const double sampling_seconds = seconds_since(sampling_start);

  // Pixels: the samples themselves, or decoded one image at a time (the VAE's
  // activations at full resolution are the largest of the whole run).
  std::vector<Image> pictures;
  const auto decode_start = std::chrono::steady_clock::now();
  if (vae_) {
    std::vector<float> z(static_cast<size_t>(per_image));
    const int64_t pixels = vae_->config().out_channels * height * width;
    for (int64_t i = 0; i < images; ++i) {
      std::transform(x.begin() + i * per_image, x.begin() + (i + 1) * per_image, z.begin(),
                     [&](float v) { return v / vae_->config().scaling_factor; });
      run_checked(*vae_exec, {z.data()}, decoder->image, pixels, "VAE decode of image " + std::to_string(i + 1));
      pictures.push_back(image_from_planes(vae_exec->data(decoder->image), vae_->config().out_channels, height, width));
    }
  } else {
    for (int64_t i = 0; i < images; ++i) pictures.push_back(image_from_planes(x.data() + i * per_image, c.in_channels, height, width));
  }
  if (report) {
    report->sampling_seconds = sampling_seconds;
    report->decode_seconds = seconds_since(decode_start);
    report->model_profile = exec.profile();
    report->model_arena_bytes = exec.plan().arena_bytes;
    if (vae_exec) {
      report->vae_profile = vae_exec->profile();
      report->vae_arena_bytes = vae_exec->plan().arena_bytes;
    }
  }
  return pictures;
}

}  // namespace tiledraw::pipeline
