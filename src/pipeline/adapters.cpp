#include "pipeline/adapters.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "pipeline/loading.h"
#include "pipeline/lora_prompt.h"
#include "tiledraw/error.h"

namespace tiledraw {
namespace pipeline {

std::shared_ptr<const models::LoraFile> LoraCache::file(const std::string& path) {
  {
    std::lock_guard lock(mutex_);
    if (const auto it = files_.find(path); it != files_.end()) return it->second;
  }
  auto file = std::make_shared<const models::LoraFile>(models::read_lora(path));
  std::lock_guard lock(mutex_);
  return files_.emplace(path, std::move(file)).first->second;
}

std::shared_ptr<const Adapters> LoraCache::last_set(const std::string& key) {
  std::lock_guard lock(mutex_);
  return key == last_key_ ? last_set_ : nullptr;
}

void LoraCache::keep_set(const std::string& key, std::shared_ptr<const Adapters> set) {
  std::lock_guard lock(mutex_);
  last_key_ = key;
  last_set_ = std::move(set);
}

void LoraCache::clear() {
  std::lock_guard lock(mutex_);
  files_.clear();
  last_key_.clear();
  last_set_.reset();
}

std::vector<const runtime::LayerAdapters*> Adapters::text_layers() const {
  std::vector<const runtime::LayerAdapters*> out;
  for (const auto& adapters : text) out.push_back(adapters->layers());
  return out;
}

namespace {

struct WeightedFiles {
  std::vector<models::WeightedLora> unet, text;  // at the UNet's strengths, at the text encoders'
  size_t layers = 0;
};

WeightedFiles weighted_files(LoraCache& cache, const std::vector<LoraRequest>& loras) {
  WeightedFiles out;
  for (const LoraRequest& lora : loras) {
    std::shared_ptr<const models::LoraFile> file = cache.file(lora.path);
    out.layers += file->layers.size();
    out.unet.push_back({file, static_cast<float>(lora.unet_strength)});
    out.text.push_back({file, static_cast<float>(lora.text_strength)});
  }
  return out;
}

// What each of the model's components makes of the adapters, by `make(parts,
// adapters, component)` (a unique_ptr to LowRankAdapters or StoredUpdates):
// the UNet's, then each text encoder's. An Error lists the adapter layers
// that matched no part.
template <typename Make>
auto per_component(const LoadedModel& m, const WeightedFiles& files, Make make) {
  using Built = decltype(make(std::vector<models::LayerPart>{}, files.unet, models::LoraComponent::Unet));
  struct {
    Built unet;
    std::vector<Built> text;
  } out;
  size_t matched = 0;
  std::vector<std::string> unmatched;
  const auto count = [&](const auto& built) {
    matched += built.matched();
    unmatched.insert(unmatched.end(), built.unmatched().begin(), built.unmatched().end());
  };
  // Layers for a part the model does not have at all (a second text encoder on SD 1.x).
  for (const models::WeightedLora& adapter : files.unet) {
    for (const models::LoraLayer& layer : adapter.file->layers) {
      const bool has_part = layer.component == models::LoraComponent::Unet ? m.model != nullptr
                            : layer.component == models::LoraComponent::TextEncoder ? !m.text_encoders.empty()
                                                                                    : m.text_encoders.size() > 1;
      if (!has_part) unmatched.push_back(adapter.file->path + ": " + layer.key);
    }
  }
  if (m.model) {
    out.unet = make(m.model->layer_parts(), files.unet, models::LoraComponent::Unet);
    count(*out.unet);
  }
  for (size_t i = 0; i < m.text_encoders.size(); ++i) {
    const auto component = i == 0 ? models::LoraComponent::TextEncoder : models::LoraComponent::TextEncoder2;
    out.text.push_back(make(m.text_encoders[i]->layer_parts(), files.text, component));
    count(*out.text.back());
  }
  if (matched != files.layers) {
    std::string listed;
    for (size_t i = 0; i < std::min<size_t>(unmatched.size(), 3); ++i) listed += (i ? ", " : "") + unmatched[i];
    throw Error(std::to_string(files.layers - matched) + " of " + std::to_string(files.layers) +
                " LoRA layers match no layer of " + m.model_info.description +
                " (an adapter for another model family?): " + listed + (unmatched.size() > 3 ? ", ..." : ""));
  }
  return out;
}

}  // namespace

void check_adapters(const LoadedModel& m, const std::vector<LoraRequest>& loras) {
  if (loras.empty()) return;
  per_component(m, weighted_files(m.loras, loras), [](const auto& parts, const auto& adapters, auto component) {
    return std::make_unique<models::LoraMatch>(parts, adapters, component);
  });
}

std::shared_ptr<const Adapters> match_adapters(const LoadedModel& m, const Accelerator& accel,
                                               const std::vector<LoraRequest>& loras) {
  static const auto none = std::make_shared<const Adapters>();
  if (loras.empty()) return none;
  std::string key;  // the files and their exact strengths
  for (const LoraRequest& lora : loras) {
    char strengths[64];
    std::snprintf(strengths, sizeof strengths, "%a %a", lora.unet_strength, lora.text_strength);
    key += lora.path + '\n' + strengths + '\n';
  }
  if (auto kept = m.loras.last_set(key)) return kept;
  auto built = per_component(m, weighted_files(m.loras, loras), [&](const auto& parts, const auto& adapters, auto component) {
    return std::make_unique<models::LowRankAdapters>(parts, adapters, component, accel);
  });
  auto out = std::make_shared<Adapters>();
  out->unet = std::move(built.unet);
  out->text = std::move(built.text);
  m.loras.keep_set(key, out);
  return out;
}

std::vector<LoraRequest> prompt_loras(const LoadedModel& m, std::string_view prompt) {
  std::vector<LoraRequest> loras;
  for (const LoraTag& tag : parse_lora_tags(prompt).tags) {
    if (!m.lora_folder) throw Error(tag.text + ": no LoRA folder is set to look '" + tag.name + "' up in");
    loras.push_back({m.lora_folder->find(tag), tag.unet_strength, tag.text_strength});
  }
  return loras;
}

std::vector<LoraRequest> request_loras(const LoadedModel& m, const GenerationRequest& r) {
  std::vector<LoraRequest> loras = r.loras;
  const std::vector<LoraRequest> tagged = prompt_loras(m, r.prompt);
  loras.insert(loras.end(), tagged.begin(), tagged.end());
  return loras;
}

}  // namespace pipeline

std::map<std::pair<std::string, std::string>, ConvertOptions::RowsUpdate> lora_updates(
    const std::string& path, const std::vector<LoraRequest>& loras, const LoadOptions& options) {
  // Loaded as 8-bit S, the smallest the weights can be held: only where each
  // layer's rows are stored is wanted.
  LoadOptions load = options;
  load.precision = Precision::Int8;
  const std::unique_ptr<Accelerator> accel = make_accelerator("ref");
  std::vector<std::shared_ptr<const models::StoredUpdates>> components;
  {
    const std::unique_ptr<pipeline::LoadedModel> m = pipeline::load_model(path, load, *accel);
    auto built = pipeline::per_component(*m, pipeline::weighted_files(m->loras, loras),
                                         [](const auto& parts, const auto& adapters, auto component) {
                                           return std::make_unique<models::StoredUpdates>(parts, adapters, component);
                                         });
    components.push_back(std::move(built.unet));
    for (auto& text : built.text) components.push_back(std::move(text));
  }
  std::map<std::pair<std::string, std::string>, ConvertOptions::RowsUpdate> out;
  for (const auto& component : components) {
    if (!component) continue;
    for (const auto& [where, updates] : component->tensors()) {
      const models::StoredUpdates::Tensor* tensor = &updates;
      out[{std::filesystem::weakly_canonical(where.first).string(), where.second}] =
          [component, tensor](int64_t first_row, int64_t rows, int64_t cols, float* values) {
            models::StoredUpdates::add(*tensor, first_row, rows, cols, values);
          };
    }
  }
  return out;
}

}  // namespace tiledraw
