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
#include "pipeline/generation.h"
#include "runtime/text.h"
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
    const std::string key = name_key(value);
    const auto it = std::find_if(names.begin(), names.end(), [&](const std::string& n) { return name_key(n) == key; });
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
  } else if (c.in_channels != 1 && c.in_channels != 3) {
    throw Error(a.model + ": the model makes " + std::to_string(c.in_channels) +
                "-channel latents, not pixels; decoding them needs --vae VAE.safetensors");
  }
  ProgramCache cache;
  const pipeline::Generator generator = [&] {
    try {
      return pipeline::Generator(model, vae.get(), *accel, cache);
    } catch (const Error& e) {
      throw Error(a.vae + ": " + e.what());
    }
  }();

  const std::vector<std::string> names = a.labels.empty() ? models::class_names(file) : read_labels(a.labels);
  pipeline::GenerationRequest request;
  request.classes = resolve_classes(a, names, c.num_classes);
  request.per_class = a.batch;
  request.steps = static_cast<int>(a.steps);
  request.sampler = sampling::parse_sampler(a.sampler);
  request.cfg_scale = a.cfg_scale;
  request.seed = static_cast<uint64_t>(a.seed);
  request.height = a.height;
  request.width = a.width;
  const auto [height, width] = [&] {
    try {
      return generator.image_size(request);
    } catch (const Error& e) {
      throw Error(std::string("-W/-H: ") + e.what());
    }
  }();
  const int64_t images = static_cast<int64_t>(request.classes.size()) * a.batch;

  const double load_seconds = seconds_since(start);
  Progress progress("sampling", "it", a.quiet);
  pipeline::GenerationReport report;
  const std::vector<Image> pictures = generator.generate(
      request, [&](int done, int total) { progress.update(static_cast<size_t>(done), static_cast<size_t>(total)); },
      &report);
  progress.finish();

  std::string subject;
  for (const int64_t id : request.classes) {
    subject += (subject.empty() ? "class " : ", ") + std::to_string(id);
    if (static_cast<size_t>(id) < names.size()) subject += " (" + names[static_cast<size_t>(id)] + ")";
  }
  char cfg[32];
  std::snprintf(cfg, sizeof cfg, "%g", a.cfg_scale);
  // File names need not be UTF-8; the PNG's text must be.
  const std::string parameters = to_utf8(subject + "\nSteps: " + std::to_string(a.steps) + ", Sampler: " + sampling::sampler_name(request.sampler) +
                                 ", CFG scale: " + cfg + ", Seed: " + std::to_string(a.seed) + ", Size: " + std::to_string(width) +
                                 "x" + std::to_string(height) + ", Model: " + base_name(a.model) +
                                 (vae ? ", VAE: " + base_name(a.vae) : std::string()) + ", Accelerator: " + accel->kernel());
  std::vector<std::string> written;
  if (a.grid || images == 1) {
    const int64_t columns = request.classes.size() > 1 ? a.batch : static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(images))));
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
                static_cast<long long>(a.steps), report.sampling_seconds, static_cast<double>(a.steps) / report.sampling_seconds);
    if (vae) std::printf(", VAE decode %.2f s", report.decode_seconds);
    std::printf(", total %.2f s\n", seconds_since(start));
  }
  if (a.profile) {
    if (vae) report.vae_profile.print(stderr, *accel, cache.stats(), report.vae_arena_bytes);
    report.model_profile.print(stderr, *accel, cache.stats(), report.model_arena_bytes);
  }
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
