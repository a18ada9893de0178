#include "text/clip_tokenizer.h"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <array>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <utility>

#include "tiledraw/error.h"

namespace tiledraw::text {
namespace {

constexpr char32_t kReplacement = 0xFFFD;

// --- UTF-8 and ICU strings ----------------------------------------------------

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

icu::UnicodeString to_icu(std::u32string_view text) {
  return icu::UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(text.data()),
                                       static_cast<int32_t>(text.size()));
}

std::u32string from_icu(const icu::UnicodeString& text) {
  std::u32string out;
  out.reserve(static_cast<size_t>(text.length()));
  for (int32_t i = 0; i < text.length(); i = text.moveIndex32(i, 1)) out += static_cast<char32_t>(text.char32At(i));
  return out;
}

const icu::Normalizer2& normalizer(bool compatibility) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n =
      compatibility ? icu::Normalizer2::getNFKCInstance(status) : icu::Normalizer2::getNFCInstance(status);
  if (U_FAILURE(status)) throw Error(std::string("ICU has no normalization data: ") + u_errorName(status));
  return *n;
}

std::u32string normalize(const icu::Normalizer2& n, std::u32string_view text) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::UnicodeString out = n.normalize(to_icu(text), status);
  if (U_FAILURE(status)) throw Error(std::string("Unicode normalization failed: ") + u_errorName(status));
  return from_icu(out);
}

// --- ftfy's fixes -------------------------------------------------------------

bool is_removed_control(char32_t c) {
  return (c < 0x20 && c != U'\t' && c != U'\n' && c != U'\f' && c != U'\r') || (c >= 0x7F && c <= 0x9F) ||
         (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC) ||
         (c >= 0x1D173 && c <= 0x1D17A) || (c >= 0xE0000 && c <= 0xE007F);
}

constexpr std::u32string_view kLatinLigatures = U"ĲĳŉǄǅǆǇǈǉǊǋǌǱǲǳﬀﬁﬂﬃﬄﬅﬆ";

bool is_width_variant(char32_t c) { return c == 0x3000 || (c >= 0xFF01 && c <= 0xFFEF); }

std::u32string ftfy_fixes(std::u32string_view text) {
  const icu::Normalizer2& nfkc = normalizer(true);
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (is_removed_control(c)) continue;
    if (c == 0x3000) {
      out += U' ';
    } else if (kLatinLigatures.find(c) != std::u32string_view::npos || is_width_variant(c)) {
      out += normalize(nfkc, std::u32string_view(&c, 1));
    } else if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) {
      out += U'\'';
    } else if (c >= 0x201C && c <= 0x201F) {
      out += U'"';
    } else {
      out += c;
    }
  }
  return normalize(normalizer(false), out);
}

// --- HTML character references ------------------------------------------------

struct NamedReference {
  std::u32string_view name;
  char32_t value;
  bool semicolon_optional;  // a legacy name HTML accepts without ';'
};

constexpr NamedReference kNamedReferences[] = {
    {U"amp", U'&', true},      {U"lt", U'<', true},        {U"gt", U'>', true},        {U"quot", U'"', true},
    {U"AMP", U'&', true},      {U"LT", U'<', true},        {U"GT", U'>', true},        {U"QUOT", U'"', true},
    {U"apos", U'\'', false},   {U"nbsp", 0xA0, true},      {U"copy", 0xA9, true},      {U"COPY", 0xA9, true},
    {U"reg", 0xAE, true},      {U"REG", 0xAE, true},       {U"trade", 0x2122, false},  {U"hellip", 0x2026, false},
    {U"mdash", 0x2014, false}, {U"ndash", 0x2013, false},  {U"lsquo", 0x2018, false},  {U"rsquo", 0x2019, false},
    {U"ldquo", 0x201C, false}, {U"rdquo", 0x201D, false},  {U"laquo", 0xAB, true},     {U"raquo", 0xBB, true},
    {U"deg", 0xB0, true},      {U"times", 0xD7, true},     {U"divide", 0xF7, true},    {U"middot", 0xB7, true},
    {U"bull", 0x2022, false},  {U"euro", 0x20AC, false},   {U"pound", 0xA3, true},     {U"yen", 0xA5, true},
    {U"cent", 0xA2, true},     {U"sect", 0xA7, true},      {U"para", 0xB6, true},
};

