#include <omp.h>

#include <cstdio>
#include <memory>

#include "accel/backends.h"
#include "cli/commands.h"
#include "tiledraw/tiledraw.h"

namespace tiledraw::cli {
namespace {

const char* yes_no(bool value) { return value ? "yes" : "no"; }

void run_info() {
  const CpuFeatures& f = cpu_features();
  std::printf("tiledraw  %s\n", version());
  std::printf("cpu       %s\n", f.name.empty() ? "(no name given)" : f.name.c_str());
  std::printf("isa       avx2 %s, avx512 %s (vnni %s, bf16 %s, fp16 %s)\n", yes_no(f.avx2), yes_no(f.avx512),
              yes_no(f.avx512_vnni), yes_no(f.avx512_bf16), yes_no(f.avx512_fp16));
  std::printf("amx       %s%s\n", f.amx_status.c_str(),
              f.amx_int8 ? (f.amx_bf16 ? " (int8, bf16)" : " (int8)") : "");
  std::printf("kernels   %s (set TILEDRAW_ISA=scalar|avx2|avx512 to use a lower level)\n",
              isa_level_name(isa_level()));
  std::string why;
  const std::unique_ptr<Accelerator> chosen = selected_accelerator(&why);
  std::printf("accel     %s: %s\n", std::string(chosen->name()).c_str(), why.c_str());
  const std::string choices = accel::default_choices_file();
  std::printf("choices   %s\n", choices.empty() ? "not kept (TILEDRAW_CACHE_DIR is empty)"
                                                  : (choices + " (auto's choice per weight shape)").c_str());
  std::printf("threads   %d\n", omp_get_max_threads());
  for (const std::string& name : accelerator_names()) {
    if (name == "auto") continue;
    std::string reason;
    const std::unique_ptr<Accelerator> accel = make_accelerator(name, &reason);
    std::printf("  %-8s %s\n", name.c_str(), accel ? accel->kernel().c_str() : ("unavailable: " + reason).c_str());
  }
}

}  // namespace

void add_info_command(CLI::App& app) {
  app.add_subcommand("info", "Show the version and what this CPU offers the kernels")->callback(run_info);
}

}  // namespace tiledraw::cli
