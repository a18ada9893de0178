#include "models/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <functional>

#include "models/dit.h"
#include "models/vae.h"
#include "text/tokenizer_source.h"
#include "tiledraw/error.h"

namespace tiledraw::models {
namespace {

namespace fs = std::filesystem;

// A component folder's weights, in the names diffusers saves them under.
constexpr const char* kWeightFiles[] = {"diffusion_pytorch_model.safetensors", "model.safetensors",
                                        "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors"};
constexpr const char* kComponents[] = {"transformer", "unet", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"};

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw Error(path.string() + ": cannot read");
  nlohmann::json json = nlohmann::json::parse(in, nullptr, false);
  if (!json.is_object()) throw Error(path.string() + ": not a JSON object");
  return json;
}

std::optional<fs::path> weights_in(const fs::path& folder) {
  for (const char* name : kWeightFiles) {
    if (fs::is_regular_file(folder / name)) return folder / name;
  }
  return std::nullopt;
}

std::string file_name(const std::string& path) { return fs::path(path).filename().string(); }

}  // namespace

Checkpoint Checkpoint::open(const std::string& path) {
  Checkpoint c;
  c.path_ = path;
  std::error_code error;
  if (!fs::is_directory(path, error)) {
    c.files_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(path)));
    return c;
  }
  const fs::path folder(path);
  if (!fs::is_regular_file(folder / "model_index.json")) {
    // One component's folder (config.json beside its weights) reads as that file.
    const std::optional<fs::path> weights = weights_in(folder);
    if (!weights) {
      throw Error(path + ": a folder without model_index.json or " + kWeightFiles[0] +
                  "; give a .safetensors file or a diffusers model folder");
    }
    c.files_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(weights->string())));
    return c;
  }
  c.model_index_ = read_json(folder / "model_index.json");
  for (const char* name : kComponents) {
    if (const std::optional<fs::path> weights = weights_in(folder / name)) {
      c.files_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(weights->string())));
      c.components_[name] = c.files_.back().get();
    }
  }
  if (fs::is_regular_file(folder / "scheduler" / "scheduler_config.json")) {
    c.scheduler_config_ = read_json(folder / "scheduler" / "scheduler_config.json");
  }
  return c;
}

std::optional<WeightView> Checkpoint::component(const std::string& name) const {
  const auto it = components_.find(name);
  if (it == components_.end()) return std::nullopt;
  return WeightView(*it->second);
}

