#include "text/prompt.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <optional>

namespace tiledraw::text {
namespace {

constexpr double kRoundBracketWeight = 1.1;
constexpr double kSquareBracketWeight = 1 / 1.1;  // multiplied by, as A1111 does (not divided by 1.1)

// Python's str.isspace(), which the web UI's regular expressions use for \s.
bool is_python_space(char32_t c) {
  const auto ch = static_cast<UChar32>(c);
  const UCharDirection direction = u_charDirection(ch);
  return u_charType(ch) == U_SPACE_SEPARATOR || direction == U_WHITE_SPACE_NEUTRAL ||
         direction == U_BLOCK_SEPARATOR || direction == U_SEGMENT_SEPARATOR;
}

// Python's \w: letters, numbers and the underscore.
bool is_python_word(char32_t c) {
  return c == U'_' || (U_GET_GC_MASK(static_cast<UChar32>(c)) & (U_GC_L_MASK | U_GC_N_MASK));
}

bool is_decimal_digit(char32_t c) { return u_charType(static_cast<UChar32>(c)) == U_DECIMAL_DIGIT_NUMBER; }

// Python's float() of [+-]?[.\d]+ (any script's decimal digits); nothing when
// it is not a number ("." or "1.2.3").
std::optional<double> parse_weight(std::u32string_view text) {
  std::string ascii;
  for (char32_t c : text) {
    ascii += c == U'.' || c == U'+' || c == U'-' ? static_cast<char>(c)
                                                   : static_cast<char>('0' + u_charDigitValue(static_cast<UChar32>(c)));
  }
  const bool negative = ascii[0] == '-';
  const size_t start = ascii[0] == '-' || ascii[0] == '+' ? 1 : 0;
  double value = 0;
  const char* end = ascii.data() + ascii.size();
  const auto [stop, error] = std::from_chars(ascii.data() + start, end, value, std::chars_format::fixed);
  if (stop != end || (error != std::errc() && error != std::errc::result_out_of_range)) return std::nullopt;
  if (error == std::errc::result_out_of_range) value = std::numeric_limits<double>::infinity();
  return negative ? -value : value;
}

// The length of ":\s*([+-]?[.\d]+)\s*\)" at `at` (0 when it does not match)
// and the number's text.
size_t weight_suffix(std::u32string_view text, size_t at, std::u32string_view& number) {
  size_t i = at + 1;
  while (i < text.size() && is_python_space(text[i])) ++i;
  const size_t begin = i;
  if (i < text.size() && (text[i] == U'+' || text[i] == U'-')) ++i;
  const size_t digits = i;
  while (i < text.size() && (text[i] == U'.' || is_decimal_digit(text[i]))) ++i;
  if (i == digits) return 0;
  number = text.substr(begin, i - begin);
  while (i < text.size() && is_python_space(text[i])) ++i;
  if (i >= text.size() || text[i] != U')') return 0;
  return i + 1 - at;
}

class PromptParser {
 public:
  std::vector<PromptPiece> parse(std::u32string_view text) {
    for (size_t i = 0; i < text.size();) {
      const char32_t c = text[i];
      if (c == U'\\') {
        const bool escape = i + 1 < text.size() && std::u32string_view(U"()[]\\").find(text[i + 1]) != std::u32string_view::npos;
        add_text(escape ? text.substr(i + 1, 1) : std::u32string_view());
        i += escape ? 2 : 1;
      } else if (c == U'(') {
        round_.push_back(pieces_.size());
        ++i;
      } else if (c == U'[') {
        square_.push_back(pieces_.size());
        ++i;
      } else if (c == U':') {
        std::u32string_view number;
        const size_t length = weight_suffix(text, i, number);
        const std::optional<double> weight = length > 0 ? parse_weight(number) : std::nullopt;
        if (weight && !round_.empty()) {
          close(round_, *weight);
        } else {
          add_text_with_breaks(text.substr(i, std::max<size_t>(length, 1)));
        }
        i += std::max<size_t>(length, 1);
      } else if (c == U')' && !round_.empty()) {
        close(round_, kRoundBracketWeight);
        ++i;
      } else if (c == U']' && !square_.empty()) {
        close(square_, kSquareBracketWeight);
        ++i;
      } else if (c == U')' || c == U']') {
        add_text_with_breaks(text.substr(i, 1));
        ++i;
      } else {
        const size_t end = std::min(text.find_first_of(U"\\()[]:", i), text.size());
        add_text_with_breaks(text.substr(i, end - i));
        i = end;
      }
    }
    // Brackets left open weigh everything after them: all round ones first.
    for (size_t start : round_) multiply_from(start, kRoundBracketWeight);
    for (size_t start : square_) multiply_from(start, kSquareBracketWeight);
    if (pieces_.empty()) pieces_.push_back({});
    return join_equal_weights();
  }

 private:
  void add_text(std::u32string_view text) { pieces_.push_back({to_utf8(text), 1.0, false}); }

