#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/progress.h"
#include "models/dit.h"
#include "runtime/executor.h"
#include "sampling/sampler.h"
#include "tiledraw/tiledraw.h"

namespace tiledraw::cli {
namespace {

struct GenerateArgs {
  std::string model, vae, output = "out.png", sampler = "ddim";
  int64_t class_id = 0, steps = 50, seed = 42, width = 0, height = 0, batch = 1;
  double cfg_scale = 4.0;
  bool quiet = false, profile = false;
};

std::string base_name(const std::string& path) { return path.substr(path.rfind('/') + 1); }

std::string numbered(const std::string& path, int64_t index, int64_t count) {
  if (count == 1) return path;
  const size_t dot = path.rfind('.');
  const size_t slash = path.rfind('/');
  const bool has_extension = dot != std::string::npos && (slash == std::string::npos || dot > slash);
  return (has_extension ? path.substr(0, dot) : path) + "-" + std::to_string(index + 1) +
         (has_extension ? path.substr(dot) : ".png");
}

void run_generate(const GenerateArgs& a) {
  if (!a.vae.empty()) throw Error("--vae: decoding latents with a VAE is not implemented yet");
  const SafetensorsFile file = SafetensorsFile::open(a.model);
  std::string why;
  const std::unique_ptr<Accelerator> accel = make_accelerator("auto", &why);
  const models::DitModel model(file, *accel);
  const models::DitConfig& c = model.config();
  if (c.in_channels != 1 && c.in_channels != 3) {
    throw Error(a.model + ": the model makes " + std::to_string(c.in_channels) +
                "-channel latents, not pixels; decoding them needs --vae");
  }
  const int64_t height = a.height ? a.height : c.input_size, width = a.width ? a.width : c.input_size;
  if (height % c.patch_size || width % c.patch_size || height <= 0 || width <= 0) {
    throw Error("-W/-H: " + std::to_string(width) + " x " + std::to_string(height) + " is not a multiple of the patch size " +
                std::to_string(c.patch_size));
  }
  if (a.class_id < 0 || a.class_id >= c.num_classes) {
    throw Error("--class: " + std::to_string(a.class_id) + " is outside 0.." + std::to_string(c.num_classes - 1));
  }
  const sampling::SamplerKind sampler = sampling::parse_sampler(a.sampler);
  const bool guided = a.cfg_scale != 1.0;
  const int64_t images = a.batch, rows = guided ? 2 * images : images;  // guidance runs a null-class half
  const int64_t plane = height * width, per_image = c.in_channels * plane;

  const auto built = model.build(rows, height, width);
  ProgramCache cache;
  runtime::Executor exec(built->graph, *accel, cache);
  std::vector<float> classes(static_cast<size_t>(rows), static_cast<float>(a.class_id));
  for (int64_t i = images; i < rows; ++i) classes[static_cast<size_t>(i)] = static_cast<float>(c.num_classes);

  std::vector<float> x(static_cast<size_t>(rows * per_image));
  sampling::NormalNoise noise(static_cast<uint64_t>(a.seed));
  noise.fill(x.data(), static_cast<size_t>(images * per_image));
  if (guided) std::copy_n(x.begin(), images * per_image, x.begin() + images * per_image);

  // DiT's forward with guidance: the first three channels of the noise are
  // guided (uncond + s (cond - uncond)) for both halves, the rest kept per half.
  const sampling::Denoiser denoise = [&](const float* latents, int timestep, float* eps, float* variance) {
    const std::vector<float> t(static_cast<size_t>(rows), static_cast<float>(timestep));
    exec.run({latents, t.data(), classes.data()});
    const float* out = exec.data(built->output);
    const int64_t out_image = c.out_channels() * plane;
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
        const float mixed = uncond[i] + static_cast<float>(a.cfg_scale) * (cond[i] - uncond[i]);
        cond[i] = uncond[i] = mixed;
      }
    }
  };

  Progress progress("sampling", "it", a.quiet);
  const auto start = std::chrono::steady_clock::now();
  sampling::sample(sampler, static_cast<int>(a.steps), sampling::Schedule::linear(), x, denoise, noise,
                   [&](int done, int total) { progress.update(static_cast<size_t>(done), static_cast<size_t>(total)); });
  progress.finish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  char cfg[32];
  std::snprintf(cfg, sizeof cfg, "%g", a.cfg_scale);
  const std::string parameters = "class " + std::to_string(a.class_id) + "\nSteps: " + std::to_string(a.steps) +
                                 ", Sampler: " + sampling::sampler_name(sampler) + ", CFG scale: " + cfg +
                                 ", Seed: " + std::to_string(a.seed) + ", Size: " + std::to_string(width) + "x" +
                                 std::to_string(height) + ", Model: " + base_name(a.model) + ", Accelerator: " +
                                 accel->kernel();
  for (int64_t i = 0; i < images; ++i) {
    const std::string path = numbered(a.output, i, images);
    write_png(path, image_from_planes(x.data() + i * per_image, c.in_channels, height, width), {{"parameters", parameters}});
    if (!a.quiet) std::printf("wrote %s (%lld x %lld)\n", path.c_str(), static_cast<long long>(width), static_cast<long long>(height));
  }
  if (!a.quiet) std::printf("%lld steps in %.2f s (%.2f it/s)\n", static_cast<long long>(a.steps), seconds, a.steps / seconds);
  if (a.profile) exec.profile().print(stderr, *accel, cache.stats(), exec.plan().arena_bytes);
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate images with a class-conditional DiT");
  cmd->add_option("-m,--model", args->model, "DiT safetensors (original layout, float or 8-bit S)")->required();
  cmd->add_option("--vae", args->vae, "VAE decoder for latent models (not implemented yet)");
  cmd->add_option("--class", args->class_id, "Class id")->capture_default_str();
  cmd->add_option("--steps", args->steps, "Sampling steps")->capture_default_str()->check(CLI::Range(1, 1000));
  cmd->add_option("--sampler", args->sampler, "ddpm, ddim, euler or dpm++2m")->capture_default_str();
  cmd->add_option("--cfg-scale", args->cfg_scale, "Classifier-free guidance scale (1 turns it off)")->capture_default_str();
  cmd->add_option("--seed", args->seed, "Seed of the initial noise")->capture_default_str();
  cmd->add_option("-W,--width", args->width, "Width (default: the model's trained size)")->check(CLI::Range(1, 1 << 14));
  cmd->add_option("-H,--height", args->height, "Height (default: the model's trained size)")->check(CLI::Range(1, 1 << 14));
  cmd->add_option("-b,--batch", args->batch, "Images to make, written as numbered files")->capture_default_str()->check(CLI::Range(1, 256));
  cmd->add_option("-o,--output", args->output, "Output PNG")->capture_default_str();
  cmd->add_flag("-q,--quiet", args->quiet, "No progress and no summary");
  cmd->add_flag("--profile", args->profile, "Print time by op, the program cache and the arena (stderr)");
  cmd->callback([args] { run_generate(*args); });
}

}  // namespace tiledraw::cli
