#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "models/diffusion_model.h"
#include "tiledraw/accel.h"
#include "tiledraw/pipeline.h"

// Conditioning as its own step: a conditioner turns a request (class ids
// today, prompts next) into the tensors a model reads, for the conditional and
// the unconditional branch of guidance.
namespace tiledraw::pipeline {

// One conditioning input of the model for every image of a request.
struct ConditioningInput {
  models::InputRole role;
  std::vector<int64_t> shape;       // per image: {} for one value, {tokens, width}, {width}
  std::vector<float> cond, uncond;  // images x the shape's values each
};

struct Conditioning {
  int64_t images = 0;
  std::vector<ConditioningInput> inputs;
  // The first lines of each image's parameters text ("class 7 (sneaker)"), and
  // of the whole batch's ("class 0 (t-shirt), 1 (trouser)").
  std::vector<std::string> subjects;
  std::string batch_subject;
  // Settings of the conditioning for the parameters text (", Clip skip: 2").
  std::string settings;
  int64_t context_tokens() const;  // of the text context, 0 without one
};

// What a conditioner that runs a model (a text encoder) runs it with.
struct EncodeContext {
  const Accelerator& accel;
  ProgramCache& cache;
  const std::atomic<bool>* cancel = nullptr;
  int64_t height = 0, width = 0;  // the image the request makes, in pixels
  std::vector<const runtime::LayerAdapters*> text_adapters = {};  // adapters per text encoder (LoRA), or none
};

class Conditioner {
 public:
  virtual ~Conditioner() = default;
  virtual Conditioning encode(const GenerationRequest& request, const EncodeContext& context) const = 0;
  // How many images the request makes, without encoding anything.
  virtual int64_t images(const GenerationRequest& request) const = 0;
};

// Class-conditional models: `batch` images of each class, the unconditional
// branch on the model's null class (or on negative classes, steering away
// from them).
class ClassConditioner : public Conditioner {
 public:
  ClassConditioner(int64_t classes, int64_t null_class, std::vector<std::string> names);
  // Ids, names (any of a name's comma-separated synonyms, without regard to
  // case, spaces, hyphens and underscores) or "all".
  std::vector<int64_t> ids(const std::vector<std::string>& items) const;
  const std::vector<std::string>& names() const { return names_; }
  Conditioning encode(const GenerationRequest& request, const EncodeContext& context) const override;
  int64_t images(const GenerationRequest& request) const override;

 private:
  std::string label(int64_t id) const;  // "7 (sneaker)"

  int64_t classes_, null_class_;
  std::vector<std::string> names_;
};

}  // namespace tiledraw::pipeline
