#include "pipeline/adapters.h"

#include <algorithm>
#include <cstdio>

#include "pipeline/loading.h"
#include "pipeline/lora_prompt.h"
#include "tiledraw/error.h"

namespace tiledraw::pipeline {

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
  auto out = std::make_shared<Adapters>();
  std::vector<models::WeightedLora> unet, text;
  size_t layers = 0;
  for (const LoraRequest& lora : loras) {
    std::shared_ptr<const models::LoraFile> file = m.loras.file(lora.path);
    layers += file->layers.size();
    unet.push_back({file, static_cast<float>(lora.unet_strength)});
    text.push_back({file, static_cast<float>(lora.text_strength)});
  }
  size_t matched = 0;
  std::vector<std::string> unmatched;
  const auto count = [&](const models::LowRankAdapters& adapters) {
    matched += adapters.matched();
    unmatched.insert(unmatched.end(), adapters.unmatched().begin(), adapters.unmatched().end());
  };
  // Layers for a part the model does not have at all (a second text encoder on SD 1.x).
  for (const models::WeightedLora& adapter : unet) {
    for (const models::LoraLayer& layer : adapter.file->layers) {
      const bool has_part = layer.component == models::LoraComponent::Unet ? m.model != nullptr
                            : layer.component == models::LoraComponent::TextEncoder ? !m.text_encoders.empty()
                                                                                    : m.text_encoders.size() > 1;
      if (!has_part) unmatched.push_back(adapter.file->path + ": " + layer.key);
    }
  }
  if (m.model) {
    out->unet = std::make_unique<models::LowRankAdapters>(m.model->layer_parts(), unet, models::LoraComponent::Unet, accel);
    count(*out->unet);
  }
  for (size_t i = 0; i < m.text_encoders.size(); ++i) {
    const auto component = i == 0 ? models::LoraComponent::TextEncoder : models::LoraComponent::TextEncoder2;
    out->text.push_back(
        std::make_unique<models::LowRankAdapters>(m.text_encoders[i]->layer_parts(), text, component, accel));
    count(*out->text.back());
  }
  if (matched != layers) {
    std::string listed;
    for (size_t i = 0; i < std::min<size_t>(unmatched.size(), 3); ++i) listed += (i ? ", " : "") + unmatched[i];
    throw Error(std::to_string(layers - matched) + " of " + std::to_string(layers) + " LoRA layers match no layer of " +
                m.model_info.description + " (an adapter for another model family?): " + listed +
                (unmatched.size() > 3 ? ", ..." : ""));
  }
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

}  // namespace tiledraw::pipeline