const NamedReference* find_named_reference(std::u32string_view name, bool with_semicolon) {
  for (const NamedReference& r : kNamedReferences) {
    if (r.name == name && (with_semicolon || r.semicolon_optional)) return &r;
  }
  return nullptr;
}

// Windows-1252 for the C1 range, as HTML reads &#128; to &#159;.
constexpr char32_t kWindows1252C1[32] = {
    0x20AC, 0x81,   0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x8D,   0x017D, 0x8F,   0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D,   0x017E, 0x0178};

// The text a numeric reference stands for (possibly none).
std::u32string numeric_reference_value(uint64_t value) {
  if (value == 0) return {kReplacement};
  if (value == 0x0D) return U"\r";
  if (value >= 0x80 && value <= 0x9F) return {kWindows1252C1[value - 0x80]};
  if ((value >= 0xD800 && value <= 0xDFFF) || value > 0x10FFFF) return {kReplacement};
  const bool control = (value >= 0x01 && value <= 0x08) || value == 0x0B || (value >= 0x0E && value <= 0x1F) ||
                       value == 0x7F;
  const bool noncharacter = (value >= 0xFDD0 && value <= 0xFDEF) || (value & 0xFFFE) == 0xFFFE;
  if (control || noncharacter) return {};
  return {static_cast<char32_t>(value)};
}

bool is_ascii_digit(char32_t c, int base) {
  return (c >= U'0' && c <= U'9') || (base == 16 && ((c >= U'a' && c <= U'f') || (c >= U'A' && c <= U'F')));
}

// Replaces the reference at the start of `rest` (just after '&'); returns how
// many characters it used, 0 when there is none.
size_t unescape_reference(std::u32string_view rest, std::u32string& out) {
  if (!rest.empty() && rest[0] == U'#') {
    const bool hex = rest.size() > 1 && (rest[1] == U'x' || rest[1] == U'X');
    const int base = hex ? 16 : 10;
    size_t end = hex ? 2 : 1;
    uint64_t value = 0;
    while (end < rest.size() && is_ascii_digit(rest[end], base)) {
      const char32_t c = rest[end++];
      const uint64_t digit = c <= U'9' ? c - U'0' : (c | 0x20) - U'a' + 10;
      value = std::min<uint64_t>(value * static_cast<uint64_t>(base) + digit, 0x7FFFFFFF);  // past U+10FFFF is all the same
    }
    if (end == (hex ? 2u : 1u)) return 0;
    if (end < rest.size() && rest[end] == U';') ++end;
    out += numeric_reference_value(value);
    return end;
  }
  constexpr std::u32string_view kNameStops = U"\t\n\f <&#;";
  size_t length = 0;
  while (length < rest.size() && length < 32 && kNameStops.find(rest[length]) == std::u32string_view::npos) ++length;
  if (length == 0) return 0;
  const bool semicolon = length < rest.size() && rest[length] == U';';
  if (const NamedReference* r = find_named_reference(rest.substr(0, length), semicolon)) {
    out += r->value;
    return length + semicolon;
  }
  // The longest legacy name the run starts with ("&ampx" is "&x").
  for (size_t prefix = length + semicolon - 1; prefix >= 2; --prefix) {
    if (const NamedReference* r = find_named_reference(rest.substr(0, prefix), false)) {
      out += r->value;
      return prefix;
    }
  }
  return 0;
}

