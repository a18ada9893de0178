#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/weights.h"
#include "tiledraw/checkpoint.h"
#include "tiledraw/safetensors.h"

// What a path holds: one safetensors file (possibly several models under
// prefixes, as single-file Stable Diffusion checkpoints keep them) or a
// diffusers folder (model_index.json, one folder per component). Families are
// told apart by their tensor names and shapes, and each component's weights
// are handed to its model as a WeightView.
namespace tiledraw::models {

class Checkpoint {
 public:
  static Checkpoint open(const std::string& path);

  const std::string& path() const { return path_; }
  bool folder() const { return !model_index_.is_null(); }
  // The single file (for a folder: none).
  const SafetensorsFile* file() const { return folder() ? nullptr : files_.front().get(); }
  // A folder's component weights ("transformer", "vae", ...), if it has them.
  std::optional<WeightView> component(const std::string& name) const;
  const nlohmann::json& model_index() const { return model_index_; }
  // scheduler/scheduler_config.json of a folder, else null.
  const nlohmann::json& scheduler_config() const { return scheduler_config_; }

 private:
  std::string path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;  // stable addresses: views point at them
  std::map<std::string, const SafetensorsFile*> components_;
  nlohmann::json model_index_, scheduler_config_;
};

// The AutoencoderKL decoder a checkpoint holds, in either layout: a VAE file, a
// single-file checkpoint's first_stage_model.* (or vae.*), a folder's vae/.
std::optional<WeightView> find_vae(const Checkpoint& checkpoint);

// A family recognised in a checkpoint: what `inspect` says of it, and where
// each component's weights are ("diffusion_model", "vae", "classifier").
struct DetectedFamily {
  CheckpointInfo info;
  std::map<std::string, WeightView> components;
};

// The family of a checkpoint, or of `stated` when given (then only that
// family is tried). Throws an Error that lists what was found when nothing
// matches.
DetectedFamily detect_family(const Checkpoint& checkpoint, const std::string& stated = "");

// The families tiledraw can name, for messages and --family.
std::vector<std::string> family_names();

}  // namespace tiledraw::models
