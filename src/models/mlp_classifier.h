#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/weights.h"
#include "runtime/graph.h"

// An image classifier made of linear layers fc1..fcN with GELU (tanh) between
// them: the judge that scores generated images on tiledraw's own runtime.
namespace tiledraw::models {

class MlpClassifier {
 public:
  // Reads the layers and the metadata: "input_shape" ([channels, height,
  // width] of the image in [-1, 1]) and optional "class_names".
  MlpClassifier(const SafetensorsFile& file, const Accelerator& accel, Precision precision = Precision::AsStored);

  int64_t channels() const { return channels_; }
  int64_t height() const { return height_; }
  int64_t width() const { return width_; }
  int64_t classes() const { return classes_; }
  const std::vector<std::string>& class_names() const { return names_; }

  struct Graph {
    runtime::Graph graph;
    int images;  // [batch, channels * height * width], pixels in [-1, 1]
    int logits;  // [batch, classes]
  };
  std::unique_ptr<Graph> build(int64_t batch) const;

 private:
  WeightStore weights_;
  std::vector<LinearWeights> layers_;
  int64_t channels_ = 0, height_ = 0, width_ = 0, classes_ = 0;
  std::vector<std::string> names_;
};

}  // namespace tiledraw::models