namespace {

using Components = std::map<std::string, WeightView>;

std::string count_of(size_t n, const char* what) { return std::to_string(n) + " " + what + (n == 1 ? "" : "s"); }

// A DiT, and a VAE beside it when the same file or folder holds one.
std::optional<DetectedFamily> detect_dit(const Checkpoint& c) {
  std::optional<WeightView> model = c.folder() ? c.component("transformer") : std::optional<WeightView>(*c.file());
  if (!model || !holds_dit(*model)) return std::nullopt;
  DetectedFamily found;
  found.info.family = "dit";
  found.info.supported = true;
  const bool original = dit_layout(*model) == DitLayout::Original;
  const int64_t depth = dit_depth(*model);
  found.info.description = std::string("DiT, class-conditional (") + (original ? "original" : "diffusers") + " layout)";
  const std::string where = c.folder() ? "transformer/ in " + c.path() : file_name(c.path());
  found.info.components.push_back({"diffusion_model", where, count_of(static_cast<size_t>(depth), "block")});
  found.components.emplace("diffusion_model", *model);
  if (const std::optional<WeightView> vae = find_vae(c)) {
    found.info.components.push_back({"vae", c.folder() ? "vae/ in " + c.path() : vae->where(), "AutoencoderKL decoder"});
    found.components.emplace("vae", *vae);
  }
  return found;
}

std::optional<DetectedFamily> detect_vae(const Checkpoint& c) {
  const std::optional<WeightView> view = c.folder() ? std::nullopt : find_vae(c);
  if (!view) return std::nullopt;
  DetectedFamily found;
  found.info = {"vae", "AutoencoderKL (a VAE alone)", true, {}};
  found.info.components.push_back({"vae", view->where(), vae_in_original_layout(*view) ? "decoder, original (LDM) layout" : "decoder, diffusers layout"});
  found.components.emplace("vae", *view);
  return found;
}

std::optional<DetectedFamily> detect_classifier(const Checkpoint& c) {
  if (c.folder() || !c.file()->find("fc1.weight") || !c.file()->metadata().count("input_shape")) return std::nullopt;
  DetectedFamily found;
  found.info = {"classifier", "MLP image classifier (fc1..fcN)", true, {}};
  found.info.components.push_back({"classifier", file_name(c.path()), ""});
  found.components.emplace("classifier", WeightView(*c.file()));
  return found;
}

// Families recognised by their names but not run yet: a user who points
// tiledraw at one is told what it is, not that it is nothing.
struct KnownFamily {
  const char* family;
  const char* description;
  const char* pipeline_class;                            // model_index.json's _class_name
  std::vector<std::vector<const char*>> single_file;     // any one set of tensors, all present
  std::vector<std::pair<const char*, const char*>> parts;  // (component, prefix) in a single file
};

const std::vector<KnownFamily>& known_families() {
  static const std::vector<KnownFamily> families = {
      {"sdxl-refiner", "the Stable Diffusion XL refiner (one OpenCLIP text encoder, aesthetic-score conditioning)",
       "StableDiffusionXLImg2ImgPipeline",
       {{"model.diffusion_model.label_emb.0.0.weight", "conditioner.embedders.0.model.token_embedding.weight"}},
       {{"diffusion_model", "model.diffusion_model."}, {"text_encoder_2", "conditioner.embedders.0."}, {"vae", "first_stage_model."}}},
      {"sd3", "Stable Diffusion 3 (MMDiT, flow matching)", "StableDiffusion3Pipeline",
       {{"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"}},
       {{"diffusion_model", "model.diffusion_model."}, {"text_encoders", "text_encoders."}, {"vae", "first_stage_model."}}},
      {"flux", "FLUX (flow-matching transformer)", "FluxPipeline",
       {{"double_blocks.0.img_attn.qkv.weight"}, {"model.diffusion_model.double_blocks.0.img_attn.qkv.weight"}},
       {{"diffusion_model", ""}}},
      {"sd-unet", "a Stable Diffusion UNet alone (diffusers UNet2DConditionModel)", "",
       {{"conv_in.weight", "time_embedding.linear_1.weight", "down_blocks.0.resnets.0.conv1.weight"}},
       {{"diffusion_model", ""}}},
  };
  return families;
}

std::optional<DetectedFamily> detect_known(const Checkpoint& c, const KnownFamily& k) {
  DetectedFamily found;
  found.info = {k.family, k.description, false, {}};
  if (c.folder()) {
    const nlohmann::json& index = c.model_index();
    if (!*k.pipeline_class || !index.contains("_class_name") || index["_class_name"] != k.pipeline_class) return std::nullopt;
    for (const auto& [name, value] : index.items()) {
      if (value.is_array()) found.info.components.push_back({name, name + "/ in " + c.path(), value.dump()});
    }
    return found;
  }
  const auto all_present = [&](const std::vector<const char*>& names) {
    return std::all_of(names.begin(), names.end(), [&](const char* n) { return c.file()->find(n) != nullptr; });
  };
  if (std::none_of(k.single_file.begin(), k.single_file.end(), all_present)) return std::nullopt;
  for (const auto& [component, prefix] : k.parts) {
    size_t tensors = 0;
    for (const TensorInfo& t : c.file()->tensors()) tensors += t.name.rfind(prefix, 0) == 0;
    if (tensors) found.info.components.push_back({component, std::string(prefix) + "* in " + file_name(c.path()), count_of(tensors, "tensor")});
  }
  return found;
}

// A single-file checkpoint holds several models, so its "config" metadata,
// when it has one, holds each one's diffusers config under its component's
// name ({"unet": {...}, "text_encoder": {...}, "vae": {...}}).
nlohmann::json component_config(const SafetensorsFile& file, const std::string& component) {
  const nlohmann::json config = model_config_json(file);
  if (config.contains(component) && config[component].is_object()) return config[component];
  return nlohmann::json::object();
}

// A Stable Diffusion checkpoint's VAE and where its CLIP vocabulary is.
void add_vae_and_tokenizer(DetectedFamily& found, const Checkpoint& c, text::ClipKind kind) {
  if (std::optional<WeightView> vae = find_vae(c)) {
    if (!c.folder()) vae = WeightView(vae->file(), vae->prefix(), {}, component_config(*c.file(), "vae"));
    found.info.components.push_back({"vae", c.folder() ? "vae/ in " + c.path() : vae->where(), "AutoencoderKL"});
    found.components.emplace("vae", *vae);
  }
  try {
    const text::FoundTokenizer tokenizer = text::find_clip_tokenizer({c.path(), "", kind});
    found.info.components.push_back({"tokenizer", tokenizer.source, "CLIP BPE"});
  } catch (const text::TokenizerNotFound&) {
    found.info.components.push_back({"tokenizer", "not found", "prompts need a CLIP vocabulary (README: the CLIP vocabulary)"});
  }
}

// Stable Diffusion 1.x or 2.x (`version`): a UNet, a CLIP text encoder and a
// VAE, in one file under the original prefixes or in a diffusers folder. The
// two are told apart by their text encoders: OpenAI's CLIP ViT-L (width 768)
// in 1.x, OpenCLIP ViT-H (1024) in 2.x.
std::optional<DetectedFamily> detect_stable_diffusion(const Checkpoint& c, int version) {
  std::optional<WeightView> unet, text_encoder;
  std::string where_unet, where_text;
  if (c.folder()) {
    unet = c.component("unet");
    text_encoder = c.component("text_encoder");
    if (!unet || !text_encoder || !unet->find("conv_in.weight") || c.component("text_encoder_2")) return std::nullopt;
    const TensorInfo* tokens = text_encoder->find("text_model.embeddings.token_embedding.weight");
    if (!tokens || tokens->shape.size() != 2 || (tokens->shape[1] == 1024) != (version == 2)) return std::nullopt;
    where_unet = "unet/ in " + c.path();
    where_text = "text_encoder/ in " + c.path();
  } else {
    const SafetensorsFile& file = *c.file();
    if (!file.find("model.diffusion_model.input_blocks.0.0.weight")) return std::nullopt;
    const char* const prefix = version == 1 ? "cond_stage_model.transformer." : "cond_stage_model.model.";
    const char* const probe = version == 1 ? "text_model.embeddings.token_embedding.weight" : "token_embedding.weight";
    if (!file.find(std::string(prefix) + probe)) return std::nullopt;
    unet = WeightView(file, "model.diffusion_model.", {}, component_config(file, "unet"));
    text_encoder = WeightView(file, prefix, {}, component_config(file, "text_encoder"));
    where_unet = unet->where();
    where_text = text_encoder->where();
  }
  DetectedFamily found;
  found.info.family = version == 1 ? "sd1" : "sd2";
  found.info.description = version == 1 ? "Stable Diffusion 1.x (UNet, CLIP ViT-L text encoder, VAE)"
                                        : "Stable Diffusion 2.x (UNet, OpenCLIP ViT-H text encoder, VAE)";
  found.info.supported = true;
  found.info.components.push_back({"diffusion_model", where_unet, "UNet"});
  found.info.components.push_back({"text_encoder", where_text, version == 1 ? "CLIP ViT-L/14" : "OpenCLIP ViT-H/14"});
  found.components.emplace("diffusion_model", *unet);
  found.components.emplace("text_encoder", *text_encoder);
  add_vae_and_tokenizer(found, c, version == 1 ? text::ClipKind::OpenAiVitL14 : text::ClipKind::OpenClipVitH14);
  return found;
}

// Stable Diffusion XL: a UNet with an added embedding of the pooled text and
// the image sizes, OpenAI's CLIP ViT-L and OpenCLIP's ViT-bigG text
// encoders, a VAE; one file under sgm's prefixes or a diffusers folder.
std::optional<DetectedFamily> detect_sdxl(const Checkpoint& c) {
  std::optional<WeightView> unet, text_encoder, text_encoder_2;
  if (c.folder()) {
    const nlohmann::json& index = c.model_index();
    if (!index.contains("_class_name") || index["_class_name"] != "StableDiffusionXLPipeline") return std::nullopt;
    unet = c.component("unet");
    text_encoder = c.component("text_encoder");
    text_encoder_2 = c.component("text_encoder_2");
    if (!unet || !text_encoder || !text_encoder_2) {
      throw Error(c.path() + ": a StableDiffusionXLPipeline folder needs unet/, text_encoder/ and text_encoder_2/ weights");
    }
  } else {
    const SafetensorsFile& file = *c.file();
    const char* const first = "conditioner.embedders.0.transformer.";
    const char* const second = "conditioner.embedders.1.model.";
    if (!file.find("model.diffusion_model.label_emb.0.0.weight") ||
        !file.find(std::string(first) + "text_model.embeddings.token_embedding.weight") ||
        !file.find(std::string(second) + "token_embedding.weight")) {
      return std::nullopt;
    }
    unet = WeightView(file, "model.diffusion_model.", {}, component_config(file, "unet"));
    text_encoder = WeightView(file, first, {}, component_config(file, "text_encoder"));
    text_encoder_2 = WeightView(file, second, {}, component_config(file, "text_encoder_2"));
  }
  const auto where = [&](const WeightView& view, const char* folder) {
    return c.folder() ? std::string(folder) + "/ in " + c.path() : view.where();
  };
  DetectedFamily found;
  found.info = {"sdxl", "Stable Diffusion XL (UNet, CLIP ViT-L and OpenCLIP ViT-bigG text encoders, VAE)", true, {}};
  found.info.components.push_back({"diffusion_model", where(*unet, "unet"), "UNet with added size conditioning"});
  found.info.components.push_back({"text_encoder", where(*text_encoder, "text_encoder"), "CLIP ViT-L/14"});
  found.info.components.push_back({"text_encoder_2", where(*text_encoder_2, "text_encoder_2"), "OpenCLIP ViT-bigG/14"});
  found.components.emplace("diffusion_model", *unet);
  found.components.emplace("text_encoder", *text_encoder);
  found.components.emplace("text_encoder_2", *text_encoder_2);
  add_vae_and_tokenizer(found, c, text::ClipKind::OpenAiVitL14);
  return found;
}

using Probe = std::function<std::optional<DetectedFamily>(const Checkpoint&)>;

// In the order they are tried: the known full checkpoints first, since they
// hold a VAE under a prefix too.
std::vector<std::pair<std::string, Probe>> probes() {
  std::vector<std::pair<std::string, Probe>> out;
  out.emplace_back("sd1", [](const Checkpoint& c) { return detect_stable_diffusion(c, 1); });
  out.emplace_back("sd2", [](const Checkpoint& c) { return detect_stable_diffusion(c, 2); });
  out.emplace_back("sdxl", detect_sdxl);
  for (const KnownFamily& k : known_families()) {
    out.emplace_back(k.family, [&k](const Checkpoint& c) { return detect_known(c, k); });
  }
  out.emplace_back("dit", detect_dit);
  out.emplace_back("vae", detect_vae);
  out.emplace_back("classifier", detect_classifier);
  return out;
}

// "model.diffusion_model (686), first_stage_model (248), ..." for an error.
std::string what_was_found(const Checkpoint& c) {
  if (c.folder()) {
    std::string found;
    for (const auto& [name, value] : c.model_index().items()) {
      if (value.is_array()) found += (found.empty() ? "" : ", ") + name;
    }
    const std::string class_name = c.model_index().value("_class_name", std::string("no _class_name"));
    return "model_index.json names " + class_name + " with " + (found.empty() ? "no components" : found);
  }
  std::map<std::string, size_t> groups;
  for (const TensorInfo& t : c.file()->tensors()) {
    const size_t first = t.name.find('.');
    const size_t second = first == std::string::npos ? first : t.name.find('.', first + 1);
    const bool nested = t.name.rfind("model.", 0) == 0 || t.name.rfind("conditioner.", 0) == 0;
    ++groups[t.name.substr(0, nested ? second : first)];
  }
  std::string found;
  size_t shown = 0;
  for (const auto& [group, count] : groups) {
    if (shown++ == 8) {
      found += ", ...";
      break;
    }
    found += (found.empty() ? "" : ", ") + group + " (" + std::to_string(count) + ")";
  }
  return count_of(c.file()->tensors().size(), "tensor") + (found.empty() ? "" : ": " + found);
}

}  // namespace