std::u32string unescape_html(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text[i] == U'&') {
      const size_t used = unescape_reference(text.substr(i + 1), out);
      if (used > 0) {
        i += 1 + used;
        continue;
      }
    }
    out += text[i++];
  }
  return out;
}

// --- white space and case -----------------------------------------------------

bool is_white_space(char32_t c) { return u_isUWhiteSpace(static_cast<UChar32>(c)); }

std::u32string collapse_white_space(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  bool pending_space = false;
  for (char32_t c : text) {
    if (is_white_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += U' ';
    pending_space = false;
    out += c;
  }
  return out;
}

std::u32string lower_case(std::u32string_view text) {
  icu::UnicodeString s = to_icu(text);
  s.toLower(icu::Locale::getRoot());
  return from_icu(s);
}

// --- pre-tokenization ---------------------------------------------------------

bool is_letter(char32_t c) { return U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_L_MASK; }
bool is_number(char32_t c) { return U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_N_MASK; }

// The one mark that case-folds to a letter (U+0345 to iota): the
// case-insensitive [^\s\p{L}\p{N}] refuses it and [\p{L}] does not take it,
// so it matches no alternative and is dropped like white space.
bool folds_to_a_letter(char32_t c) { return c == 0x0345; }

// `pattern` (lower case ASCII) at `at`, as the pattern's case-insensitive
// match sees it: 's' also matches the long s U+017F, which folds to it.
bool matches_at(std::u32string_view text, size_t at, std::u32string_view pattern) {
  if (text.size() - at < pattern.size()) return false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char32_t c = text[at + i];
    if (c != pattern[i] && !(pattern[i] == U's' && c == 0x017F)) return false;
  }
  return true;
}

constexpr std::u32string_view kStartOfText = U"<|startoftext|>";
constexpr std::u32string_view kEndOfText = U"<|endoftext|>";
constexpr std::u32string_view kContractions[] = {U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"};

// The length of the piece the pattern
//   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// matches at `at`, trying its alternatives in order; 0 at white space.
size_t piece_length(std::u32string_view text, size_t at) {
  for (std::u32string_view literal : {kStartOfText, kEndOfText}) {
    if (matches_at(text, at, literal)) return literal.size();
  }
  for (std::u32string_view contraction : kContractions) {
    if (matches_at(text, at, contraction)) return contraction.size();
  }
  size_t end = at;
  if (is_letter(text[at])) {
    while (end < text.size() && is_letter(text[end])) ++end;
    return end - at;
  }
  if (is_number(text[at])) return 1;
  while (end < text.size() && !is_white_space(text[end]) && !is_letter(text[end]) && !is_number(text[end]) &&
         !folds_to_a_letter(text[end])) {
    ++end;
  }
  return end - at;
}

// --- OpenAI's byte symbols ----------------------------------------------------

// bytes_to_unicode: printable bytes stand for themselves, the other 68 for
// U+0100 on, in byte order. Ids follow the printable bytes first.
struct ByteSymbols {
  std::array<std::string, 256> text;  // UTF-8 of each byte's symbol
  std::array<uint8_t, 256> id_order;  // bytes in the order of their ids
};

const ByteSymbols& byte_symbols() {
  static const ByteSymbols symbols = [] {
    ByteSymbols s;
    const auto printable = [](int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174); };
    size_t next = 0;
    for (int b = 0; b < 256; ++b) {
      if (printable(b)) s.id_order[next++] = static_cast<uint8_t>(b);
    }
    char32_t extra = 256;
    for (int b = 0; b < 256; ++b) {
      const char32_t symbol = printable(b) ? static_cast<char32_t>(b) : extra++;
      append_utf8(s.text[static_cast<size_t>(b)], symbol);
      if (!printable(b)) s.id_order[next++] = static_cast<uint8_t>(b);
    }
    return s;
  }();
  return symbols;
}

