#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>

#include "cli/commands.h"
#include "cli/interrupt.h"
#include "cli/progress.h"
#include "runtime/stopwatch.h"
#include "tiledraw/tiledraw.h"

namespace tiledraw::cli {
namespace {

struct GenerateArgs {
  std::string model, family, precision = "auto", vae, vae_precision = "auto", labels, output = "out.png";
  std::string sampler, scheduler = "default", initial_noise, output_latents;
  std::string negative_prompt, init_image, tokenizer, prediction, original_size, crop, target_size, lora_dir;
  double strength = 0.75;
  int clip_skip = 0;
  std::vector<std::string> prompts, classes, class_names, negative_classes, loras;
  int64_t steps = 0, seed = 42, width = 0, height = 0, batch = 1;
  double cfg_scale = NAN;
  bool grid = false, quiet = false, profile = false;
};

std::string numbered(const std::string& path, int64_t index, int64_t count) {
  if (count == 1) return path;
  const size_t dot = path.rfind('.');
  const size_t slash = path.rfind('/');
  const bool has_extension = dot != std::string::npos && (slash == std::string::npos || dot > slash);
  return (has_extension ? path.substr(0, dot) : path) + "-" + std::to_string(index + 1) +
         (has_extension ? path.substr(dot) : ".png");
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

std::vector<std::string> comma_separated(const std::vector<std::string>& lists) {
  std::vector<std::string> items;
  for (const std::string& list : lists) {
    std::stringstream in(list);
    for (std::string item; std::getline(in, item, ',');) items.push_back(item);
  }
  return items;
}

// Two whole numbers that are not negative, as "1024x768" or "32,64".
std::pair<int64_t, int64_t> number_pair(const std::string& text, char separator, const char* what) {
  const size_t at = text.find(separator);
  const auto whole = [&](const std::string& part) {
    if (part.empty() || part.size() > 6 || part.find_first_not_of("0123456789") != std::string::npos) {
      throw Error("'" + text + "' is not " + what);
    }
    return std::stoll(part);
  };
  if (at == std::string::npos) throw Error("'" + text + "' is not " + what);
  return {whole(text.substr(0, at)), whole(text.substr(at + 1))};
}

// The tensor `name` of a safetensors file as floats.
FloatTensor read_tensor(const std::string& path, const std::string& name) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  const TensorInfo* t = file.find(name);
  if (!t) throw Error(path + ": no tensor '" + name + "'");
  if (!is_float_dtype(t->dtype)) throw Error(path + ": tensor '" + name + "' is " + std::string(dtype_name(t->dtype)) + ", expected floats");
  FloatTensor out{t->shape, std::vector<float>(static_cast<size_t>(t->numel()))};
  convert_to_f32(t->dtype, file.data(*t).data(), out.data.data(), out.data.size());
  return out;
}

void write_tensor(const std::string& path, const std::string& name, const FloatTensor& tensor) {
  std::vector<TensorSource> tensors;
  tensors.push_back(TensorSource::from_bytes(name, DType::F32, tensor.shape, std::as_bytes(std::span(tensor.data))));
  write_safetensors(path, std::move(tensors), {{"produced_by", std::string("tiledraw ") + version()}});
}

void run_generate(GenerateArgs a) {
  const auto start = std::chrono::steady_clock::now();
  const std::atomic<bool>& interrupted = cancel_on_interrupt();
  if (a.model.empty()) a.model = default_model_path();
  LoadOptions options;
  options.family = a.family;
  options.precision = precision_flag(a.precision, "--precision");
  options.vae = a.vae;
  options.vae_precision = precision_flag(a.vae_precision, "--vae-precision");
  options.accelerator = global_options().accelerator;
  if (!a.labels.empty()) options.class_names = read_labels(a.labels);
  options.tokenizer = a.tokenizer;
  options.prediction = a.prediction;
  options.lora_dir = a.lora_dir;
  const std::unique_ptr<Pipeline> pipeline = Pipeline::load(a.model, options);
  const ModelInfo& info = pipeline->info();
  if (info.vae.empty() && info.latent) {
    throw Error(a.model + ": the model makes " + std::to_string(info.latent_channels) +
                "-channel latents, not pixels; decoding them needs --vae VAE.safetensors");
  }

  const bool prompted = !a.prompts.empty() || !a.negative_prompt.empty() || a.clip_skip;
  if (prompted && !info.text) {
    throw Error(std::string(a.prompts.empty() ? a.negative_prompt.empty() ? "--clip-skip" : "--negative-prompt" : "--prompt") +
                ": " + a.model + " (" + info.description + ") reads no text" + (info.classes ? "; give --class" : ""));
  }
  for (const auto& [flag, value] : {std::pair{"--original-size", &a.original_size}, {"--crop", &a.crop}, {"--target-size", &a.target_size}}) {
    if (!value->empty() && !info.size_conditioning) {
      throw Error(std::string(flag) + ": " + a.model + " (" + info.description + ") has no size conditioning (SDXL has)");
    }
  }
  if (info.text && (!a.classes.empty() || !a.class_names.empty() || !a.negative_classes.empty())) {
    throw Error("--class: " + a.model + " (" + info.description + ") is a text-to-image model; give --prompt");
  }

  GenerationRequest request;
  request.negative_prompt = a.negative_prompt;
  request.clip_skip = a.clip_skip;
  request.loras = lora_flags(a.loras);
  for_flag("--lora", [&] { pipeline->check_loras(request.loras); });
  for (const std::string& prompt : a.prompts) for_flag("--prompt", [&] { pipeline->prompt_loras(prompt); });
  if (!a.original_size.empty()) {
    std::tie(request.original_width, request.original_height) =
        for_flag("--original-size", [&] { return number_pair(a.original_size, 'x', "WIDTHxHEIGHT"); });
  }
  if (!a.crop.empty()) {
    std::tie(request.crop_top, request.crop_left) = for_flag("--crop", [&] { return number_pair(a.crop, ',', "TOP,LEFT"); });
  }
  if (!a.target_size.empty()) {
    std::tie(request.target_width, request.target_height) =
        for_flag("--target-size", [&] { return number_pair(a.target_size, 'x', "WIDTHxHEIGHT"); });
  }
  request.strength = a.strength;
  if (!a.init_image.empty()) request.init_image = for_flag("--init-img", [&] { return read_png(a.init_image, 3); });
  // Classes are checked per flag, so that an error names the flag it came from.
  const auto check_classes = [&](const char* flag, const std::vector<std::string>& items) {
    if (!items.empty()) for_flag(flag, [&] { return pipeline->class_ids(items); });
  };
  check_classes("--class", comma_separated(a.classes));
  check_classes("--class-name", a.class_names);
  check_classes("--negative-class", comma_separated(a.negative_classes));
  request.classes = comma_separated(a.classes);
  request.classes.insert(request.classes.end(), a.class_names.begin(), a.class_names.end());
  request.negative_classes = comma_separated(a.negative_classes);
  request.batch = a.batch;
  if (a.steps > 0) request.steps = static_cast<int>(a.steps);
  if (!a.sampler.empty()) request.sampler = for_flag("--sampler", [&] { return parse_sampler(a.sampler); });
  request.scheduler = for_flag("--scheduler", [&] { return parse_scheduler(a.scheduler); });
  if (!std::isnan(a.cfg_scale)) request.cfg_scale = a.cfg_scale;
  request.seed = a.seed >= 0 ? static_cast<uint64_t>(a.seed) : std::random_device{}() & 0xffffffffu;
  request.height = a.height;
  request.width = a.width;
  request.profile = a.profile;
  const auto [height, width] = for_flag("-W/-H", [&] { return pipeline->image_size(request); });
  if (!a.initial_noise.empty()) {
    request.initial_noise = read_tensor(a.initial_noise, "noise");
    const std::vector<int64_t> expected = pipeline->latent_shape(request);
    if (request.initial_noise->shape != expected) {
      throw Error("--initial-noise: " + a.initial_noise + ": 'noise' has shape " + shape_string(request.initial_noise->shape) +
                  ", this generation needs " + shape_string(expected));
    }
  }

  if (a.prompts.size() > 1 && !a.output_latents.empty()) throw Error("--output-latents: takes one prompt, not several");
  if (a.prompts.size() > 1 && a.grid) check_label_font();
  const double load_seconds = seconds_since(start);
  Progress progress("sampling", "it", a.quiet);
  const auto report = [&](int done, int total) { progress.update(static_cast<size_t>(done), static_cast<size_t>(total)); };
  // Several prompts run one after another on the loaded weights, each from the
  // same seed; only the last generation lets each part's weights go once done.
  GenerationResult result;
  const size_t prompt_count = std::max<size_t>(a.prompts.size(), 1);
  for (size_t p = 0; p < prompt_count; ++p) {
    if (!a.prompts.empty()) request.prompt = a.prompts[p];
    GenerationResult one = p + 1 < prompt_count ? pipeline->generate(request, report, &interrupted)
                                                : pipeline->generate_and_release(request, report, &interrupted);
    if (interrupted.load()) break;
    if (p == 0) {
      result = std::move(one);
      continue;
    }
    result.images.insert(result.images.end(), one.images.begin(), one.images.end());
    result.parameters.insert(result.parameters.end(), one.parameters.begin(), one.parameters.end());
    result.batch_parameters += "\n\n" + one.batch_parameters;
    result.sampling_seconds += one.sampling_seconds;
    result.decode_seconds += one.decode_seconds;
  }
  progress.finish();
  if (interrupted.load()) throw Cancelled("interrupted after sampling");

  const int64_t images = static_cast<int64_t>(result.images.size());
  std::vector<std::string> written;
  if (a.grid || images == 1) {
    const int64_t rows = images / a.batch;
    const int64_t columns = rows > 1 ? a.batch : static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(images))));
    // Several prompts: each row is headed by its prompt.
    const std::vector<std::string> row_labels = a.prompts.size() > 1 ? a.prompts : std::vector<std::string>{};
    write_png(a.output, images == 1 ? result.images[0] : image_grid(result.images, columns, row_labels),
              {{"parameters", images == 1 ? result.parameters[0] : result.batch_parameters}});
    written.push_back(a.output);
  } else {
    for (int64_t i = 0; i < images; ++i) {
      written.push_back(numbered(a.output, i, images));
      write_png(written.back(), result.images[static_cast<size_t>(i)], {{"parameters", result.parameters[static_cast<size_t>(i)]}});
    }
  }
  if (!a.output_latents.empty()) {
    write_tensor(a.output_latents, "latents", result.latents);
    written.push_back(a.output_latents);
  }
  if (!a.quiet) {
    for (const std::string& path : written) std::printf("wrote %s\n", path.c_str());
    const int steps = request.steps.value_or(info.default_steps) * static_cast<int>(prompt_count);
    std::printf("%lld image%s of %lld x %lld: load %.2f s, %d steps %.2f s (%.2f it/s)", static_cast<long long>(images),
                images == 1 ? "" : "s", static_cast<long long>(width), static_cast<long long>(height), load_seconds, steps,
                result.sampling_seconds, steps / result.sampling_seconds);
    if (!info.vae.empty()) std::printf(", VAE decode %.2f s", result.decode_seconds);
    std::printf(", total %.2f s\n", seconds_since(start));
  }
  if (a.profile) std::fputs(result.profile.c_str(), stderr);
}

