#include "pipeline/loading.h"

#include <functional>
#include <map>

#include "models/dit.h"
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

using FamilyLoader = std::function<void(LoadedModel&, const models::DetectedFamily&, const LoadOptions&, const Accelerator&)>;

// Every family tiledraw runs, by the name detection gives it. A VAE alone
// loads no diffusion model (forward can still run its decoder).
const std::map<std::string, FamilyLoader>& loaders() {
  static const std::map<std::string, FamilyLoader> table = {
      {"dit", load_dit},
      {"vae", [](LoadedModel&, const models::DetectedFamily&, const LoadOptions&, const Accelerator&) {}},
  };
  return table;
}

}  // namespace

std::unique_ptr<LoadedModel> load_model(const std::string& path, const LoadOptions& o, const Accelerator& accel) {
  auto m = std::make_unique<LoadedModel>(LoadedModel{models::Checkpoint::open(path), {}, {}, {}, {}, {}, {}, {}});
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
  if (vae) m->vae = std::make_unique<models::VaeDecoder>(*vae, accel, o.vae_precision);

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
