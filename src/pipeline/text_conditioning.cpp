#include "pipeline/text_conditioning.h"

#include <numeric>

#include "runtime/executor.h"
#include "tiledraw/error.h"

namespace tiledraw::pipeline {

TextConditioner::TextConditioner(std::optional<text::ClipTokenizer> tokenizer, std::string missing,
                                 const models::ClipTextEncoder& encoder, TextEncoding encoding)
    : tokenizer_(std::move(tokenizer)), missing_(std::move(missing)), encoder_(encoder), encoding_(encoding) {}

int64_t TextConditioner::layers_for(int clip_skip) const {
  const int skip = clip_skip > 0 ? clip_skip : encoding_.default_clip_skip;
  const int64_t layers = encoding_.counted_layers - (skip - 1);
  if (clip_skip < 0 || layers < 1 || layers > encoder_.config().layers) {
    throw Error("clip skip " + std::to_string(clip_skip) + ": the text encoder has " +
                std::to_string(encoding_.counted_layers) + " layers (1 uses the last)");
  }
  return layers;
}

std::vector<std::vector<float>> TextConditioner::contexts(const std::vector<std::vector<text::TokenChunk>>& prompts,
                                                          int64_t layers, const EncodeContext& context) const {
  const int64_t chunks = static_cast<int64_t>(prompts.front().size());
  const int64_t rows = static_cast<int64_t>(prompts.size()) * chunks;
  const int64_t positions = static_cast<int64_t>(text::kChunkLength), width = encoder_.config().width;
  const auto model = encoder_.build(rows, layers);
  runtime::Executor exec(model->graph, context.accel, context.cache);
  exec.set_cancel_flag(context.cancel);
  std::vector<float> ids;
  for (const auto& prompt : prompts) {
    for (const text::TokenChunk& chunk : prompt) ids.insert(ids.end(), chunk.ids.begin(), chunk.ids.end());
  }
  exec.run({ids.data()});
  const float* hidden = exec.data(model->hidden_states);

  std::vector<std::vector<float>> out;
  for (size_t p = 0; p < prompts.size(); ++p) {
    std::vector<float>& z = out.emplace_back(static_cast<size_t>(chunks * positions * width));
    for (int64_t c = 0; c < chunks; ++c) {
      const text::TokenChunk& chunk = prompts[p][static_cast<size_t>(c)];
      const float* in = hidden + (static_cast<int64_t>(p) * chunks + c) * positions * width;
      float* chunk_out = z.data() + c * positions * width;
      // A1111's emphasis: each position times its weight, then the chunk
      // rescaled so that its mean is what it was before.
      double before = 0.0, after = 0.0;
      for (int64_t t = 0; t < positions; ++t) {
        for (int64_t i = 0; i < width; ++i) {
          const float v = in[t * width + i];
          chunk_out[t * width + i] = v * chunk.weights[static_cast<size_t>(t)];
          before += v;
          after += chunk_out[t * width + i];
        }
      }
      const bool weighted = std::any_of(chunk.weights.begin(), chunk.weights.end(), [](float w) { return w != 1.0f; });
      if (weighted && after != 0.0) {
        const float rescale = static_cast<float>(before / after);
        for (int64_t i = 0; i < positions * width; ++i) chunk_out[i] *= rescale;
      }
    }
  }
  return out;
}

Conditioning TextConditioner::encode(const GenerationRequest& r, const EncodeContext& context) const {
  if (r.batch < 1) throw Error("nothing to generate: a batch of " + std::to_string(r.batch));
  if (!r.classes.empty() || !r.negative_classes.empty()) {
    throw Error("a text-to-image model takes a prompt, not classes");
  }
  if (!tokenizer_) throw Error(missing_);
  const int64_t layers = layers_for(r.clip_skip);
  std::vector<text::TokenChunk> cond = text::tokenize_prompt(*tokenizer_, r.prompt, encoding_.pad_id);
  std::vector<text::TokenChunk> uncond = text::tokenize_prompt(*tokenizer_, r.negative_prompt, encoding_.pad_id);
  const size_t chunks = std::max(cond.size(), uncond.size());
  text::pad_to_chunk_count(cond, chunks, *tokenizer_, encoding_.pad_id);
  text::pad_to_chunk_count(uncond, chunks, *tokenizer_, encoding_.pad_id);
  const std::vector<std::vector<float>> z = contexts({cond, uncond}, layers, context);

  Conditioning c;
  c.images = r.batch;
  ConditioningInput text{models::InputRole::TextContext,
                         {static_cast<int64_t>(chunks * text::kChunkLength), encoder_.config().width}, {}, {}};
  for (int64_t i = 0; i < r.batch; ++i) {
    text.cond.insert(text.cond.end(), z[0].begin(), z[0].end());
    text.uncond.insert(text.uncond.end(), z[1].begin(), z[1].end());
  }
  c.inputs.push_back(std::move(text));
  std::string subject = r.prompt;
  if (!r.negative_prompt.empty()) subject += "\nNegative prompt: " + r.negative_prompt;
  c.subjects.assign(static_cast<size_t>(r.batch), subject);
  c.batch_subject = subject;
  const int skip = r.clip_skip > 0 ? r.clip_skip : encoding_.default_clip_skip;
  if (skip > 1) c.settings = ", Clip skip: " + std::to_string(skip);
  return c;
}

}  // namespace tiledraw::pipeline
