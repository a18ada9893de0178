#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "models/lora.h"
#include "tiledraw/pipeline.h"

// A request's LoRA adapters matched to a loaded model: the UNet's and each
// text encoder's (branches beside 8-bit S layers, merged copies of float
// ones), built from files read once and kept for the next request with the
// same set, so that changing adapters or strengths never touches the base
// weights. Also what bakes them into a checkpoint (lora_updates).
namespace tiledraw::pipeline {

struct LoadedModel;

struct Adapters {
  std::unique_ptr<models::LowRankAdapters> unet;
  std::vector<std::unique_ptr<models::LowRankAdapters>> text;  // one per text encoder, in the conditioner's order

  const runtime::LayerAdapters* unet_layers() const { return unet ? unet->layers() : nullptr; }
  std::vector<const runtime::LayerAdapters*> text_layers() const;
};

// Adapter files read once per path, and the set of adapters built last, kept
// for the generations that ask for the same files and strengths.
class LoraCache {
 public:
  std::shared_ptr<const models::LoraFile> file(const std::string& path);
  std::shared_ptr<const Adapters> last_set(const std::string& key);
  void keep_set(const std::string& key, std::shared_ptr<const Adapters> set);
  // Later uses read the files again (changed since); generations running keep theirs.
  void clear();

 private:
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<const models::LoraFile>> files_;
  std::string last_key_;
  std::shared_ptr<const Adapters> last_set_;
};

// The request's adapters matched to the model's layers (none: an empty set); an
// Error names the keys that matched no layer (an adapter for another family).
// The same errors as match_adapters gives, building nothing (the files are read and kept).
void check_adapters(const LoadedModel& model, const std::vector<LoraRequest>& loras);

std::shared_ptr<const Adapters> match_adapters(const LoadedModel& model, const Accelerator& accel,
                                               const std::vector<LoraRequest>& loras);

// The adapters the tags of `prompt` name, found in the model's LoRA folder;
// an Error names a tag that is malformed or names no file there.
std::vector<LoraRequest> prompt_loras(const LoadedModel& model, std::string_view prompt);

// The request's own adapters followed by its prompt's.
std::vector<LoraRequest> request_loras(const LoadedModel& model, const GenerationRequest& request);

}  // namespace tiledraw::pipeline
