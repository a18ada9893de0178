#include "models/diffusion_model.h"

namespace tiledraw::models {

std::vector<std::string> input_names(InputRole role) {
  switch (role) {
    case InputRole::Latents: return {"x", "sample", "hidden_states"};
    case InputRole::Timestep: return {"t", "timestep"};
    case InputRole::ClassLabels: return {"y", "class_labels"};
    case InputRole::TextContext: return {"context", "encoder_hidden_states"};
    case InputRole::PooledText: return {"pooled", "text_embeds"};
    case InputRole::ExtraVector: break;
  }
  return {"time_ids"};
}

const char* prediction_name(Prediction prediction) {
  switch (prediction) {
    case Prediction::Epsilon: return "epsilon";
    case Prediction::V: return "v";
    case Prediction::FlowVelocity: break;
  }
  return "flow";
}

void DiffusionModel::guide(float* cond, const float* uncond, int64_t images, int64_t plane, double scale) const {
  const int64_t count = images * latent_format().channels * plane;
  for (int64_t i = 0; i < count; ++i) cond[i] = static_cast<float>(uncond[i] + scale * (double(cond[i]) - uncond[i]));
}

const std::vector<LayerPart>& DiffusionModel::layer_parts() const {
  static const std::vector<LayerPart> none;
  return none;
}

}  // namespace tiledraw::models
