#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/progress.h"
#include "runtime/text.h"
#include "text/tokenizer_source.h"
#include "tiledraw/tiledraw.h"

namespace tiledraw::cli {
namespace {

struct ConvertArgs {
  std::string input;
  std::string output;
  ConvertOptions options;
  std::string tokenizer;
  std::vector<std::string> loras;
  bool quiet = false;
  bool verbose = false;
};

const char* action_name(TensorAction action) {
  switch (action) {
    case TensorAction::Quantized:
      return "8-bit S";
    case TensorAction::Kept:
      return "kept";
    case TensorAction::Copied:
      break;
  }
  return "copied";
}

void run_convert(const ConvertArgs& args) {
  if (!args.options.config_json.empty() && !nlohmann::json::parse(args.options.config_json, nullptr, false).is_object()) {
    throw Error("--config: not a JSON object");
  }
  ConvertOptions options = args.options;
  std::string tokenizer_source;
  if (!args.tokenizer.empty()) {
    const text::FoundTokenizer found = for_flag("--tokenizer", [&] { return text::load_clip_tokenizer(args.tokenizer); });
    options.extra_tensors = text::embedded_tokenizer_tensors(found.tokenizer);
    tokenizer_source = found.source;
  }
  Progress progress("convert", "tensors", args.quiet);
  const ConvertProgress report_progress = [&](size_t done, size_t total, const std::string& name) {
    progress.update(done, total, name);
  };
  const bool folder = std::filesystem::is_directory(args.input);
  if (folder && !args.tokenizer.empty()) throw Error("--tokenizer: a diffusers folder keeps its tokenizer in tokenizer/");
  if (!args.loras.empty()) {
    const std::vector<LoraRequest> loras = lora_flags(args.loras);
    LoadOptions load;
    load.tokenizer = args.tokenizer;
    options.updates = for_flag("--lora", [&] { return lora_updates(args.input, loras, load); });
  }
  const ConvertReport report = folder ? convert_folder_to_8bit_s(args.input, args.output, options, report_progress)
                                      : convert_to_8bit_s(args.input, args.output, options, report_progress);
  progress.finish();

  size_t kept = 0, copied = 0;
  for (const ConvertedTensor& t : report.tensors) {
    kept += t.action == TensorAction::Kept;
    copied += t.action == TensorAction::Copied;
  }
  if (args.verbose) {
    for (const ConvertedTensor& t : report.tensors) {
      std::printf("  %-8s %-5s %-20s %s", action_name(t.action), std::string(dtype_name(t.source_dtype)).c_str(),
                  shape_string(t.shape).c_str(), t.name.c_str());
      if (t.action == TensorAction::Quantized) std::printf("  (relative error %.5f)", t.relative_error);
      if (!t.reason.empty()) std::printf("  (%s)", t.reason.c_str());
      std::printf("\n");
    }
  }
  std::printf("converted %s -> %s\n", args.input.c_str(), args.output.c_str());
  std::printf("  quantized %zu tensors to 8-bit S, kept %zu in floating point, copied %zu unchanged\n",
              report.quantized, kept, copied);
  if (report.panels > 0) std::printf("  %zu 8-bit S weights stored as panels, the layout loading maps\n", report.panels);
  if (!tokenizer_source.empty()) std::printf("  embedded the CLIP tokenizer from %s\n", tokenizer_source.c_str());
  if (!args.loras.empty()) std::printf("  baked %zu LoRA file(s) into %zu weights\n", args.loras.size(), report.updated);
  std::printf("  size %s -> %s (%.2fx smaller)\n", human_bytes(report.bytes_in).c_str(),
              human_bytes(report.bytes_out).c_str(),
              report.bytes_out ? static_cast<double>(report.bytes_in) / static_cast<double>(report.bytes_out) : 0.0);
  if (report.quantized > 0) {
    std::printf("  relative reconstruction error: mean %.5f, worst %.5f (%s)\n", report.mean_relative_error,
                report.worst_relative_error, report.worst_tensor.c_str());
  }
}

}  // namespace

void add_convert_command(CLI::App& app) {
  auto args = std::make_shared<ConvertArgs>();
  CLI::App* cmd = app.add_subcommand("convert", "Convert a float safetensors file or diffusers folder to 8-bit S weights");
  cmd->add_option("input", args->input, "Float safetensors file (F32, F16 or BF16 tensors), or a diffusers folder")->required();
  cmd->add_option("output", args->output, "8-bit S safetensors file to write (a new folder for a folder)")->required();
  cmd->add_option("--keep", args->options.keep_patterns,
                  "Keep tensors whose name matches this glob pattern in floating point (repeatable)");
  cmd->add_option("--min-elements", args->options.min_elements, "Matrices smaller than this stay in floating point")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](const std::string& value) {
            return value.find_first_not_of("0123456789") == std::string::npos ? "" : "must be a whole number >= 0";
          },
          "N"));
  cmd->add_option_function<std::string>(
         "--layout", [args](const std::string& name) { args->options.layout = parse_layout_8bit_s(name); },
         "8-bit S weights as panels (the accelerator's layout, mapped at load; the default) or rows (ComfyUI's int8 layout)")
      ->check(CLI::IsMember({"panels", "rows"}));
  cmd->add_option("--architecture", args->options.architecture, "Model architecture to record in the metadata");
  cmd->add_option("--config", args->options.config_json, "Model config (a JSON object) to record in the metadata");
  cmd->add_option("--tokenizer", args->tokenizer,
                  "CLIP vocabulary to embed (bpe_simple_vocab_16e6.txt.gz, vocab.json + merges.txt, or their folder)");
  cmd->add_option("--lora", args->loras,
                  "Bake a LoRA file into the weights before they are rounded, as FILE[:TE[:UNET]]: at a strength on the "
                  "text encoders (default 1) and on the UNet (default: the same); repeatable. --keep '*' writes a float "
                  "checkpoint");
  cmd->add_flag("-q,--quiet", args->quiet, "No progress bar");
  cmd->add_flag("-v,--verbose", args->verbose, "List every tensor and what was done with it");
  cmd->callback([args] { run_convert(*args); });
}

}  // namespace tiledraw::cli
