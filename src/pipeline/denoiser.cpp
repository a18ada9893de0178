#include "pipeline/denoiser.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "tiledraw/error.h"

namespace tiledraw::pipeline {
namespace {

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  return n;
}

}  // namespace

int64_t ModelDenoiser::buffer_floats(const models::DiffusionModel& model, const Conditioning& c, bool guided,
                                     int64_t latent_h, int64_t latent_w) {
  const int64_t rows = guided ? 2 * c.images : c.images, plane = latent_h * latent_w;
  const int64_t latents = c.images * model.latent_format().channels * plane;
  int64_t floats = rows * model.latent_format().channels * plane + 2 * latents + rows;
  for (const ConditioningInput& input : c.inputs) floats += rows * numel(input.shape);
  return floats;
}

ModelDenoiser::ModelDenoiser(const models::DiffusionModel& model, const sampling::ModelSampling& sampling,
                             const Conditioning& conditioning, double cfg_scale, int64_t latent_h, int64_t latent_w,
                             bool clip_to_pixels, const Accelerator& accel, ProgramCache& cache,
                             const std::atomic<bool>* cancel, const runtime::LayerAdapters* adapters)
    : model_(model),
      sampling_(sampling),
      cfg_scale_(cfg_scale),
      guided_(cfg_scale != 1.0),
      clip_(clip_to_pixels),
      images_(conditioning.images),
      rows_(guided_ ? 2 * conditioning.images : conditioning.images),
      channels_(model.latent_format().channels),
      plane_(latent_h * latent_w),
      out_channels_(model.learned_variance() ? 2 * channels_ : channels_) {
  graph_ = model.build({rows_, latent_h, latent_w, conditioning.context_tokens(), adapters});
  exec_ = std::make_unique<runtime::Executor>(graph_->graph, accel, cache);
  exec_->set_cancel_flag(cancel);
  // Conditioning inputs hold the conditional rows, then the unconditional ones.
  for (size_t i = 0; i < graph_->inputs.size(); ++i) {
    const models::InputRole role = graph_->inputs[i].first;
    std::vector<float> values;
    if (role == models::InputRole::Latents) {
      latents_input_ = i;
      values.resize(static_cast<size_t>(rows_ * channels_ * plane_));
    } else if (role == models::InputRole::Timestep) {
      timestep_input_ = i;
      values.resize(static_cast<size_t>(rows_));
    } else {
      const auto it = std::find_if(conditioning.inputs.begin(), conditioning.inputs.end(),
                                   [&](const ConditioningInput& c) { return c.role == role; });
      if (it == conditioning.inputs.end()) {
        throw Error(std::string("the model reads ") + models::input_names(role).back() + ", which this request does not give");
      }
      values = it->cond;
      if (guided_) values.insert(values.end(), it->uncond.begin(), it->uncond.end());
    }
    inputs_.push_back(std::move(values));
  }
  for (const std::vector<float>& input : inputs_) bound_.push_back(input.data());
  prediction_.resize(static_cast<size_t>(images_ * channels_ * plane_));
  if (guided_) uncond_.resize(prediction_.size());
}

void ModelDenoiser::operator()(const float* x, double sigma, float* denoised, float* variance) {
  const int64_t per_image = channels_ * plane_, count = images_ * per_image;
  const double scale_in = sampling_.input_scale(sigma), timestep = sampling_.model_timestep(sigma);
  std::vector<float>& latents = inputs_[latents_input_];
  for (int64_t i = 0; i < count; ++i) latents[static_cast<size_t>(i)] = static_cast<float>(x[i] * scale_in);
  if (guided_) std::copy_n(latents.begin(), count, latents.begin() + count);
  std::fill(inputs_[timestep_input_].begin(), inputs_[timestep_input_].end(), static_cast<float>(timestep));

  char where[96];
  std::snprintf(where, sizeof where, "step %d/%d (timestep %g)", step_ + 1, steps_, timestep);
  exec_->run(bound_);
  const float* out = exec_->data(graph_->output);
  if (!runtime::all_finite(out, rows_ * out_channels_ * plane_)) {
    const std::string op = exec_->locate_non_finite(bound_);
    throw Error(std::string(where) + ": NaN or Inf in the output" + (op.empty() ? std::string() : ", first made by " + op));
  }

  // The prediction of each image (the conditional branch, guided), and its learned variance.
  const int64_t out_image = out_channels_ * plane_;
  for (int64_t b = 0; b < images_; ++b) {
    std::copy_n(out + b * out_image, per_image, prediction_.data() + b * per_image);
    if (variance) {
      if (model_.learned_variance()) {
        std::copy_n(out + b * out_image + per_image, per_image, variance + b * per_image);
      } else {
        std::fill_n(variance + b * per_image, per_image, -1.0f);  // the posterior's variance
      }
    }
  }
  if (guided_) {
    for (int64_t b = 0; b < images_; ++b) std::copy_n(out + (images_ + b) * out_image, per_image, uncond_.data() + b * per_image);
    model_.guide(prediction_.data(), uncond_.data(), images_, plane_, cfg_scale_);
  }

  // The clean estimate from the prediction, in the sampler's form of x.
  const models::Prediction kind = model_.prediction();
  const double skip = 1.0 / (sigma * sigma + 1.0), v_out = -sigma / std::sqrt(sigma * sigma + 1.0);
  for (int64_t i = 0; i < count; ++i) {
    const double p = prediction_[static_cast<size_t>(i)];
    double x0 = kind == models::Prediction::V ? x[i] * skip + p * v_out : x[i] - sigma * p;  // epsilon and flow velocity alike
    if (clip_) x0 = std::clamp(x0, -1.0, 1.0);
    denoised[i] = static_cast<float>(x0);
  }
}

}  // namespace tiledraw::pipeline
