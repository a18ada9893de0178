#include "pipeline/text_conditioning.h"

#include <algorithm>

#include "pipeline/lora_prompt.h"
#include "runtime/executor.h"
#include "tiledraw/error.h"

namespace tiledraw::pipeline {
namespace {

constexpr int64_t kPositions = static_cast<int64_t>(text::kChunkLength);

// The encoder layers a clip skip (0: the family's) runs.
int64_t layers_for(const TextTower& tower, int clip_skip) {
  const int skip = clip_skip > 0 ? clip_skip : tower.default_clip_skip;
  const int64_t layers = tower.counted_layers - (skip - 1);
  if (clip_skip < 0 || layers < 1 || layers > tower.encoder->config().layers) {
    throw Error("clip skip " + std::to_string(clip_skip) + ": the text encoder has " + std::to_string(tower.counted_layers) +
                " layers (1 uses the last)");
  }
  return layers;
}

// A1111's emphasis on one chunk's columns [offset, offset + width) of a
// context row of `stride` floats per token: each token times its weight, then
// the chunk rescaled so that its mean is what it was before.
void apply_emphasis(float* chunk, int64_t stride, int64_t offset, int64_t width, const text::TokenChunk& tokens) {
  const auto& weights = tokens.weights;
  if (std::all_of(weights.begin(), weights.end(), [](float w) { return w == 1.0f; })) return;
  double before = 0.0, after = 0.0;
  for (int64_t t = 0; t < kPositions; ++t) {
    float* token = chunk + t * stride + offset;
    for (int64_t i = 0; i < width; ++i) {
      before += token[i];
      token[i] *= weights[static_cast<size_t>(t)];
      after += token[i];
    }
  }
  if (after == 0.0) return;
  const float rescale = static_cast<float>(before / after);
  for (int64_t t = 0; t < kPositions; ++t) {
    float* token = chunk + t * stride + offset;
    for (int64_t i = 0; i < width; ++i) token[i] *= rescale;
  }
}

}  // namespace

TextConditioner::TextConditioner(std::optional<text::ClipTokenizer> tokenizer, std::string missing, TextEncoding encoding)
    : tokenizer_(std::move(tokenizer)), missing_(std::move(missing)), encoding_(std::move(encoding)) {}

int64_t TextConditioner::context_width() const {
  int64_t width = 0;
  for (const TextTower& tower : encoding_.towers) width += tower.encoder->config().width;
  return width;
}

int64_t TextConditioner::pooled_width() const {
  for (const TextTower& tower : encoding_.towers) {
    if (tower.pooled) return tower.encoder->pooled_width();
  }
  return 0;
}

TextConditioner::Encoded TextConditioner::encode_ids(const std::vector<std::vector<float>>& ids, int64_t rows, int clip_skip,
                                                     const EncodeContext& context) const {
  const int64_t width = context_width();
  Encoded out;
  out.context.resize(static_cast<size_t>(rows * kPositions * width));
  int64_t offset = 0;
  for (size_t i = 0; i < encoding_.towers.size(); ++i) {
    const TextTower& tower = encoding_.towers[i];
    const models::ClipTextEncoder& encoder = *tower.encoder;
    const runtime::LayerAdapters* adapters = i < context.text_adapters.size() ? context.text_adapters[i] : nullptr;
    const auto model = encoder.build(rows, {layers_for(tower, clip_skip), tower.final_norm, tower.pooled, adapters});
    runtime::Executor exec(model->graph, context.accel, context.cache);
    exec.set_cancel_flag(context.cancel);
    exec.run({ids[i].data()});
    const float* hidden = exec.data(model->hidden_states);
    const int64_t tower_width = encoder.config().width;
    for (int64_t token = 0; token < rows * kPositions; ++token) {
      std::copy(hidden + token * tower_width, hidden + (token + 1) * tower_width, &out.context[static_cast<size_t>(token * width + offset)]);
    }
    offset += tower_width;
    if (tower.pooled) out.pooled = encoder.pooled(ids[i].data(), exec.data(model->pooling_source), rows);
  }
  return out;
}

std::vector<TextConditioner::Encoded> TextConditioner::encode_prompts(const std::vector<std::string>& prompts, int clip_skip,
                                                                      const EncodeContext& context) const {
  if (!tokenizer_) throw Error(missing_);
  const std::vector<TextTower>& towers = encoding_.towers;
  // Each encoder's chunks of each prompt, padded to the longest prompt's count.
  std::vector<std::vector<std::vector<text::TokenChunk>>> chunks(towers.size());
  size_t count = 0;
  for (size_t i = 0; i < towers.size(); ++i) {
    for (const std::string& prompt : prompts) {
      chunks[i].push_back(text::tokenize_prompt(*tokenizer_, prompt, towers[i].pad_id));
      count = std::max(count, chunks[i].back().size());
    }
  }
  std::vector<std::vector<float>> ids(towers.size());
  for (size_t i = 0; i < towers.size(); ++i) {
    for (std::vector<text::TokenChunk>& prompt : chunks[i]) {
      text::pad_to_chunk_count(prompt, count, *tokenizer_, towers[i].pad_id);
      for (const text::TokenChunk& chunk : prompt) ids[i].insert(ids[i].end(), chunk.ids.begin(), chunk.ids.end());
    }
  }
  const int64_t per_prompt = static_cast<int64_t>(count);
  const Encoded all = encode_ids(ids, static_cast<int64_t>(prompts.size()) * per_prompt, clip_skip, context);

  const int64_t width = context_width(), pooled = pooled_width();
  const int64_t prompt_floats = per_prompt * kPositions * width;
  std::vector<Encoded> out;
  for (size_t p = 0; p < prompts.size(); ++p) {
    Encoded& e = out.emplace_back();
    e.context.assign(all.context.begin() + static_cast<int64_t>(p) * prompt_floats,
                     all.context.begin() + static_cast<int64_t>(p + 1) * prompt_floats);
    int64_t offset = 0;
    for (size_t i = 0; i < towers.size(); ++i) {
      const int64_t tower_width = towers[i].encoder->config().width;
      for (int64_t c = 0; c < per_prompt; ++c) {
        apply_emphasis(e.context.data() + c * kPositions * width, width, offset, tower_width,
                       chunks[i][p][static_cast<size_t>(c)]);
      }
      offset += tower_width;
    }
    // The pooled vector of the prompt's first chunk, as A1111 and diffusers take it.
    const auto first = all.pooled.begin() + static_cast<int64_t>(p) * per_prompt * pooled;
    if (pooled) e.pooled.assign(first, first + pooled);
  }
  return out;
}

Conditioning TextConditioner::encode(const GenerationRequest& r, const EncodeContext& context) const {
  if (r.batch < 1) throw Error("nothing to generate: a batch of " + std::to_string(r.batch));
  if (!r.classes.empty() || !r.negative_classes.empty()) {
    throw Error("a text-to-image model takes a prompt, not classes");
  }
  const bool sizes_given = r.original_width || r.original_height || r.crop_top || r.crop_left || r.target_width || r.target_height;
  if (sizes_given && !encoding_.size_conditioning) {
    throw Error("original size, crop and target size condition SDXL models; this model does not read them");
  }
  if (r.original_width < 0 || r.original_height < 0 || r.crop_top < 0 || r.crop_left < 0 || r.target_width < 0 ||
      r.target_height < 0) {
    throw Error("original size, crop and target size must not be negative");
  }
  // The text encoder reads the prompt without its LoRA tags (the parameters
  // text keeps them, as A1111's does); the negative prompt's are text.
  const std::string prompt = parse_lora_tags(r.prompt).text;
  const bool zero_uncond = encoding_.zeros_for_empty_negative && r.negative_prompt.empty();
  std::vector<Encoded> z = encode_prompts(zero_uncond ? std::vector<std::string>{prompt}
                                                      : std::vector<std::string>{prompt, r.negative_prompt},
                                          r.clip_skip, context);
  if (zero_uncond) z.push_back({std::vector<float>(z[0].context.size()), std::vector<float>(z[0].pooled.size())});

  Conditioning c;
  c.images = r.batch;
  const auto per_image = [&](models::InputRole role, std::vector<int64_t> shape, const std::vector<float>& cond,
                             const std::vector<float>& uncond) {
    ConditioningInput input{role, std::move(shape), {}, {}};
    for (int64_t i = 0; i < r.batch; ++i) {
      input.cond.insert(input.cond.end(), cond.begin(), cond.end());
      input.uncond.insert(input.uncond.end(), uncond.begin(), uncond.end());
    }
    c.inputs.push_back(std::move(input));
  };
  const int64_t tokens = static_cast<int64_t>(z[0].context.size()) / context_width();
  per_image(models::InputRole::TextContext, {tokens, context_width()}, z[0].context, z[1].context);
  if (pooled_width()) per_image(models::InputRole::PooledText, {pooled_width()}, z[0].pooled, z[1].pooled);
  if (encoding_.size_conditioning) {
    const auto or_image = [](int64_t value, int64_t image) { return static_cast<float>(value ? value : image); };
    // SDXL's order: original height and width, crop top and left, target height and width.
    const std::vector<float> sizes = {or_image(r.original_height, context.height), or_image(r.original_width, context.width),
                                      static_cast<float>(r.crop_top), static_cast<float>(r.crop_left),
                                      or_image(r.target_height, context.height), or_image(r.target_width, context.width)};
    per_image(models::InputRole::ExtraVector, {6}, sizes, sizes);
  }

  std::string subject = r.prompt;
  if (!r.negative_prompt.empty()) subject += "\nNegative prompt: " + r.negative_prompt;
  c.subjects.assign(static_cast<size_t>(r.batch), subject);
  c.batch_subject = subject;
  const int skip = r.clip_skip > 0 ? r.clip_skip : encoding_.towers.front().default_clip_skip;
  if (skip > 1) c.settings = ", Clip skip: " + std::to_string(skip);
  return c;
}

}  // namespace tiledraw::pipeline
