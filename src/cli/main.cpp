#include <omp.h>

#include <cstdio>
#include <exception>
#include <new>

#include "cli/commands.h"
#include "tiledraw/memory.h"
#include "tiledraw/tiledraw.h"

int main(int argc, char** argv) {
  tiledraw::remove_partial_files_on_interrupt();
  tiledraw::set_memory_limit_hint("--max-memory");
  CLI::App app{"tiledraw: image generation with 8-bit S weights on a matrix accelerator"};
  app.set_version_flag("--version", std::string("tiledraw ") + tiledraw::version());
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the command: `tiledraw info --accel onednn`
  app.add_option("--accel", "Matrix accelerator backend (default auto: amx, else vnni, else ref)")
      ->check(CLI::IsMember(tiledraw::accelerator_names()))
      ->each([](const std::string& name) { tiledraw::cli::global_options().accelerator = name; });
  app.add_option("--threads", "Threads for every kernel (default: all cores)")
      ->check(CLI::Range(1, 1024))
      ->each([](const std::string& count) { omp_set_num_threads(std::stoi(count)); });
  // Parsed when the command runs, so that a bad size gets the one-line error of any bad input.
  std::string max_memory;
  app.add_option("--max-memory", max_memory,
                 "Most memory to allocate, as 512M, 4G or bytes (default: the machine's physical memory)");
  app.parse_complete_callback([&] {
    if (!max_memory.empty()) tiledraw::set_memory_limit(tiledraw::parse_memory_size(max_memory, "--max-memory"));
  });
  tiledraw::cli::add_convert_command(app);
  tiledraw::cli::add_inspect_command(app);
  tiledraw::cli::add_info_command(app);
  tiledraw::cli::add_generate_command(app);
  tiledraw::cli::add_classify_command(app);
  tiledraw::cli::add_forward_command(app);
  tiledraw::cli::add_tokenize_command(app);
  tiledraw::cli::add_serve_command(app);
  tiledraw::cli::add_bench_command(app);
  // CLI11 would only say that a command is required; name the word it did not know.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const CLI::App* command : app.get_subcommands([](const CLI::App*) { return true; })) {
      names += (names.empty() ? "" : ", ") + command->get_name();
      known |= command->check_name(argv[1]);
    }
    if (!known) {
      std::fprintf(stderr, "tiledraw: unknown command '%s' (commands: %s)\n", argv[1], names.c_str());
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "tiledraw: %s (see 'tiledraw --help')\n", e.what());
    return 2;
  } catch (const tiledraw::Cancelled& e) {
    std::fprintf(stderr, "tiledraw: interrupted (%s); nothing was written\n", e.what());
    return 130;
  } catch (const tiledraw::Error& e) {
    std::fprintf(stderr, "tiledraw: error: %s\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "tiledraw: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tiledraw: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
