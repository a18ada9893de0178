#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// The byte-pair-encoding tokenizer of OpenAI's CLIP, which every Stable
// Diffusion text encoder reads (SD 1.x, 2.x, XL, SD3, FLUX's CLIP). It gives
// the ids OpenAI's `SimpleTokenizer.encode` gives, with the text clean-up done
// without ftfy (see `clean_text`).
namespace tiledraw::text {

inline constexpr int32_t kClipStartOfText = 49406;  // <|startoftext|> in CLIP's vocabulary
inline constexpr int32_t kClipEndOfText = 49407;    // <|endoftext|>
inline constexpr int32_t kClipVocabularySize = 49408;
// OpenAI's file holds more merges than CLIP uses: the first 49152 - 256 - 2,
// which with the 512 byte symbols (alone and with </w>) and the two special
// tokens make kClipVocabularySize ids.
inline constexpr size_t kClipMergeCount = 48894;

// Which CLIP a model reads: it decides the padding and which Hugging Face
// repository may hold its vocabulary.
enum class ClipKind {
  OpenAiVitL14,    // Stable Diffusion 1.x: pads with <|endoftext|>
  OpenClipVitH14,  // Stable Diffusion 2.x: pads with 0
};
class ClipTokenizer;
// The id after a chunk's first <|endoftext|>: the vocabulary's own
// <|endoftext|> (49407 in CLIP's, another in a vocabulary trained elsewhere), or 0.
int32_t padding_id(ClipKind kind, const ClipTokenizer& tokenizer);

// The text clean-up before pre-tokenization, in this order:
//  1. ftfy's fixes that need no language model (ftfy itself also repairs
//     mojibake and decodes C1 controls as Windows-1252; those are not done):
//     - control characters removed: C0 except tab, line feed, form feed and
//       carriage return; DEL; C1 (U+0080-U+009F); U+206A-U+206F; the byte
//       order mark U+FEFF; U+FFF9-U+FFFC; U+1D173-U+1D17A; tags U+E0000-U+E007F;
//     - Latin ligatures expanded (NFKC of ĲĳŉǄǅǆǇǈǉǊǋǌǱǲǳﬀﬁﬂﬃﬄﬅﬆ);
//     - full- and half-width forms made standard width (NFKC of U+FF01-U+FFEF,
//       the ideographic space U+3000 to a space);
//     - curly quotes straightened: U+02BC and U+2018-U+201B to ', U+201C-U+201F to ";
//     - NFC normalization.
//  2. HTML character references unescaped, twice, as Python's html.unescape
//     does them: numeric ones (&#NN; and &#xHH;, the ';' optional; 0x80-0x9F
//     read as Windows-1252, 0, surrogates and values past U+10FFFF as U+FFFD,
//     controls and non-characters removed) and these named ones: amp lt gt quot
//     apos nbsp copy reg trade hellip mdash ndash lsquo rsquo ldquo rdquo laquo
//     raquo deg times divide middot bull euro pound yen cent sect para (also
//     AMP LT GT QUOT COPY REG). Those that HTML allows without ';' (amp lt gt
//     quot nbsp copy reg deg times divide middot sect para pound yen cent laquo
//     raquo and the upper-case ones) are recognised without it too, also as the
//     start of a longer name ("&ampx" is "&x"). Other names stay as written.
//  3. Runs of white space (the Unicode White_Space property) become one space;
//     leading and trailing space is removed.
//  4. Full Unicode lower case (SpecialCasing and the final sigma, as Python's
//     str.lower()).
// Bytes that are not UTF-8 are read as U+FFFD, as Python's decoder with
// errors="replace" does.
std::u32string clean_text(std::string_view utf8);

std::string to_utf8(std::u32string_view text);
// Invalid sequences become U+FFFD.
std::u32string from_utf8(std::string_view utf8);

class ClipTokenizer {
 public:
  // A vocabulary: every token's text by id (byte symbols as OpenAI's
  // bytes_to_unicode maps them, "</w>" ending a word) and the merges in rank
  // order. Every byte symbol (with and without "</w>"), both special tokens
  // and the result of every merge must be in `tokens`; `source` names where
  // they come from in errors.
  ClipTokenizer(std::vector<std::string> tokens, std::vector<std::pair<std::string, std::string>> merges,
                const std::string& source);

  // OpenAI's bpe_simple_vocab_16e6.txt (already decompressed): a header line,
  // then one merge per line; ids are the 256 byte symbols, the same with
  // "</w>", one per merge (the first kClipMergeCount), then the two specials.
  static ClipTokenizer from_openai_merges(std::string_view text, const std::string& source);
  // Hugging Face's vocab.json (token to id) and merges.txt ("#version" header,
  // then one merge per line; the first kClipMergeCount are used, as
  // transformers' CLIPTokenizer does).
  static ClipTokenizer from_hugging_face(std::string_view vocab_json, std::string_view merges_txt,
                                         const std::string& vocab_source, const std::string& merges_source);

  ClipTokenizer(ClipTokenizer&&) noexcept;
  ClipTokenizer& operator=(ClipTokenizer&&) noexcept;
  ~ClipTokenizer();

  // The ids of `text` after clean-up, without <|startoftext|> and
  // <|endoftext|> around it ("<|endoftext|>" written in the text is that
  // token, as in OpenAI's tokenizer). Thread-safe.
  std::vector<int32_t> encode(std::string_view text) const;

  int32_t start_of_text() const { return start_of_text_; }
  int32_t end_of_text() const { return end_of_text_; }
  size_t vocabulary_size() const { return tokens_.size(); }
  // The token's text, as the vocabulary spells it ("photo</w>").
  const std::string& token(int32_t id) const { return tokens_.at(static_cast<size_t>(id)); }

  // The vocabulary as text, for embedding in a model file (docs/FORMAT.md):
  // the tokens in id order, and the merges "a b" in rank order, one per line.
  std::string tokens_text() const;
  std::string merges_text() const;
  // The inverse of tokens_text() and merges_text().
  static ClipTokenizer from_text(std::string_view tokens_text, std::string_view merges_text, const std::string& source);

 private:
  struct Merge {
    int32_t rank;
    int32_t merged;
  };
  class MergeTable;
  struct WordCache;

  std::vector<int32_t> encode_word(std::string_view word_bytes) const;
  std::vector<int32_t> byte_pair_merge(std::string_view word_bytes) const;

  std::vector<std::string> tokens_;
  std::vector<std::pair<int32_t, int32_t>> merges_;  // by rank
  std::unique_ptr<MergeTable> merge_table_;
  int32_t byte_symbol_[256];       // the byte alone
  int32_t byte_symbol_end_[256];   // the byte ending a word ("</w>")
  int32_t start_of_text_ = -1;
  int32_t end_of_text_ = -1;
  std::unique_ptr<WordCache> cache_;
};

}  // namespace tiledraw::text