std::string choices(const std::vector<std::string>& names) {
  std::string text;
  for (const std::string& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate images with a diffusion model");
  cmd->add_option("-m,--model", args->model,
                  "Model: a safetensors file or a diffusers folder, float or 8-bit S (default: the bundled Fashion-MNIST text-to-image model)");
  cmd->add_option("--family", args->family, "The model's family (dit) when detection should not decide");
  cmd->add_option("--precision", args->precision, "Model matrices as stored (auto), float, or 8bit-s")->capture_default_str();
  cmd->add_option("--vae", args->vae, "VAE (AutoencoderKL, diffusers or original layout, or a checkpoint holding one) "
                                      "instead of the model's own");
  cmd->add_option("--vae-precision", args->vae_precision, "VAE matrices as stored (auto), float, or 8bit-s")->capture_default_str();
  cmd->add_option("-p,--prompt", args->prompts,
                  "Text-to-image models: the prompt, in A1111's syntax: (words), (words:1.3), [words], BREAK; "
                  "repeat it for several prompts (a row each with --grid)");
  cmd->add_option("-n,--negative-prompt", args->negative_prompt, "What to steer away from (the same syntax)");
  cmd->add_option("-i,--init-img", args->init_image, "img2img: start from this PNG, resized to the output size (Lanczos)");
  cmd->add_option("--strength", args->strength,
                  "img2img: how much of the schedule runs on the image: 0 keeps it, 1 ignores it")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--clip-skip", args->clip_skip,
                  "Use the text encoder's N-th layer from the end (default: the model's, 1 for SD 1.x, 2 for SD 2.x and SDXL)")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--lora", args->loras,
                  "A LoRA file (kohya-ss / A1111, diffusers / PEFT, LyCORIS LoHa) to run beside the model's layers, as FILE[:TE[:UNET]]: "
                  "at a strength on the text encoders (default 1) and on the UNet (default: the same); repeatable");
  cmd->add_option("--lora-dir", args->lora_dir,
                  "Where the prompt's <lora:NAME:TE:UNET> tags find their adapters: a folder searched, with its "
                  "subfolders, for NAME.safetensors or a file whose ss_output_name is NAME");
  cmd->add_option("--original-size", args->original_size,
                  "SDXL: the size the model is told the picture had before cropping, WIDTHxHEIGHT (default: the output's)");
  cmd->add_option("--crop", args->crop, "SDXL: the crop's top-left corner the model is told of, TOP,LEFT (default 0,0)");
  cmd->add_option("--target-size", args->target_size, "SDXL: the size the model is told to make, WIDTHxHEIGHT (default: the output's)");
  cmd->add_option("--tokenizer", args->tokenizer,
                  "CLIP vocabulary (bpe_simple_vocab_16e6.txt.gz, vocab.json + merges.txt, or their folder) when the model "
                  "carries none (default: $TILEDRAW_TOKENIZER, files beside the model, the Hugging Face cache)");
  cmd->add_option("--prediction", args->prediction,
                  "What the model predicts, when neither its config nor its file says: eps or v (SD 2.x 768-v models)")
      ->check(CLI::IsMember({"eps", "v"}));
  cmd->add_option("--class", args->classes, "Class ids or names, comma-separated, or 'all' (default 0)");
  cmd->add_option("--class-name", args->class_names, "Class by name (from the model's class names or --labels)");
  cmd->add_option("--negative-class", args->negative_classes,
                  "Classes to steer away from, one or one per class (default: the model's unconditional class)");
  cmd->add_option("--labels", args->labels, "Text file of class names, one per line, in id order");
  cmd->add_option("--steps", args->steps, "Sampling steps (default: the model's, 50 for DiT)")->check(CLI::Range(1, 10000));
  cmd->add_option("--sampler", args->sampler, "Sampler: " + choices(sampler_names()) + " (default: the model's, ddim for DiT)");
  cmd->add_option("--scheduler", args->scheduler,
                  "Noise schedule: " + choices(scheduler_names()) +
                      " (default: ddim and ddpm on the model's own timesteps, the others normal)")
      ->capture_default_str();
  cmd->add_option("--cfg-scale", args->cfg_scale, "Classifier-free guidance scale; 1 turns it off (default: the model's, 4 for DiT)");
  cmd->add_option("--seed", args->seed, "Seed: image i of a batch uses seed + i; -1 picks one at random")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{-1}, int64_t{1} << 62));
  cmd->add_option("-W,--width", args->width, "Width in pixels (default: the model's trained size)")->check(CLI::Range(1, 1 << 14));
  cmd->add_option("-H,--height", args->height, "Height in pixels (default: the model's trained size)")->check(CLI::Range(1, 1 << 14));
  cmd->add_option("-b,--batch", args->batch, "Images per class or per prompt")->capture_default_str()->check(CLI::Range(1, 256));
  cmd->add_option("-o,--output", args->output, "Output PNG (numbered when there are several, unless --grid)")->capture_default_str();
  cmd->add_option("--initial-noise", args->initial_noise,
                  "Safetensors file whose tensor 'noise' [images, channels, h, w] replaces the seeded initial noise");
  cmd->add_option("--output-latents", args->output_latents, "Also write the sampled latents (tensor 'latents') here");
  cmd->add_flag("--grid", args->grid, "Write all images as one grid (a row per class or prompt when there are several)");
  cmd->add_flag("-q,--quiet", args->quiet, "No progress and no summary");
  cmd->add_flag("--profile", args->profile, "Print time by op, the program cache and the arena (stderr)");
  cmd->callback([args] { run_generate(*args); });
}

}  // namespace tiledraw::cli
