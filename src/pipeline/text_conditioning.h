#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "models/clip_text.h"
#include "pipeline/conditioning.h"
#include "text/clip_tokenizer.h"
#include "text/prompt.h"

// Text-to-image conditioning as the A1111 web UI does it: the prompt and the
// negative prompt in its weighting syntax, cut into 77-token chunks, each
// chunk encoded by the CLIP text encoders on its own and the contexts
// concatenated; each token's hidden state scaled by its weight, then the
// chunk rescaled to its original mean. SDXL's two encoders read the same
// tokens, and their contexts stand side by side, token by token.
namespace tiledraw::pipeline {

// One text encoder of a model, and how its output is taken.
struct TextTower {
  const models::ClipTextEncoder* encoder = nullptr;
  // After a chunk's first <|endoftext|>: OpenAI's CLIP pads with it (SD 1.x,
  // SDXL's first encoder), OpenCLIP with 0.
  int32_t pad_id = 0;
  // The layers --clip-skip counts back from (the full encoder's: diffusers'
  // SD 2.x text encoder ships 23 of OpenCLIP's 24), and the family's own
  // choice (1: the last layer, SD 1.x; 2: the penultimate, SD 2.x and SDXL).
  int64_t counted_layers = 0;
  int default_clip_skip = 1;
  bool final_norm = true;  // the context goes through the final layer norm (SD 1.x/2.x), or not (SDXL)
  bool pooled = false;     // it gives the pooled text vector (SDXL's second encoder)
};

struct TextEncoding {
  std::vector<TextTower> towers;  // contexts side by side in this order
  // diffusers' force_zeros_for_empty_prompt: an empty negative prompt is a
  // context and pooled vector of zeros, not the encoding of "".
  bool zeros_for_empty_negative = false;
  // SDXL's six sizes (original, crop corner, target) as the model's ExtraVector.
  bool size_conditioning = false;
};

class TextConditioner : public Conditioner {
 public:
  // Without a tokenizer (none was found: `missing` says where to get one) the
  // model still loads, for `forward` and `inspect`; encoding a prompt is then
  // that Error.
  TextConditioner(std::optional<text::ClipTokenizer> tokenizer, std::string missing, TextEncoding encoding);
  Conditioning encode(const GenerationRequest& request, const EncodeContext& context) const override;
  int64_t images(const GenerationRequest& request) const override { return request.batch; }

  int64_t context_width() const;
  int64_t pooled_width() const;  // 0 when no encoder pools
  const std::vector<TextTower>& towers() const { return encoding_.towers; }

  struct Encoded {
    std::vector<float> context;  // [rows, 77, context_width()]
    std::vector<float> pooled;   // [rows, pooled_width()]; empty when no encoder pools
  };
  // Every encoder on `rows` chunks of 77 token ids (one list per encoder: each
  // pads its own way) at a clip skip (0: the family's), without emphasis. An
  // Error when an encoder does not have the layers the clip skip asks for.
  Encoded encode_ids(const std::vector<std::vector<float>>& ids, int64_t rows, int clip_skip,
                     const EncodeContext& context) const;

 private:
  // Several prompts' contexts [chunks x 77, context_width()], emphasis applied,
  // and pooled vectors (of their first chunks), all padded to one chunk count.
  std::vector<Encoded> encode_prompts(const std::vector<std::string>& prompts, int clip_skip,
                                      const EncodeContext& context) const;

  std::optional<text::ClipTokenizer> tokenizer_;
  std::string missing_;
  TextEncoding encoding_;
};

}  // namespace tiledraw::pipeline
