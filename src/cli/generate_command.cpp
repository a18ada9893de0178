#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include "cli/commands.h"
#include "cli/progress.h"
#include "models/dit.h"
#include "models/vae.h"
#include "runtime/executor.h"
#include "sampling/sampler.h"
#include "tiledraw/tiledraw.h"

namespace tiledraw::cli {
namespace {

struct GenerateArgs {
  std::string model, precision = "auto", vae, vae_precision = "auto", labels, output = "out.png", sampler = "ddim";
  std::vector<std::string> classes, class_names;
  int64_t steps = 50, seed = 42, width = 0, height = 0, batch = 1;
  double cfg_scale = 4.0;
  bool grid = false, quiet = false, profile = false;
};

using Clock = std::chrono::steady_clock;

std::string base_name(const std::string& path) { return path.substr(path.rfind('/') + 1); }

std::string numbered(const std::string& path, int64_t index, int64_t count) {
  if (count == 1) return path;
  const size_t dot = path.rfind('.');
  const size_t slash = path.rfind('/');
  const bool has_extension = dot != std::string::npos && (slash == std::string::npos || dot > slash);
  return (has_extension ? path.substr(0, dot) : path) + "-" + std::to_string(index + 1) +
         (has_extension ? path.substr(dot) : ".png");
}

// Names compare without case, with spaces, underscores and hyphens alike.
std::string name_key(const std::string& name) {
  std::string key;
  for (const char c : name) key += (c == ' ' || c == '_' || c == '-') ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return key;
}

std::vector<std::string> read_labels(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("--labels: cannot read " + path);
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  return names;
}

// Class ids from --class (ids or names, comma-separated, or "all") and --class-name.
std::vector<int64_t> resolve_classes(const GenerateArgs& a, const std::vector<std::string>& names, int64_t count) {
  std::vector<std::pair<std::string, std::string>> wanted;  // (flag, value)
  for (const std::string& list : a.classes) {
    std::stringstream items(list);
    for (std::string item; std::getline(items, item, ',');) wanted.emplace_back("--class", item);
  }
  for (const std::string& name : a.class_names) wanted.emplace_back("--class-name", name);
  if (wanted.empty()) wanted.emplace_back("--class", "0");

  std::vector<int64_t> ids;
  for (const auto& [flag, value] : wanted) {
    if (value == "all" && flag == "--class") {
      for (int64_t i = 0; i < count; ++i) ids.push_back(i);
      continue;
    }
    const bool numeric = flag == "--class" && !value.empty() && std::all_of(value.begin(), value.end(), ::isdigit);
    if (numeric) {
      const int64_t id = value.size() > 9 ? count : std::stoll(value);
      if (id >= count) throw Error("--class: " + value + " is outside 0.." + std::to_string(count - 1));
      ids.push_back(id);
      continue;
    }
    if (names.empty()) {
      throw Error(flag + ": '" + value + "' is not a class id, and the model has no class names (give --labels FILE)");
    }
    const auto it = std::find_if(names.begin(), names.end(), [&](const std::string& n) { return name_key(n) == name_key(value); });
    if (it == names.end()) throw Error(flag + ": no class named '" + value + "'");
    ids.push_back(it - names.begin());
  }
  return ids;
}

void run_generate(GenerateArgs a) {
  const auto start = Clock::now();
  if (a.model.empty()) a.model = default_model_path();
  const SafetensorsFile file = SafetensorsFile::open(a.model);
  const std::unique_ptr<Accelerator> accel = make_accelerator("auto");
  const models::DitModel model(file, *accel, models::parse_precision(a.precision, "--precision"));
  const models::DitConfig& c = model.config();

  std::unique_ptr<SafetensorsFile> vae_file;
  std::unique_ptr<models::VaeDecoder> vae;
  if (!a.vae.empty()) {
    vae_file = std::make_unique<SafetensorsFile>(SafetensorsFile::open(a.vae));
    vae = std::make_unique<models::VaeDecoder>(*vae_file, *accel, models::parse_precision(a.vae_precision, "--vae-precision"));
    if (vae->config().latent_channels != c.in_channels) {
      throw Error(a.vae + ": the VAE decodes " + std::to_string(vae->config().latent_channels) + "-channel latents, the model makes " +
                  std::to_string(c.in_channels));
    }
  } else if (c.in_channels != 1 && c.in_channels != 3) {
    throw Error(a.model + ": the model makes " + std::to_string(c.in_channels) +
                "-channel latents, not pixels; decoding them needs --vae VAE.safetensors");
  }
  const int64_t factor = vae ? vae->config().factor() : 1, unit = factor * c.patch_size;
  const int64_t height = a.height ? a.height : c.input_size * factor, width = a.width ? a.width : c.input_size * factor;
  if (height <= 0 || width <= 0 || height % unit || width % unit) {
    throw Error("-W/-H: " + std::to_string(width) + " x " + std::to_string(height) + " is not a positive multiple of " +
                std::to_string(unit) + (vae ? " (the VAE's factor times the patch size)" : " (the patch size)"));
  }
  const std::vector<std::string> names = a.labels.empty() ? models::class_names(file) : read_labels(a.labels);
  const std::vector<int64_t> class_ids = resolve_classes(a, names, c.num_classes);

  const sampling::SamplerKind sampler = sampling::parse_sampler(a.sampler);
  const bool guided = a.cfg_scale != 1.0;
  const int64_t images = static_cast<int64_t>(class_ids.size()) * a.batch;
  const int64_t rows = guided ? 2 * images : images;  // guidance runs a null-class half
  const int64_t latent_h = height / factor, latent_w = width / factor;
  const int64_t plane = latent_h * latent_w, per_image = c.in_channels * plane;

  const auto built = model.build(rows, latent_h, latent_w);
  ProgramCache cache;
  runtime::Executor exec(built->graph, *accel, cache);
  std::vector<float> classes(static_cast<size_t>(rows), static_cast<float>(c.num_classes));
  for (int64_t i = 0; i < images; ++i) classes[static_cast<size_t>(i)] = static_cast<float>(class_ids[static_cast<size_t>(i / a.batch)]);

  std::vector<float> x(static_cast<size_t>(rows * per_image));
  sampling::NormalNoise noise(static_cast<uint64_t>(a.seed));
  noise.fill(x.data(), static_cast<size_t>(images * per_image));
  if (guided) std::copy_n(x.begin(), images * per_image, x.begin() + images * per_image);

  // DiT's forward with guidance: the first three channels of the noise are
  // guided (uncond + s (cond - uncond)) for both halves, the rest kept per half.
  const sampling::Denoiser model_eps = [&](const float* latents, int timestep, float* eps, float* variance) {
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

  // Pixel-space models predict images in [-1, 1]: clip their estimates there, as
  // guided-diffusion samples pixel models; latents are not bounded.
  const sampling::Schedule schedule = sampling::Schedule::linear();
  const sampling::Denoiser denoise = vae ? model_eps : sampling::clip_denoised(schedule, model_eps, x.size());

  const double load_seconds = seconds_since(start);
  Progress progress("sampling", "it", a.quiet);
  const auto sampling_start = Clock::now();
  sampling::sample(sampler, static_cast<int>(a.steps), schedule, x, denoise, noise,
                   [&](int done, int total) { progress.update(static_cast<size_t>(done), static_cast<size_t>(total)); });
  progress.finish();
  const double sampling_seconds = seconds_since(sampling_start);

  // Pixels: the samples themselves, or decoded one image at a time (the VAE's
  // activations at full resolution are the largest of the whole run).
  std::vector<Image> pictures;
  const auto decode_start = Clock::now();
  if (vae) {
    const auto decoder = vae->build(1, latent_h, latent_w);
    runtime::Executor vae_exec(decoder->graph, *accel, cache);
    std::vector<float> z(static_cast<size_t>(per_image));
    for (int64_t i = 0; i < images; ++i) {
      std::transform(x.begin() + i * per_image, x.begin() + (i + 1) * per_image, z.begin(),
                     [&](float v) { return v / vae->config().scaling_factor; });
      vae_exec.run({z.data()});
      pictures.push_back(image_from_planes(vae_exec.data(decoder->image), vae->config().out_channels, height, width));
    }
    if (a.profile) vae_exec.profile().print(stderr, *accel, cache.stats(), vae_exec.plan().arena_bytes);
  } else {
    for (int64_t i = 0; i < images; ++i) pictures.push_back(image_from_planes(x.data() + i * per_image, c.in_channels, height, width));
  }
  const double decode_seconds = seconds_since(decode_start);

  std::string subject;
  for (const int64_t id : class_ids) {
    subject += (subject.empty() ? "class " : ", ") + std::to_string(id);
    if (static_cast<size_t>(id) < names.size()) subject += " (" + names[static_cast<size_t>(id)] + ")";
  }
  char cfg[32];
  std::snprintf(cfg, sizeof cfg, "%g", a.cfg_scale);
  const std::string parameters = subject + "\nSteps: " + std::to_string(a.steps) + ", Sampler: " + sampling::sampler_name(sampler) +
                                 ", CFG scale: " + cfg + ", Seed: " + std::to_string(a.seed) + ", Size: " + std::to_string(width) +
                                 "x" + std::to_string(height) + ", Model: " + base_name(a.model) +
                                 (vae ? ", VAE: " + base_name(a.vae) : std::string()) + ", Accelerator: " + accel->kernel();
  std::vector<std::string> written;
  if (a.grid || images == 1) {
    const int64_t columns = class_ids.size() > 1 ? a.batch : static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(images))));
    write_png(a.output, images == 1 ? pictures[0] : image_grid(pictures, columns), {{"parameters", parameters}});
    written.push_back(a.output);
  } else {
    for (int64_t i = 0; i < images; ++i) {
      written.push_back(numbered(a.output, i, images));
      write_png(written.back(), pictures[static_cast<size_t>(i)], {{"parameters", parameters}});
    }
  }
  if (!a.quiet) {
    for (const std::string& path : written) std::printf("wrote %s\n", path.c_str());
    std::printf("%lld image%s of %lld x %lld: load %.2f s, %lld steps %.2f s (%.2f it/s)", static_cast<long long>(images),
                images == 1 ? "" : "s", static_cast<long long>(width), static_cast<long long>(height), load_seconds,
                static_cast<long long>(a.steps), sampling_seconds, static_cast<double>(a.steps) / sampling_seconds);
    if (vae) std::printf(", VAE decode %.2f s", decode_seconds);
    std::printf(", total %.2f s\n", seconds_since(start));
  }
  if (a.profile) exec.profile().print(stderr, *accel, cache.stats(), exec.plan().arena_bytes);
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate images with a class-conditional DiT");
  cmd->add_option("-m,--model", args->model, "DiT safetensors, float or 8-bit S (default: the bundled Fashion-MNIST model)");
  cmd->add_option("--precision", args->precision, "Model matrices as stored (auto), float, or 8bit-s")->capture_default_str();
  cmd->add_option("--vae", args->vae, "VAE decoder (diffusers AutoencoderKL) for latent models");
  cmd->add_option("--vae-precision", args->vae_precision, "VAE matrices as stored (auto), float, or 8bit-s")->capture_default_str();
  cmd->add_option("--class", args->classes, "Class ids or names, comma-separated, or 'all' (default 0)");
  cmd->add_option("--class-name", args->class_names, "Class by name (from the model's class names or --labels)");
  cmd->add_option("--labels", args->labels, "Text file of class names, one per line, in id order");
  cmd->add_option("--steps", args->steps, "Sampling steps")->capture_default_str()->check(CLI::Range(1, 1000));
  cmd->add_option("--sampler", args->sampler, "ddpm, ddim, euler or dpm++2m")->capture_default_str();
  cmd->add_option("--cfg-scale", args->cfg_scale, "Classifier-free guidance scale (1 turns it off)")->capture_default_str();
  cmd->add_option("--seed", args->seed, "Seed of the initial noise")->capture_default_str();
  cmd->add_option("-W,--width", args->width, "Width in pixels (default: the model's trained size)")->check(CLI::Range(1, 1 << 14));
  cmd->add_option("-H,--height", args->height, "Height in pixels (default: the model's trained size)")->check(CLI::Range(1, 1 << 14));
  cmd->add_option("-b,--batch", args->batch, "Images per class")->capture_default_str()->check(CLI::Range(1, 256));
  cmd->add_option("-o,--output", args->output, "Output PNG (numbered when there are several, unless --grid)")->capture_default_str();
  cmd->add_flag("--grid", args->grid, "Write all images as one grid (a row per class when there are several)");
  cmd->add_flag("-q,--quiet", args->quiet, "No progress and no summary");
  cmd->add_flag("--profile", args->profile, "Print time by op, the program cache and the arena (stderr)");
  cmd->callback([args] { run_generate(*args); });
}

}  // namespace tiledraw::cli