constexpr std::string_view kEndOfWord = "</w>";

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  for (size_t begin = 0; begin <= text.size();) {
    const size_t end = std::min(text.find('\n', begin), text.size());
    lines.push_back(text.substr(begin, end - begin));
    begin = end + 1;
  }
  return lines;
}

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

// "a b" as its two symbols; a line of other than two words is an error.
std::pair<std::string, std::string> parse_merge(std::string_view line, const std::string& source, size_t line_number) {
  std::vector<std::string_view> words;
  for (size_t i = 0; i < line.size();) {
    while (i < line.size() && is_ascii_space(line[i])) ++i;
    const size_t begin = i;
    while (i < line.size() && !is_ascii_space(line[i])) ++i;
    if (i > begin) words.push_back(line.substr(begin, i - begin));
  }
  if (words.size() != 2) {
    throw Error(source + ": line " + std::to_string(line_number) + " is not a merge of two symbols");
  }
  return {std::string(words[0]), std::string(words[1])};
}

}  // namespace

int32_t padding_id(ClipKind kind, const ClipTokenizer& tokenizer) {
  return kind == ClipKind::OpenClipVitH14 ? 0 : tokenizer.end_of_text();
}

std::u32string from_utf8(std::string_view utf8) {
  std::u32string out;
  out.reserve(utf8.size());
  const auto byte = [&](size_t at) { return at < utf8.size() ? static_cast<unsigned char>(utf8[at]) : 0u; };
  for (size_t i = 0; i < utf8.size();) {
    const unsigned lead = byte(i);
    if (lead < 0x80) {
      out += static_cast<char32_t>(lead);
      ++i;
      continue;
    }
    size_t length = 0;
    unsigned low = 0x80, high = 0xBF;  // the range of the second byte
    char32_t value = 0;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2, value = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3, value = lead & 0x0F;
      if (lead == 0xE0) low = 0xA0;
      if (lead == 0xED) high = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4, value = lead & 0x07;
      if (lead == 0xF0) low = 0x90;
      if (lead == 0xF4) high = 0x8F;
    }
    // A maximal invalid prefix becomes one U+FFFD, as Python's decoder does.
    size_t used = 1;
    for (; length > 0 && used < length; ++used) {
      const unsigned next = byte(i + used);
      if (next < (used == 1 ? low : 0x80) || next > (used == 1 ? high : 0xBF)) break;  // 0 past the end
      value = (value << 6) | (next & 0x3F);
    }
    out += length > 0 && used == length ? value : kReplacement;
    i += used;
  }
  return out;
}

std::string to_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) append_utf8(out, c);
  return out;
}

std::u32string clean_text(std::string_view utf8) {
  std::u32string text = ftfy_fixes(from_utf8(utf8));
  if (text.find(U'&') != std::u32string::npos) text = unescape_html(unescape_html(text));
  return lower_case(collapse_white_space(text));
}

// --- the tokenizer ------------------------------------------------------------

namespace {

// Open addressing with linear probing in a power-of-two table at most half
// full: loading does some 200,000 lookups and the BPE loop one per symbol
// pair, and a node-based map spends them on cache misses.
template <typename Key, typename Value, typename Hash>
class FlatMap {
 public:
  explicit FlatMap(size_t expected = 0) { resize(expected); }

  void insert_or_assign(const Key& key, const Value& value) {
    if (2 * (size_ + 1) > slots_.size()) resize(2 * (size_ + 1));
    Slot& slot = slots_[probe(key)];
    if (!slot.used) ++size_;
    slot = {key, value, true};
  }
  const Value* find(const Key& key) const {
    const Slot& slot = slots_[probe(key)];
    return slot.used ? &slot.value : nullptr;
  }

