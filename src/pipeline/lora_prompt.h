#pragma once

#include <string>
#include <string_view>
#include <vector>

// A1111's extra-network tags in a prompt, <lora:NAME:TE:UNET> and its
// <lyco:...> alias: the adapters they ask for, and the prompt without them.
namespace tiledraw::pipeline {

struct LoraTag {
  std::string text;  // the tag as written, for messages
  std::string name;  // a file stem or ss_output_name alias in the LoRA folder
  double text_strength = 1.0, unet_strength = 1.0;
};

struct TaggedPrompt {
  std::string text;  // the prompt with every tag removed, what the text encoder reads
  std::vector<LoraTag> tags;
};

// Reads A1111's (1.5 and later) rules: every <WORD:ARGS> is an extra-network
// tag and is removed; ARGS split on ':', an item with exactly one '=' is
// named, the others positional; the name is the first positional item, the
// text encoder's strength the second (default 1), the UNet's the third
// (default: the text encoder's, after te=); te= and unet= override them.
// Where A1111 would skip silently, this is an Error naming the tag: a word
// other than lora or lyco (hypernetworks), a tag without a name, a strength
// that is not a finite number, a named item other than te= and unet=, and
// dyn= or a fourth positional item (DyLoRA's rank cut, not supported); so is
// "<lora:" or "<lyco:" without a closing '>'.
TaggedPrompt parse_lora_tags(std::string_view prompt);

}  // namespace tiledraw::pipeline
