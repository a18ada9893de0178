#pragma once

#include <CLI/CLI.hpp>

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

}  // namespace tiledraw::cli
