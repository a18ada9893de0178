#pragma once

#include <memory>
#include <optional>
#include <string>

#include "models/checkpoint.h"
#include "models/diffusion_model.h"
#include "models/vae.h"
#include "pipeline/conditioning.h"
#include "tiledraw/pipeline.h"

// Loading: from a path to the models of its family, each behind its
// interface. A new family adds one loader to the table in loading.cpp.
namespace tiledraw::pipeline {

struct LoadedModel {
  models::Checkpoint checkpoint;
  std::optional<models::Checkpoint> vae_checkpoint;  // a separate VAE's file
  CheckpointInfo info;
  std::unique_ptr<models::DiffusionModel> model;  // null for a VAE alone
  std::unique_ptr<models::VaeDecoder> vae;        // null for a pixel-space model
  std::unique_ptr<Conditioner> conditioner;
  std::string vae_path;
  ModelInfo model_info;

  // Image pixels per latent: the VAE's, else what the model's latent format says.
  int64_t vae_factor() const { return vae ? vae->config().factor() : model ? model->latent_format().vae_factor : 1; }
};

std::unique_ptr<LoadedModel> load_model(const std::string& path, const LoadOptions& options, const Accelerator& accel);

}  // namespace tiledraw::pipeline