 private:
  struct Slot {
    Key key{};
    Value value{};
    bool used = false;
  };
  // The key's slot, or the empty one where it would go.
  size_t probe(const Key& key) const {
    size_t at = Hash()(key) & (slots_.size() - 1);
    while (slots_[at].used && !(slots_[at].key == key)) at = (at + 1) & (slots_.size() - 1);
    return at;
  }
  void resize(size_t expected) {
    size_t capacity = 16;
    while (capacity < 2 * expected) capacity *= 2;
    std::vector<Slot> old = std::exchange(slots_, std::vector<Slot>(capacity));
    size_ = 0;
    for (const Slot& slot : old) {
      if (slot.used) insert_or_assign(slot.key, slot.value);
    }
  }
  std::vector<Slot> slots_;
  size_t size_ = 0;
};

// A pair of ids as one 64-bit key, spread by a multiplicative hash.
struct PairHash {
  size_t operator()(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> 32); }
};

}  // namespace

// (first id, second id) to the merge.
class ClipTokenizer::MergeTable {
 public:
  explicit MergeTable(size_t merges) : map_(merges) {}
  void insert(int32_t first, int32_t second, Merge merge) { map_.insert_or_assign(key(first, second), merge); }
  const Merge* find(int32_t first, int32_t second) const { return map_.find(key(first, second)); }

 private:
  static uint64_t key(int32_t first, int32_t second) {
    return static_cast<uint64_t>(static_cast<uint32_t>(first)) << 32 | static_cast<uint32_t>(second);
  }
  FlatMap<uint64_t, Merge, PairHash> map_;
};

struct ClipTokenizer::WordCache {
  // Prompts repeat words; past this many the cache starts over, so that a
  // long-running process does not grow without bound.
  static constexpr size_t kMaxWords = 1 << 16;
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<int32_t>> words;
};

ClipTokenizer::ClipTokenizer(std::vector<std::string> tokens, std::vector<std::pair<std::string, std::string>> merges,
                             const std::string& source)
    : tokens_(std::move(tokens)),
      merge_table_(std::make_unique<MergeTable>(merges.size())),
      cache_(std::make_unique<WordCache>()) {
  if (tokens_.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    throw Error(source + ": too many tokens");
  }
  // ICU makes its normalizers on first use, synchronised by atomics inside
  // libicuuc, which ThreadSanitizer cannot see: made here, at load, before any
  // generation thread encodes a prompt, they are only ever read concurrently.
  normalizer(true);
  normalizer(false);
  FlatMap<std::string_view, int32_t, std::hash<std::string_view>> ids(tokens_.size());
  for (size_t id = 0; id < tokens_.size(); ++id) {
    // Merges are written "a b", one per line, so no symbol can hold either.
    if (tokens_[id].empty() || tokens_[id].find_first_of(" \n") != std::string::npos) {
      throw Error(source + ": token " + std::to_string(id) + " is empty or holds a space or line break");
    }
    ids.insert_or_assign(tokens_[id], static_cast<int32_t>(id));  // a later twin wins, as in a Python dict
  }
  // `use` says what needs the token, for the message; called only then.
  const auto id_of = [&](std::string_view token, const auto& use) {
    const int32_t* id = ids.find(token);
    if (!id) throw Error(source + ": " + use() + " '" + std::string(token) + "', which is not in the vocabulary");
    return *id;
  };

  const ByteSymbols& symbols = byte_symbols();
  for (size_t b = 0; b < 256; ++b) {
    const auto byte_use = [b] { return "byte " + std::to_string(b) + " needs the symbol"; };
    byte_symbol_[b] = id_of(symbols.text[b], byte_use);
    byte_symbol_end_[b] = id_of(symbols.text[b] + std::string(kEndOfWord), byte_use);
  }
  const auto special_use = [] { return std::string("CLIP needs the special token"); };
  start_of_text_ = id_of(to_utf8(kStartOfText), special_use);
  end_of_text_ = id_of(to_utf8(kEndOfText), special_use);

  merges_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [first, second] = merges[rank];
    const auto merge_use = [rank](const char* verb) {
      return [rank, verb] { return "merge " + std::to_string(rank + 1) + " " + verb; };
    };
    const int32_t a = id_of(first, merge_use("uses")), b = id_of(second, merge_use("uses"));
    joined.assign(first).append(second);
    const int32_t merged = id_of(joined, merge_use("makes"));
    merges_.emplace_back(a, b);
    merge_table_->insert(a, b, {static_cast<int32_t>(rank), merged});  // a later twin wins
  }
}

