#include "pipeline/loading.h"

#include <functional>
#include <map>

#include "models/dit.h"
#include "models/unet.h"
#include "pipeline/text_conditioning.h"
#include "text/tokenizer_source.h"
#include "tiledraw/error.h"

namespace tiledraw::pipeline {
namespace {

// Class names: the caller's, else the file's metadata, else a diffusers
// folder's id2label.
std::vector<std::string> class_names_of(const models::Checkpoint& c, const models::DitModel& dit, const LoadOptions& o) {
  if (!o.class_names.empty()) return o.class_names;
  if (!dit.class_names().empty()) return dit.class_names();
  std::vector<std::string> names;
  const nlohmann::json& index = c.model_index();
  if (index.is_object() && index.contains("id2label") && index["id2label"].is_object()) {
    for (const auto& [id, label] : index["id2label"].items()) {
      const size_t i = id.find_first_not_of("0123456789") == std::string::npos && id.size() < 7 ? std::stoul(id) : SIZE_MAX;
      if (i >= static_cast<size_t>(dit.config().num_classes) || !label.is_string()) continue;
      if (names.size() <= i) names.resize(i + 1);
      names[i] = label.get<std::string>();
    }
  }
  return names;
}

void load_dit(LoadedModel& m, const models::DetectedFamily& found, const LoadOptions& o, const Accelerator& accel) {
  sampling::NoiseSchedule schedule = sampling::NoiseSchedule::dit();
  if (!m.checkpoint.scheduler_config().is_null()) {
    schedule = sampling::NoiseSchedule::from_diffusers(m.checkpoint.scheduler_config(), schedule,
                                                       m.checkpoint.path() + "/scheduler/scheduler_config.json");
  }
  auto dit = std::make_unique<models::DitModel>(found.components.at("diffusion_model"), accel, o.precision, schedule);
  m.model_info.classes = dit->config().num_classes;
  m.model_info.class_names = class_names_of(m.checkpoint, *dit, o);
  m.conditioner = std::make_unique<ClassConditioner>(dit->config().num_classes, dit->null_class(), m.model_info.class_names);
  m.model = std::move(dit);
}

// What a Stable Diffusion UNet predicts: the caller's word, else a diffusers
// scheduler config's prediction_type, else the file's (a "v_pred" tensor, as
// some trainers mark v models, or "prediction_type" in its config), else noise.
// A single-file SD 2.x 768-v model cannot be told from its tensors.
models::Prediction sd_prediction(const models::Checkpoint& c, const models::WeightView& unet, const LoadOptions& o) {
  const auto parse = [](const std::string& name, const std::string& where) {
    if (name == "eps" || name == "epsilon") return models::Prediction::Epsilon;
    if (name == "v" || name == "v_prediction") return models::Prediction::V;
    throw Error(where + ": prediction '" + name + "' is not eps or v");
  };
  if (!o.prediction.empty()) return parse(o.prediction, "the load options");
  const nlohmann::json& scheduler = c.scheduler_config();
  if (scheduler.is_object() && scheduler.contains("prediction_type") && scheduler["prediction_type"].is_string()) {
    return parse(scheduler["prediction_type"].get<std::string>(), c.path() + "/scheduler/scheduler_config.json");
  }
  if (!c.folder() && c.file()->find("v_pred")) return models::Prediction::V;
  const nlohmann::json& config = unet.config();
  if (config.contains("prediction_type") && config["prediction_type"].is_string()) {
    return parse(config["prediction_type"].get<std::string>(), unet.where());
  }
  return models::Prediction::Epsilon;
}

// The UNet of a Stable Diffusion family, with the options its loader decides.
std::unique_ptr<models::UNetModel> load_unet(const LoadedModel& m, const models::DetectedFamily& found, const LoadOptions& o,
                                             const Accelerator& accel, models::UNetOptions unet) {
  const models::WeightView& unet_view = found.components.at("diffusion_model");
  if (!m.checkpoint.scheduler_config().is_null()) {
    unet.schedule = sampling::NoiseSchedule::from_diffusers(m.checkpoint.scheduler_config(), unet.schedule,
                                                            m.checkpoint.path() + "/scheduler/scheduler_config.json");
  }
  unet.prediction = sd_prediction(m.checkpoint, unet_view, o);
  // The config's sample_size where it gives one (a model trained at another
  // size than the family's), else the family's.
  const nlohmann::json& unet_config = unet_view.config();
  if (unet_config.contains("sample_size") && unet_config["sample_size"].is_number_integer() &&
      unet_config["sample_size"].get<int64_t>() > 0) {
    unet.trained_latent_size = unet_config["sample_size"].get<int64_t>();
  }
  unet.description = found.info.description;
  auto model = std::make_unique<models::UNetModel>(unet_view, accel, o.precision, unet);
  if (model->config().in_channels != unet.latent.channels) {
    throw Error(unet_view.where() + ": a UNet of " + std::to_string(model->config().in_channels) +
                " input channels (" + (model->config().in_channels == 9 ? "inpainting" : "not text-to-image") +
                "); tiledraw runs the 4-channel text-to-image UNet only");
  }
  return model;
}

// The CLIP vocabulary a text-to-image model's prompts need. Without one the
// model still loads (for forward and inspect); `missing` says where to get one.
struct TokenizerOrWhy {
  std::optional<text::ClipTokenizer> tokenizer;
  std::string missing;
};

TokenizerOrWhy find_tokenizer(LoadedModel& m, const LoadOptions& o, text::ClipKind kind) {
  TokenizerOrWhy out;
  try {
    text::FoundTokenizer found = text::find_clip_tokenizer({m.checkpoint.path(), o.tokenizer, kind});
    out.tokenizer = std::move(found.tokenizer);
    m.model_info.tokenizer = found.source;
  } catch (const text::TokenizerNotFound& e) {
    out.missing = e.what();
    m.model_info.tokenizer = "not found";
  }
  m.model_info.text = true;
  return out;
}

const models::ClipTextEncoder& load_text_encoder(LoadedModel& m, const models::DetectedFamily& found, const char* component,
                                                 const LoadOptions& o, const Accelerator& accel) {
  return *m.text_encoders.emplace_back(std::make_unique<models::ClipTextEncoder>(found.components.at(component), accel, o.precision));
}

void load_stable_diffusion(LoadedModel& m, const models::DetectedFamily& found, const LoadOptions& o,
                           const Accelerator& accel) {
  const bool sd2 = found.info.family == "sd2";
  models::UNetOptions unet;
  unet.latent = {4, 8, 0.18215, 0.0};
  // SD 2.x's v models were trained at 768 pixels, the others at 512.
  const bool v = sd_prediction(m.checkpoint, found.components.at("diffusion_model"), o) == models::Prediction::V;
  unet.trained_latent_size = sd2 && v ? 96 : 64;
  auto model = load_unet(m, found, o, accel, unet);
  const models::ClipTextEncoder& encoder = load_text_encoder(m, found, "text_encoder", o, accel);
  const text::ClipKind clip = sd2 ? text::ClipKind::OpenClipVitH14 : text::ClipKind::OpenAiVitL14;
  TokenizerOrWhy tokenizer = find_tokenizer(m, o, clip);
  const int64_t stored = encoder.config().layers;
  const TextTower tower{.encoder = &encoder,
                        .pad_id = tokenizer.tokenizer ? text::padding_id(clip, *tokenizer.tokenizer) : 0,
                        .counted_layers = sd2 && stored == 23 ? 24 : stored,
                        .default_clip_skip = sd2 ? 2 : 1};
  m.conditioner = std::make_unique<TextConditioner>(std::move(tokenizer.tokenizer), std::move(tokenizer.missing),
                                                    TextEncoding{.towers = {tower}});
  m.model = std::move(model);
}

// SDXL: the UNet reads both encoders' penultimate layers side by side (no
// final norm), the second's pooled vector and the image sizes.
void load_sdxl(LoadedModel& m, const models::DetectedFamily& found, const LoadOptions& o, const Accelerator& accel) {
  models::UNetOptions unet;
  unet.latent = {4, 8, 0.13025, 0.0};
  unet.trained_latent_size = 128;
  unet.default_cfg_scale = 5.0;  // diffusers' SDXL pipeline
  auto model = load_unet(m, found, o, accel, unet);
  const models::UNetConfig& c = model->config();
  // Both read at the penultimate layer as it is; the second also pools.
  const auto tower = [&](const char* component, bool pooled) {
    const models::ClipTextEncoder& encoder = load_text_encoder(m, found, component, o, accel);
    return TextTower{.encoder = &encoder, .counted_layers = encoder.config().layers, .default_clip_skip = 2,
                     .final_norm = false, .pooled = pooled};
  };
  TextTower first = tower("text_encoder", false), second = tower("text_encoder_2", true);
  const std::string where = found.components.at("diffusion_model").where();
  if (first.encoder->config().width + second.encoder->config().width != c.cross_attention_dim) {
    throw Error(where + ": the UNet reads a context " + std::to_string(c.cross_attention_dim) + " wide, the text encoders give " +
                std::to_string(first.encoder->config().width) + " + " + std::to_string(second.encoder->config().width));
  }
  if (!c.addition_input_dim || second.encoder->pooled_width() != c.pooled_text_dim()) {
    throw Error(where + ": the UNet's added embedding reads a pooled text vector " + std::to_string(c.pooled_text_dim()) +
                " wide, the second text encoder gives " + std::to_string(second.encoder->pooled_width()));
  }
  TokenizerOrWhy tokenizer = find_tokenizer(m, o, text::ClipKind::OpenAiVitL14);
  if (tokenizer.tokenizer) {
    first.pad_id = text::padding_id(text::ClipKind::OpenAiVitL14, *tokenizer.tokenizer);
    second.pad_id = text::padding_id(text::ClipKind::OpenClipVitH14, *tokenizer.tokenizer);
  }
  // diffusers' force_zeros_for_empty_prompt, true unless a folder's model_index.json says otherwise.
  const nlohmann::json& index = m.checkpoint.model_index();
  const bool zeros = !(index.is_object() && index.contains("force_zeros_for_empty_prompt") &&
                       index["force_zeros_for_empty_prompt"] == false);
  m.conditioner = std::make_unique<TextConditioner>(std::move(tokenizer.tokenizer), std::move(tokenizer.missing),
                                                    TextEncoding{.towers = {first, second},
                                                                 .zeros_for_empty_negative = zeros,
                                                                 .size_conditioning = true});
  m.model_info.size_conditioning = true;
  m.model = std::move(model);
}

using FamilyLoader = std::function<void(LoadedModel&, const models::DetectedFamily&, const LoadOptions&, const Accelerator&)>;

// Every family tiledraw runs, by the name detection gives it. A VAE alone
// loads no diffusion model (forward can still run its decoder).
const std::map<std::string, FamilyLoader>& loaders() {
  static const std::map<std::string, FamilyLoader> table = {
      {"dit", load_dit},
      {"sd1", load_stable_diffusion},
      {"sd2", load_stable_diffusion},
      {"sdxl", load_sdxl},
      {"vae", [](LoadedModel&, const models::DetectedFamily&, const LoadOptions&, const Accelerator&) {}},
  };
  return table;
}

}  // namespace

const models::VaeEncoder& LoadedModel::vae_encoder(const Accelerator& accel) const {
  std::call_once(vae_encoder_loaded_, [&] {
    if (!vae_view) throw Error(model_info.path + ": no VAE to encode an image with");
    if (!models::holds_vae_encoder(*vae_view)) {
      throw Error(vae_path + ": the VAE has a decoder only; starting from an image needs its encoder");
    }
    vae_encoder_ = std::make_unique<models::VaeEncoder>(*vae_view, accel, vae_precision);
  });
  return *vae_encoder_;
}

std::unique_ptr<LoadedModel> load_model(const std::string& path, const LoadOptions& o, const Accelerator& accel) {
  auto m = std::make_unique<LoadedModel>(models::Checkpoint::open(path));
  if (!o.lora_dir.empty()) m->lora_folder = std::make_unique<LoraFolder>(o.lora_dir);
  const models::DetectedFamily found = models::detect_family(m->checkpoint, o.family);
  m->info = found.info;
  const auto loader = loaders().find(found.info.family);
  if (!found.info.supported || loader == loaders().end()) {
    throw Error(path + ": " + found.info.description + "; tiledraw does not run this family yet");
  }
  loader->second(*m, found, o, accel);

  std::optional<models::WeightView> vae;
  if (!o.vae.empty()) {
    m->vae_checkpoint = models::Checkpoint::open(o.vae);
    vae = models::find_vae(*m->vae_checkpoint);
    if (!vae) throw Error(o.vae + ": holds no AutoencoderKL decoder (diffusers or original layout)");
    m->vae_path = o.vae;
  } else if (const auto it = found.components.find("vae"); it != found.components.end()) {
    vae = it->second;
    m->vae_path = path;
  }
  if (vae) {
    m->vae = std::make_unique<models::VaeDecoder>(*vae, accel, o.vae_precision);
    m->vae_view = vae;
    m->vae_precision = o.vae_precision;
  }

  ModelInfo& info = m->model_info;
  info.path = path;
  info.family = found.info.family;
  info.description = m->model ? m->model->description() : found.info.description;
  info.vae = m->vae_path;
  if (const models::DiffusionModel* model = m->model.get()) {
    const models::LatentFormat format = model->latent_format();
    if (m->vae && m->vae->config().latent_channels != format.channels) {
      throw Error(m->vae_path + ": the VAE decodes " + std::to_string(m->vae->config().latent_channels) +
                  "-channel latents, the model makes " + std::to_string(format.channels));
    }
    const int64_t factor = m->vae_factor();
    info.latent_channels = format.channels;
    info.latent = !format.pixels();
    info.size_multiple = model->latent_multiple() * factor;
    info.default_width = info.default_height = model->trained_latent_size() * factor;
    info.prediction = models::prediction_name(model->prediction());
    info.default_steps = model->default_steps();
    info.default_sampler = model->default_sampler();
    info.default_cfg_scale = model->default_cfg_scale();
  }
  return m;
}

}  // namespace tiledraw::pipeline
