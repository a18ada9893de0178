#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "tiledraw/accel.h"
#include "tiledraw/pipeline.h"

// Each command registers itself as a subcommand whose callback does the work.
// Callbacks throw tiledraw::Error for bad input; main turns that into exit 2.
namespace tiledraw::cli {

void add_convert_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_forward_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_classify_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_serve_command(CLI::App& app);

// The options every command takes, set by main before a command runs.
struct GlobalOptions {
  std::string accelerator;  // --accel; empty: $TILEDRAW_ACCEL, else auto
};
GlobalOptions& global_options();

// The backend --accel names (else the default), or an Error naming the flag.
std::unique_ptr<Accelerator> selected_accelerator(std::string* why = nullptr);

// A flag's value as a Precision, or an Error naming the flag.
Precision precision_flag(const std::string& value, const std::string& flag);

// --lora FILE[:TE[:UNET]] values: the strength on the text encoders (default
// 1), and on the UNet (default: the same); an Error naming the flag for a bad
// strength.
std::vector<LoraRequest> lora_flags(const std::vector<std::string>& values);

// Runs `work` with the library's errors prefixed by `flag` ("--class: ...").
template <typename Work>
auto for_flag(const std::string& flag, Work&& work) {
  try {
    return work();
  } catch (const Cancelled&) {
    throw;
  } catch (const Error& e) {
    throw Error(flag + ": " + e.what());
  }
}

}  // namespace tiledraw::cli