ClipTokenizer::ClipTokenizer(ClipTokenizer&&) noexcept = default;
ClipTokenizer& ClipTokenizer::operator=(ClipTokenizer&&) noexcept = default;
ClipTokenizer::~ClipTokenizer() = default;

ClipTokenizer ClipTokenizer::from_openai_merges(std::string_view text, const std::string& source) {
  std::vector<std::string_view> lines = split_lines(text);
  if (lines.back().empty()) lines.pop_back();  // the last line's end
  if (lines.size() < kClipMergeCount + 1) {
    throw Error(source + ": holds " + std::to_string(lines.empty() ? 0 : lines.size() - 1) +
                " merges after its header; CLIP's vocabulary needs " + std::to_string(kClipMergeCount) +
                " (is the file truncated?)");
  }
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(kClipMergeCount);
  for (size_t line = 1; line <= kClipMergeCount; ++line) merges.push_back(parse_merge(lines[line], source, line + 1));

  const ByteSymbols& symbols = byte_symbols();
  std::vector<std::string> tokens;
  tokens.reserve(512 + merges.size() + 2);
  for (uint8_t b : symbols.id_order) tokens.push_back(symbols.text[b]);
  for (uint8_t b : symbols.id_order) tokens.push_back(symbols.text[b] + std::string(kEndOfWord));
  for (const auto& [first, second] : merges) tokens.push_back(first + second);
  tokens.push_back(to_utf8(kStartOfText));
  tokens.push_back(to_utf8(kEndOfText));
  return ClipTokenizer(std::move(tokens), std::move(merges), source);
}

ClipTokenizer ClipTokenizer::from_hugging_face(std::string_view vocab_json, std::string_view merges_txt,
                                               const std::string& vocab_source, const std::string& merges_source) {
  const nlohmann::json vocab = nlohmann::json::parse(vocab_json, nullptr, false);
  if (vocab.is_discarded() || !vocab.is_object()) throw Error(vocab_source + ": not a JSON object of tokens to ids");
  constexpr int64_t kMaxId = 1 << 24;  // far more than any BPE vocabulary
  std::vector<std::string> tokens(vocab.size());
  std::vector<bool> taken(vocab.size());
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxId) {
      throw Error(vocab_source + ": the id of '" + token + "' is not a whole number in [0, " + std::to_string(kMaxId) + ")");
    }
    const auto index = static_cast<size_t>(id.get<int64_t>());
    if (index >= tokens.size() || taken[index]) {
      throw Error(vocab_source + ": ids are not 0 to " + std::to_string(tokens.size() - 1) + ", each once ('" + token +
                  "' has " + std::to_string(index) + ")");
    }
    tokens[index] = token;
    taken[index] = true;
  }
  // transformers reads merges.txt stripped, skips its first (#version) line and keeps CLIP's count.
  const size_t first = merges_txt.find_first_not_of(" \t\r\n");
  const size_t last = merges_txt.find_last_not_of(" \t\r\n");
  const std::vector<std::string_view> lines =
      first == std::string_view::npos ? std::vector<std::string_view>{} : split_lines(merges_txt.substr(first, last - first + 1));
  std::vector<std::pair<std::string, std::string>> merges;
  for (size_t line = 1; line < lines.size() && merges.size() < kClipMergeCount; ++line) {
    merges.push_back(parse_merge(lines[line], merges_source, line + 1));
  }
  return ClipTokenizer(std::move(tokens), std::move(merges), vocab_source);
}

