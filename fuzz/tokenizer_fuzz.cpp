// The CLIP tokenizer and the A1111 prompt syntax on arbitrary bytes (not
// UTF-8, unbalanced brackets, huge weights, BREAKs, HTML references, special
// tokens, LoRA tags): tokenize_prompt either returns chunks that keep their
// word or throws tiledraw::Error, and so does parse_lora_tags with a shorter
// prompt and finite strengths; a crash, a hang or a broken chunk is a bug. Every
// chunk is 77 ids below CLIP's vocabulary size, <|startoftext|> first,
// holding an <|endoftext|> after which only the padding id follows.
//
// Input: the prompt, all of it; an odd length pads with 0 (SD 2.x), an even
// one with <|endoftext|> (SD 1.x). The vocabulary is OpenAI's, read once from
// ../shared/data/clip beside the checkout.

#include <cmath>
#include <string_view>

#include "fuzz_util.h"
#include "pipeline/lora_prompt.h"
#include "text/prompt.h"
#include "text/tokenizer_source.h"

namespace {

using namespace tiledraw::text;

const ClipTokenizer& clip() {
  static const ClipTokenizer tokenizer = [] {
    try {
      return load_clip_tokenizer(TILEDRAW_CLIP_VOCABULARY).tokenizer;
    } catch (const tiledraw::Error& e) {
      std::fprintf(stderr, "fuzz: %s\n", e.what());
      fuzz::fail("the CLIP vocabulary is needed beside the checkout (../shared/data/clip)");
    }
  }();
  return tokenizer;
}

void check_chunk(const TokenChunk& chunk, int32_t pad_id) {
  fuzz::check(chunk.ids[0] == kClipStartOfText, "a chunk does not start with <|startoftext|>");
  size_t end = 1;
  while (end < chunk.ids.size() && chunk.ids[end] != kClipEndOfText) ++end;
  fuzz::check(end < chunk.ids.size(), "a chunk holds no <|endoftext|>");
  for (size_t i = 0; i < chunk.ids.size(); ++i) {
    fuzz::check(chunk.ids[i] >= 0 && chunk.ids[i] < kClipVocabularySize, "an id outside CLIP's vocabulary");
    fuzz::check(i <= end || chunk.ids[i] == pad_id, "a chunk is not padded after its first <|endoftext|>");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view prompt(reinterpret_cast<const char*>(data), size);
  const int32_t pad_id = size % 2 ? 0 : kClipEndOfText;
  try {
    std::vector<TokenChunk> chunks = tokenize_prompt(clip(), prompt, pad_id);
    fuzz::check(!chunks.empty(), "no chunk");
    for (const TokenChunk& chunk : chunks) check_chunk(chunk, pad_id);
    const size_t count = chunks.size();
    pad_to_chunk_count(chunks, count + 1, clip(), pad_id);
    fuzz::check(chunks.size() == count + 1, "padding to a chunk count missed it");
    check_chunk(chunks.back(), pad_id);
    for (int32_t id : clip().encode(prompt)) {
      fuzz::check(id >= 0 && id < kClipVocabularySize, "encode gave an id outside CLIP's vocabulary");
    }
    if (fuzz::verbose()) std::fprintf(stderr, "%zu chunks\n", count);
  } catch (const tiledraw::Error& e) {
    fuzz::refused(e);
  }
  try {
    const tiledraw::pipeline::TaggedPrompt tagged = tiledraw::pipeline::parse_lora_tags(prompt);
    fuzz::check(tagged.tags.empty() ? tagged.text.size() <= prompt.size() : tagged.text.size() < prompt.size(),
                "removing LoRA tags did not shorten the prompt");
    for (const tiledraw::pipeline::LoraTag& tag : tagged.tags) {
      fuzz::check(!tag.name.empty(), "a LoRA tag without a name");
      fuzz::check(std::isfinite(tag.text_strength) && std::isfinite(tag.unet_strength), "a LoRA strength not finite");
    }
  } catch (const tiledraw::Error& e) {
    fuzz::refused(e);
  }
  return 0;
}
