#include "models/mlp_classifier.h"

#include "tiledraw/error.h"

namespace tiledraw::models {

MlpClassifier::MlpClassifier(const SafetensorsFile& file, const Accelerator& accel, Precision precision)
    : weights_(file, accel, precision, "an MLP classifier", "expected fc1, fc2, ... with weight and bias"),
      names_(models::class_names(file)) {
  const auto it = file.metadata().find("input_shape");
  const auto shape = it == file.metadata().end() ? nlohmann::json() : nlohmann::json::parse(it->second, nullptr, false);
  if (!shape.is_array() || shape.size() != 3 || !shape[0].is_number_integer() || !shape[1].is_number_integer() ||
      !shape[2].is_number_integer() || shape[0].get<int64_t>() <= 0 || shape[1].get<int64_t>() <= 0 ||
      shape[2].get<int64_t>() <= 0) {
    throw Error(file.path() + ": an MLP classifier needs metadata 'input_shape' as [channels, height, width]");
  }
  channels_ = shape[0].get<int64_t>();
  height_ = shape[1].get<int64_t>();
  width_ = shape[2].get<int64_t>();
  if (const auto act = file.metadata().find("activation"); act != file.metadata().end() && act->second != "gelu_tanh") {
    throw Error(file.path() + ": activation '" + act->second + "' is not supported (gelu_tanh)");
  }
  int64_t features = 0;
  if (__builtin_mul_overflow(channels_, height_, &features) || __builtin_mul_overflow(features, width_, &features)) {
    throw Error(file.path() + ": metadata 'input_shape' " + it->second + " is too large");
  }
  for (int i = 1; file.find("fc" + std::to_string(i) + ".weight"); ++i) {
    layers_.push_back(weights_.linear("fc" + std::to_string(i)));
    if (layers_.back().in_features() != features) {
      throw Error(file.path() + ": fc" + std::to_string(i) + " takes " + std::to_string(layers_.back().in_features()) +
                  " features, the layer before gives " + std::to_string(features));
    }
    features = layers_.back().weight ? layers_.back().weight->n() : layers_.back().float_weight.n;
  }
  if (layers_.empty()) weights_.require("fc1.weight");
  classes_ = features;
  if (!names_.empty() && static_cast<int64_t>(names_.size()) != classes_) {
    throw Error(file.path() + ": " + std::to_string(names_.size()) + " class names for " + std::to_string(classes_) + " classes");
  }
}

std::unique_ptr<MlpClassifier::Graph> MlpClassifier::build(int64_t batch) const {
  if (batch <= 0) throw Error("classifier: batch must be positive");
  auto model = std::make_unique<Graph>();
  model->images = model->graph.input({batch, channels_ * height_ * width_});
  int x = model->images;
  for (size_t i = 0; i < layers_.size(); ++i) {
    x = linear(model->graph, x, layers_[i], i + 1 < layers_.size() ? Activation::GeluTanh : Activation::None);
  }
  model->logits = x;
  model->graph.output(x);
  return model;
}

}  // namespace tiledraw::models
