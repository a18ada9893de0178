#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "text/clip_tokenizer.h"
#include "tiledraw/error.h"
#include "tiledraw/safetensors.h"

// Where a CLIP vocabulary comes from. A user's single-file checkpoint carries
// none and the project ships none, so it is looked for in several places, and
// the caller is told which one it came from.
namespace tiledraw::text {

struct TokenizerSearch {
  std::string checkpoint;     // the model's file or folder; empty: none
  std::string explicit_path;  // a vocabulary the user named; empty: none
  ClipKind kind = ClipKind::OpenAiVitL14;  // which Hugging Face repository's cache may hold it
};

struct FoundTokenizer {
  ClipTokenizer tokenizer;
  // For people: "embedded in model.safetensors",
  // ".../snapshots/X/vocab.json + merges.txt (Hugging Face cache)".
  std::string source;
};

// No vocabulary anywhere; the message says which file to get and where to put it.
class TokenizerNotFound : public Error {
 public:
  using Error::Error;
};

// The first vocabulary found, in this order:
//  1. embedded in the checkpoint, when it is a safetensors file;
//  2. `explicit_path` (see load_clip_tokenizer); an error there is an error;
//  3. $TILEDRAW_TOKENIZER, the same way;
//  4. beside the checkpoint: for a folder its tokenizer/ or the folder itself,
//     for a file its folder or that folder's tokenizer/, holding vocab.json +
//     merges.txt or bpe_simple_vocab_16e6.txt.gz;
//  5. the Hugging Face cache ($HF_HUB_CACHE, else $HF_HOME/hub, else
//     $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub): a
//     snapshot of openai/clip-vit-large-patch14 (OpenAiVitL14) or
//     laion/CLIP-ViT-H-14-laion2B-s32B-b79K (OpenClipVitH14) holding vocab.json
//     and merges.txt, the one refs/main names first.
// Throws TokenizerNotFound when there is none.
FoundTokenizer find_clip_tokenizer(const TokenizerSearch& search);

// A vocabulary at `path`: OpenAI's bpe_simple_vocab_16e6.txt.gz (or the text
// uncompressed), Hugging Face's vocab.json or merges.txt (the other beside
// it), a folder holding either (or a diffusers folder, through its
// tokenizer/), or a safetensors file with an embedded tokenizer.
FoundTokenizer load_clip_tokenizer(const std::string& path);

// The embedded tokenizer: two U8 tensors holding ClipTokenizer::tokens_text()
// and merges_text() (docs/FORMAT.md).
inline constexpr std::string_view kEmbeddedTokensTensor = "tokenizer.vocab";
inline constexpr std::string_view kEmbeddedMergesTensor = "tokenizer.merges";

// The tokenizer a file embeds, if any; an error if it embeds a broken one.
std::optional<ClipTokenizer> read_embedded_tokenizer(const SafetensorsFile& file);
// The tensors that embed `tokenizer` in a file being written.
std::vector<TensorSource> embedded_tokenizer_tensors(const ClipTokenizer& tokenizer);

}  // namespace tiledraw::text
