#pragma once

#include <string>
#include <vector>

namespace tiledraw {

// What a checkpoint (a file or a diffusers folder) holds, found from its
// tensor names and shapes alone, no weights read: what `tiledraw inspect` reports.
struct CheckpointInfo {
  std::string family;       // "dit", "vae", "sd1", ...
  std::string description;  // "DiT, class-conditional (diffusers layout)"
  bool supported = false;   // false for families recognised but not run yet
  struct Component {
    std::string name;     // "diffusion_model", "vae", "text_encoder", ...
    std::string where;    // "model.diffusion_model.* in sd.safetensors", "transformer/ in FOLDER"
    std::string details;  // layout and size
  };
  std::vector<Component> components;
};
// Throws an Error that lists what was found when no family matches.
CheckpointInfo inspect_checkpoint(const std::string& path);

}  // namespace tiledraw