std::optional<WeightView> find_vae(const Checkpoint& c) {
  if (c.folder()) {
    std::optional<WeightView> vae = c.component("vae");
    return vae && holds_vae_decoder(*vae) ? vae : std::nullopt;
  }
  for (const char* prefix : {"", "first_stage_model.", "vae."}) {
    // A prefixed VAE shares its file with other models: the file's config is not its own.
    WeightView view(*c.file(), prefix, {}, *prefix ? nlohmann::json::object() : model_config_json(*c.file()));
    if (holds_vae_decoder(view)) return view;
  }
  return std::nullopt;
}

std::vector<std::string> family_names() {
  std::vector<std::string> names;
  for (const auto& [name, probe] : probes()) names.push_back(name);
  return names;
}

DetectedFamily detect_family(const Checkpoint& c, const std::string& stated) {
  for (const auto& [name, probe] : probes()) {
    if (!stated.empty() && stated != name) continue;
    if (std::optional<DetectedFamily> found = probe(c)) return *found;
  }
  if (stated == "dit" && !c.folder()) {
    // Stated but not recognised: the model's own loader names what is missing.
    DetectedFamily found;
    found.info = {"dit", "DiT (as stated)", true, {{"diffusion_model", file_name(c.path()), ""}}};
    found.components.emplace("diffusion_model", WeightView(*c.file()));
    return found;
  }
  std::string names;
  for (const std::string& name : family_names()) names += (names.empty() ? "" : ", ") + name;
  if (!stated.empty()) {
    bool known = false;
    for (const std::string& name : family_names()) known |= name == stated;
    if (!known) throw Error("unknown model family '" + stated + "' (one of " + names + ")");
    throw Error(c.path() + ": not a " + stated + " checkpoint (" + what_was_found(c) + ")");
  }
  throw Error(c.path() + ": no model family matches (" + what_was_found(c) + "); tiledraw knows " + names);
}

}  // namespace tiledraw::models

namespace tiledraw {

CheckpointInfo inspect_checkpoint(const std::string& path) {
  return models::detect_family(models::Checkpoint::open(path)).info;
}

}  // namespace tiledraw
