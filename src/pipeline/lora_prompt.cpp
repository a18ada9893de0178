#include "pipeline/lora_prompt.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <optional>

#include "tiledraw/error.h"

namespace tiledraw::pipeline {
namespace {

// Python's \w on text, which A1111's pattern uses: letters, digits, '_', and
// (approximated by their UTF-8 bytes) letters beyond ASCII.
bool is_word_character(char c) {
  const auto byte = static_cast<unsigned char>(c);
  return std::isalnum(byte) || c == '_' || byte >= 0x80;
}

// lyco is A1111's other word for a LoRA tag (LyCORIS adapters once had their own extension).
bool is_lora_word(std::string_view word) { return word == "lora" || word == "lyco"; }

std::string quoted(std::string_view text) { return std::string("'").append(text).append("'"); }

// A strength as Python's float() reads it (spaces around it allowed); an
// Error unless it is a finite number.
double strength(std::string_view text, const std::string& tag, const char* what) {
  std::string_view number = text;
  const auto is_space = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
  while (!number.empty() && is_space(number.front())) number.remove_prefix(1);
  while (!number.empty() && is_space(number.back())) number.remove_suffix(1);
  if (number.size() > 1 && number.front() == '+' && number[1] != '-') number.remove_prefix(1);
  double value = 0.0;
  const auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), value);
  const std::string problem = number.empty() || end != number.data() + number.size() ? "is not a number"
                              : error == std::errc::result_out_of_range              ? "is out of range"
                              : !std::isfinite(value)                                ? "is not a finite number"
                                                                                     : "";
  if (!problem.empty()) throw Error(tag + ": " + what + " " + quoted(text) + " " + problem);
  return value;
}

LoraTag read_tag(std::string_view word, std::string_view arguments, std::string_view written) {
  const std::string tag(written);
  if (!is_lora_word(word)) {
    throw Error(tag + ": an extra network of kind " + quoted(word) +
                "; only LoRA tags are read (<lora:NAME:STRENGTH>, or <lyco:...>)");
  }
  std::vector<std::string_view> positional;
  std::optional<std::string_view> text_item, unet_item;
  for (size_t start = 0;;) {
    const size_t colon = std::min(arguments.find(':', start), arguments.size());
    const std::string_view item = arguments.substr(start, colon - start);
    if (const size_t equals = item.find('=');
        equals != std::string_view::npos && item.find('=', equals + 1) == std::string_view::npos) {
      const std::string_view key = item.substr(0, equals), value = item.substr(equals + 1);
      if (key == "te") {
        text_item = value;
      } else if (key == "unet") {
        unet_item = value;
      } else if (key == "dyn") {
        throw Error(tag + ": dyn= (DyLoRA's rank cut) is not supported");
      } else {
        throw Error(tag + ": unknown setting " + quoted(item) + " (te= and unet= are read)");
      }
    } else {
      positional.push_back(item);
    }
    if (colon == arguments.size()) break;
    start = colon + 1;
  }
  if (positional.empty() || positional.front().empty()) throw Error(tag + ": names no adapter");
  if (positional.size() > 3) throw Error(tag + ": a fourth value (DyLoRA's rank cut) is not supported");
  LoraTag out{tag, std::string(positional.front())};
  if (positional.size() > 1) out.text_strength = strength(positional[1], tag, "the text encoder's strength");
  if (text_item) out.text_strength = strength(*text_item, tag, "te");
  // A1111's order: the UNet's default is the text encoder's strength after te=.
  out.unet_strength = positional.size() > 2 ? strength(positional[2], tag, "the UNet's strength") : out.text_strength;
  if (unet_item) out.unet_strength = strength(*unet_item, tag, "unet");
  return out;
}

}  // namespace

TaggedPrompt parse_lora_tags(std::string_view prompt) {
  TaggedPrompt out;
  size_t copied = 0;  // the prompt before this is in out.text already
  for (size_t open = prompt.find('<'); open != std::string_view::npos; open = prompt.find('<', open + 1)) {
    // A1111's pattern: <(\w+):([^>]+)>
    size_t colon = open + 1;
    while (colon < prompt.size() && is_word_character(prompt[colon])) ++colon;
    if (colon == open + 1 || colon == prompt.size() || prompt[colon] != ':') continue;
    const std::string_view word = prompt.substr(open + 1, colon - open - 1);
    const size_t close = prompt.find('>', colon + 1);
    if (close == std::string_view::npos || close == colon + 1) {
      // Not a tag by A1111's pattern, so text; but this one was meant as a LoRA tag.
      if (!is_lora_word(word)) continue;
      if (close != std::string_view::npos) throw Error(std::string(prompt.substr(open, close + 1 - open)) + ": names no adapter");
      constexpr size_t kShown = 40;
      throw Error(quoted(std::string(prompt.substr(open, kShown)) + (prompt.size() - open > kShown ? "..." : "")) +
                  " has no closing '>'");
    }
    out.tags.push_back(read_tag(word, prompt.substr(colon + 1, close - colon - 1), prompt.substr(open, close + 1 - open)));
    out.text.append(prompt.substr(copied, open - copied));
    copied = close + 1;
    open = close;
  }
  out.text.append(prompt.substr(copied));
  return out;
}

}  // namespace tiledraw::pipeline
