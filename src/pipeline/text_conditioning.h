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
// chunk encoded by the CLIP text encoder on its own and the contexts
// concatenated; each token's hidden state scaled by its weight, then the
// chunk rescaled to its original mean.
namespace tiledraw::pipeline {

struct TextEncoding {
  int32_t pad_id = 0;  // after a chunk's first <|endoftext|>: SD 1.x pads with it, SD 2.x with 0
  // The layers --clip-skip counts back from (the full encoder's: diffusers'
  // SD 2.x text encoder ships 23 of OpenCLIP's 24), and the family's own
  // choice (SD 1.x 1: the last layer; SD 2.x 2: the penultimate).
  int64_t counted_layers = 0;
  int default_clip_skip = 1;
};

class TextConditioner : public Conditioner {
 public:
  // Without a tokenizer (none was found: `missing` says where to get one) the
  // model still loads, for `forward` and `inspect`; encoding a prompt is then
  // that Error.
  TextConditioner(std::optional<text::ClipTokenizer> tokenizer, std::string missing,
                  const models::ClipTextEncoder& encoder, TextEncoding encoding);
  Conditioning encode(const GenerationRequest& request, const EncodeContext& context) const override;
  int64_t images(const GenerationRequest& request) const override { return request.batch; }

  // The encoder layers a clip skip (0: the family's) runs; an Error when the
  // encoder does not have that many.
  int64_t layers_for(int clip_skip) const;
  // Contexts [chunks x 77, width] of several prompts' chunks (each prompt the
  // same number of chunks), emphasis applied; one vector per prompt.
  std::vector<std::vector<float>> contexts(const std::vector<std::vector<text::TokenChunk>>& prompts,
                                           int64_t layers, const EncodeContext& context) const;

 private:
  std::optional<text::ClipTokenizer> tokenizer_;
  std::string missing_;
  const models::ClipTextEncoder& encoder_;
  TextEncoding encoding_;
};

}  // namespace tiledraw::pipeline
