#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "models/checkpoint.h"
#include "models/clip_text.h"
#include "models/diffusion_model.h"
#include "models/vae.h"
#include "pipeline/adapters.h"
#include "pipeline/conditioning.h"
#include "pipeline/lora_folder.h"
#include "tiledraw/pipeline.h"

// Loading: from a path to the models of its family, each behind its
// interface. A new family adds one loader to the table in loading.cpp.
namespace tiledraw::pipeline {

struct LoadedModel {
  explicit LoadedModel(models::Checkpoint opened) : checkpoint(std::move(opened)) {}

  models::Checkpoint checkpoint;
  std::optional<models::Checkpoint> vae_checkpoint;  // a separate VAE's file
  CheckpointInfo info;
  std::unique_ptr<models::DiffusionModel> model;  // null for a VAE alone
  std::unique_ptr<models::VaeDecoder> vae;        // null for a pixel-space model
  std::vector<std::unique_ptr<models::ClipTextEncoder>> text_encoders;  // text-to-image families, in the conditioner's order
  std::unique_ptr<Conditioner> conditioner;
  std::string vae_path;
  ModelInfo model_info;

  // The VAE's encoder (img2img), loaded when first asked for: most runs never
  // need it. An Error when the VAE has none.
  const models::VaeEncoder& vae_encoder(const Accelerator& accel) const;

  // Image pixels per latent: the VAE's, else what the model's latent format says.
  int64_t vae_factor() const { return vae ? vae->config().factor() : model ? model->latent_format().vae_factor : 1; }

  mutable LoraCache loras;  // adapter files read so far
  std::unique_ptr<LoraFolder> lora_folder;  // where prompts' tags find adapters; null without one

  std::optional<models::WeightView> vae_view;
  Precision vae_precision = Precision::AsStored;

 private:
  mutable std::once_flag vae_encoder_loaded_;
  mutable std::unique_ptr<models::VaeEncoder> vae_encoder_;
};

std::unique_ptr<LoadedModel> load_model(const std::string& path, const LoadOptions& options, const Accelerator& accel);

}  // namespace tiledraw::pipeline