std::vector<int32_t> ClipTokenizer::byte_pair_merge(std::string_view word_bytes) const {
  std::vector<int32_t> symbols(word_bytes.size());
  for (size_t i = 0; i < word_bytes.size(); ++i) {
    const auto b = static_cast<unsigned char>(word_bytes[i]);
    symbols[i] = i + 1 == word_bytes.size() ? byte_symbol_end_[b] : byte_symbol_[b];
  }
  while (symbols.size() > 1) {
    const Merge* best = nullptr;
    int32_t first = 0, second = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      const Merge* merge = merge_table_->find(symbols[i], symbols[i + 1]);
      if (merge && (!best || merge->rank < best->rank)) {
        best = merge;
        first = symbols[i];
        second = symbols[i + 1];
      }
    }
    if (!best) break;
    // Every occurrence of the best pair, left to right.
    size_t out = 0;
    for (size_t i = 0; i < symbols.size(); ++out) {
      if (i + 1 < symbols.size() && symbols[i] == first && symbols[i + 1] == second) {
        symbols[out] = best->merged;
        i += 2;
      } else {
        symbols[out] = symbols[i++];
      }
    }
    symbols.resize(out);
  }
  return symbols;
}

std::vector<int32_t> ClipTokenizer::encode_word(std::string_view word_bytes) const {
  {
    std::lock_guard lock(cache_->mutex);
    const auto it = cache_->words.find(std::string(word_bytes));
    if (it != cache_->words.end()) return it->second;
  }
  std::vector<int32_t> ids = byte_pair_merge(word_bytes);
  std::lock_guard lock(cache_->mutex);
  if (cache_->words.size() >= WordCache::kMaxWords) cache_->words.clear();
  cache_->words.emplace(word_bytes, ids);
  return ids;
}

std::vector<int32_t> ClipTokenizer::encode(std::string_view text) const {
  const std::u32string clean = clean_text(text);
  std::vector<int32_t> ids;
  for (size_t at = 0; at < clean.size();) {
    const size_t length = piece_length(clean, at);
    if (length == 0) {
      ++at;
      continue;
    }
    const std::u32string_view piece(clean.data() + at, length);
    at += length;
    // Only the exact spelling is the special token; "<|endoftext|>" with a long s is ordinary text.
    if (piece == kStartOfText || piece == kEndOfText) {
      ids.push_back(piece == kStartOfText ? start_of_text_ : end_of_text_);
      continue;
    }
    const std::vector<int32_t> word = encode_word(to_utf8(piece));
    ids.insert(ids.end(), word.begin(), word.end());
  }
  return ids;
}

ClipTokenizer ClipTokenizer::from_text(std::string_view tokens_text, std::string_view merges_text,
                                       const std::string& source) {
  const auto lines_of = [](std::string_view text) {
    std::vector<std::string_view> lines = split_lines(text);
    if (!lines.empty() && lines.back().empty()) lines.pop_back();  // the last line's end
    return lines;
  };
  std::vector<std::string> tokens;
  for (std::string_view line : lines_of(tokens_text)) tokens.emplace_back(line);
  std::vector<std::pair<std::string, std::string>> merges;
  const std::vector<std::string_view> merge_lines = lines_of(merges_text);
  for (size_t line = 0; line < merge_lines.size(); ++line) merges.push_back(parse_merge(merge_lines[line], source, line + 1));
  return ClipTokenizer(std::move(tokens), std::move(merges), source);
}

std::string ClipTokenizer::tokens_text() const {
  std::string out;
  for (const std::string& token : tokens_) out += token + '\n';
  return out;
}

std::string ClipTokenizer::merges_text() const {
  std::string out;
  for (const auto& [first, second] : merges_) out += tokens_[static_cast<size_t>(first)] + ' ' + tokens_[static_cast<size_t>(second)] + '\n';
  return out;
}

}  // namespace tiledraw::text