  // Splits at \s*\bBREAK\b\s*.
  void add_text_with_breaks(std::u32string_view text) {
    constexpr std::u32string_view kBreak = U"BREAK";
    size_t piece_begin = 0;
    for (size_t at = text.find(kBreak); at != std::u32string_view::npos; at = text.find(kBreak, at + 1)) {
      const size_t after = at + kBreak.size();
      const bool boundary_before = at == 0 || !is_python_word(text[at - 1]);
      const bool boundary_after = after == text.size() || !is_python_word(text[after]);
      if (at < piece_begin || !boundary_before || !boundary_after) continue;
      size_t begin = at, end = after;
      while (begin > piece_begin && is_python_space(text[begin - 1])) --begin;
      while (end < text.size() && is_python_space(text[end])) ++end;
      add_text(text.substr(piece_begin, begin - piece_begin));
      pieces_.push_back({"BREAK", 1.0, true});
      piece_begin = end;
    }
    add_text(text.substr(piece_begin));
  }

  void multiply_from(size_t start, double factor) {
    for (size_t p = start; p < pieces_.size(); ++p) pieces_[p].weight *= factor;
  }

  void close(std::vector<size_t>& open, double factor) {
    multiply_from(open.back(), factor);
    open.pop_back();
  }

  std::vector<PromptPiece> join_equal_weights() {
    std::vector<PromptPiece> joined;
    for (PromptPiece& piece : pieces_) {
      if (!joined.empty() && !piece.is_break && !joined.back().is_break && joined.back().weight == piece.weight) {
        joined.back().text += piece.text;
      } else {
        joined.push_back(std::move(piece));
      }
    }
    return joined;
  }

  std::vector<PromptPiece> pieces_;
  std::vector<size_t> round_, square_;  // where each open bracket's pieces start
};

class ChunkBuilder {
 public:
  ChunkBuilder(const ClipTokenizer& tokenizer, int32_t pad_id) : tokenizer_(tokenizer), pad_id_(pad_id) {
    const std::vector<int32_t> comma = tokenizer.encode(",");
    if (comma.size() == 1) comma_id_ = comma[0];
  }

  void add(const PromptPiece& piece) {
    if (piece.is_break) {
      finish_chunk();
      return;
    }
    for (int32_t id : tokenizer_.encode(piece.text)) {
      if (id == comma_id_) {
        last_comma_ = ids_.size();
      } else if (ids_.size() == kChunkTokens && last_comma_ != kNoComma && kChunkTokens - last_comma_ <= kCommaBacktrack) {
        // End the chunk after the comma; what followed it starts the next.
        const auto cut = static_cast<std::ptrdiff_t>(last_comma_ + 1);
        std::vector<int32_t> moved_ids(ids_.begin() + cut, ids_.end());
        std::vector<float> moved_weights(weights_.begin() + cut, weights_.end());
        ids_.resize(static_cast<size_t>(cut));
        weights_.resize(static_cast<size_t>(cut));
        finish_chunk();
        ids_ = std::move(moved_ids);
        weights_ = std::move(moved_weights);
      }
      if (ids_.size() == kChunkTokens) finish_chunk();
      ids_.push_back(id);
      weights_.push_back(static_cast<float>(piece.weight));
    }
  }

  std::vector<TokenChunk> finish() {
    if (!ids_.empty() || chunks_.empty()) finish_chunk();
    return std::move(chunks_);
  }

 private:
  void finish_chunk() {
    TokenChunk chunk;
    chunk.ids.fill(tokenizer_.end_of_text());
    chunk.weights.fill(1.0f);
    chunk.ids[0] = tokenizer_.start_of_text();
    std::copy(ids_.begin(), ids_.end(), chunk.ids.begin() + 1);
    std::copy(weights_.begin(), weights_.end(), chunk.weights.begin() + 1);
    const auto first_end = std::find(chunk.ids.begin(), chunk.ids.end(), tokenizer_.end_of_text());
    std::fill(first_end + 1, chunk.ids.end(), pad_id_);
    chunks_.push_back(chunk);
    ids_.clear();
    weights_.clear();
    last_comma_ = kNoComma;
  }

  const ClipTokenizer& tokenizer_;
  int32_t pad_id_;
  std::optional<int32_t> comma_id_;
  std::vector<int32_t> ids_;  // of the chunk being filled
  std::vector<float> weights_;
  static constexpr size_t kNoComma = SIZE_MAX;
  size_t last_comma_ = kNoComma;  // the last comma's position in the chunk being filled
  std::vector<TokenChunk> chunks_;
};

}  // namespace

std::vector<PromptPiece> parse_prompt_weights(std::string_view prompt) { return PromptParser().parse(from_utf8(prompt)); }

std::vector<TokenChunk> tokenize_prompt(const ClipTokenizer& tokenizer, std::string_view prompt, int32_t pad_id) {
  ChunkBuilder builder(tokenizer, pad_id);
  for (const PromptPiece& piece : parse_prompt_weights(prompt)) builder.add(piece);
  return builder.finish();
}

void pad_to_chunk_count(std::vector<TokenChunk>& chunks, size_t count, const ClipTokenizer& tokenizer, int32_t pad_id) {
  if (chunks.size() >= count) return;
  const TokenChunk empty = tokenize_prompt(tokenizer, "", pad_id).front();
  chunks.resize(count, empty);
}

}  // namespace tiledraw::text
