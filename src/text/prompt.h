#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "text/clip_tokenizer.h"

// A prompt as the A1111 web UI reads it: attention weights written in
// brackets, BREAK, and prompts longer than CLIP's 77 positions cut into chunks
// that the text encoder encodes one by one (their contexts are concatenated).
namespace tiledraw::text {

// A piece of a prompt and its attention weight, or a BREAK.
struct PromptPiece {
  std::string text;
  double weight = 1.0;
  bool is_break = false;

  bool operator==(const PromptPiece&) const = default;
};

// The weighting syntax of the A1111 web UI:
//   (words)        weight x 1.1; nested brackets multiply: ((words)) is x 1.21
//   (words:1.3)    weight x 1.3 (any number: [+-]?[.0-9]+, spaces allowed around it)
//   [words]        weight x 1/1.1
//   \( \) \[ \] \\ the character itself; a backslash before anything else is dropped
//   BREAK          (upper case, a word of its own) ends the chunk; spaces around it go with it
// A bracket opened and never closed weighs everything after it; a closing
// bracket with none open, and a ':' that starts no weight, are text. Adjacent
// pieces of equal weight are joined; an empty prompt is one empty piece.
// Two choices where A1111 does something else: a weight that is not a number
// (":..)") stays text (A1111 fails), and BREAK inside brackets is still a
// BREAK (A1111 then feeds the word "break" with a negative weight).
std::vector<PromptPiece> parse_prompt_weights(std::string_view prompt);

inline constexpr size_t kChunkTokens = 75;                // prompt tokens per chunk
inline constexpr size_t kChunkLength = kChunkTokens + 2;  // with <|startoftext|> and <|endoftext|>
// When a chunk fills up and a comma came within this many tokens of its end,
// the chunk ends after the comma and the rest moves to the next (A1111's
// default "comma padding backtrack").
inline constexpr size_t kCommaBacktrack = 20;

struct TokenChunk {
  std::array<int32_t, kChunkLength> ids;
  std::array<float, kChunkLength> weights;  // 1 at the specials and the padding
};

// The prompt as chunks of 77 ids, as the A1111 web UI makes them: each piece
// encoded on its own and the ids packed 75 to a chunk (a BREAK or a comma
// near a full chunk's end starts the next one), each chunk padded to 75 with
// <|endoftext|> and wrapped in <|startoftext|> ... <|endoftext|>; then every
// position after the chunk's first <|endoftext|> holds `pad_id`. Always at
// least one chunk.
std::vector<TokenChunk> tokenize_prompt(const ClipTokenizer& tokenizer, std::string_view prompt, int32_t pad_id);

// Appends chunks of the empty prompt until there are `count`: the conditional
// and unconditional contexts must have as many chunks (A1111 pads the shorter
// one so).
void pad_to_chunk_count(std::vector<TokenChunk>& chunks, size_t count, const ClipTokenizer& tokenizer, int32_t pad_id);

}  // namespace tiledraw::text
