#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "models/checkpoint.h"
#include "text/prompt.h"
#include "text/tokenizer_source.h"

namespace tiledraw::cli {
namespace {

struct TokenizeArgs {
  std::string model;
  std::string tokenizer;
  std::string prompt;
  bool json = false;
};

// SD 2.x reads OpenCLIP ViT-H; every other family, a model of no family
// recognised (a file that only carries a tokenizer, say) and no model at all
// SD 1.x's CLIP ViT-L.
text::ClipKind clip_kind_of(const std::string& model) {
  if (model.empty()) return text::ClipKind::OpenAiVitL14;
  const models::Checkpoint checkpoint = models::Checkpoint::open(model);
  try {
    if (models::detect_family(checkpoint).info.family == "sd2") return text::ClipKind::OpenClipVitH14;
  } catch (const Error&) {
  }
  return text::ClipKind::OpenAiVitL14;
}

// The ids up to the chunk's first <|endoftext|>, then the padding as a count.
std::string chunk_ids_text(const text::TokenChunk& chunk, int32_t end_of_text) {
  std::string out;
  size_t i = 0;
  for (; i < chunk.ids.size(); ++i) {
    if (i) out += ' ';
    out += std::to_string(chunk.ids[i]);
    if (chunk.ids[i] == end_of_text) break;
  }
  const size_t padding = chunk.ids.size() - std::min(i + 1, chunk.ids.size());
  if (padding > 0) out += ", then " + std::to_string(padding) + " x " + std::to_string(chunk.ids.back());
  return out;
}

// "position=weight" for the positions whose weight is not 1.
std::string weights_text(const text::TokenChunk& chunk) {
  std::string out;
  for (size_t i = 0; i < chunk.weights.size(); ++i) {
    if (chunk.weights[i] == 1.0f) continue;
    char item[48];
    std::snprintf(item, sizeof item, "%s%zu=%.6g", out.empty() ? "" : " ", i, static_cast<double>(chunk.weights[i]));
    out += item;
  }
  return out;
}

void run_tokenize(const TokenizeArgs& args) {
  const text::ClipKind kind = for_flag("-m", [&] { return clip_kind_of(args.model); });
  text::FoundTokenizer found = [&] {
    try {
      return text::find_clip_tokenizer({args.model, args.tokenizer, kind});
    } catch (const text::TokenizerNotFound& e) {
      throw Error(std::string(e.what()) + ", or pass --tokenizer PATH");
    }
  }();
  const int32_t pad_id = text::padding_id(kind, found.tokenizer);
  const std::vector<text::TokenChunk> chunks = text::tokenize_prompt(found.tokenizer, args.prompt, pad_id);
  const char* family = kind == text::ClipKind::OpenClipVitH14 ? "SD 2.x" : "SD 1.x";

  if (args.json) {
    nlohmann::ordered_json out{{"source", found.source}, {"pad_id", pad_id}, {"chunks", nlohmann::ordered_json::array()}};
    for (const text::TokenChunk& chunk : chunks) out["chunks"].push_back({{"ids", chunk.ids}, {"weights", chunk.weights}});
    std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
    return;
  }
  std::printf("vocabulary  %s\n", found.source.c_str());
  std::printf("padding     %d (%s)\n", pad_id, family);
  for (size_t c = 0; c < chunks.size(); ++c) {
    std::printf("chunk %-5zu %s\n", c + 1, chunk_ids_text(chunks[c], found.tokenizer.end_of_text()).c_str());
    if (const std::string weights = weights_text(chunks[c]); !weights.empty()) std::printf("  weights   %s\n", weights.c_str());
  }
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Show the CLIP token ids (and weights) of a prompt, chunk by chunk");
  cmd->add_option("prompt", args->prompt, "The prompt, with the A1111 weighting syntax: (word), [word], (word:1.3), BREAK")
      ->required();
  cmd->add_option("-m,--model", args->model,
                  "Model whose tokenizer and padding to use (SD 2.x pads with 0; others as SD 1.x, with <|endoftext|>)");
  cmd->add_option("--tokenizer", args->tokenizer,
                  "CLIP vocabulary: bpe_simple_vocab_16e6.txt.gz, vocab.json + merges.txt, or their folder");
  cmd->add_flag("--json", args->json, "Print a JSON object: source, pad_id, chunks [{ids, weights}]");
  cmd->callback([args] { run_tokenize(*args); });
}

}  // namespace tiledraw::cli
