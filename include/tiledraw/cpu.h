#pragma once

#include <string>

namespace tiledraw {

// What the CPU and the operating system let us use. Detected once.
struct CpuFeatures {
  std::string name;          // the brand string, "" where the CPU gives none
  bool avx2 = false;         // with FMA and F16C
  bool avx512 = false;       // F, BW, VL, DQ and the OS saves ZMM state
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
  bool avx512_fp16 = false;
  bool amx_int8 = false;     // the CPU has it and the kernel granted the tile state
  bool amx_bf16 = false;
  std::string amx_status;    // why AMX is or is not usable, for `tiledraw info`
};

// Instruction-set levels, ordered: a kernel for level L runs on any CPU at L or above.
enum class IsaLevel { Scalar = 0, Avx2 = 1, Avx512 = 2 };

const CpuFeatures& cpu_features();

// The variant of a kernel (a function, or a table of them) for an ISA level:
// how every kernel family chooses.
template <typename T>
T* for_isa(IsaLevel level, T* scalar, T* avx2, T* avx512) {
  return level == IsaLevel::Avx512 ? avx512 : level == IsaLevel::Avx2 ? avx2 : scalar;
}

// The highest level this CPU supports, lowered by the environment variable
// TILEDRAW_ISA=scalar|avx2|avx512 (to test fallbacks on a fast machine).
IsaLevel isa_level();
const char* isa_level_name(IsaLevel level);

}  // namespace tiledraw
