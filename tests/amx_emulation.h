#pragma once

#include "accel/amx/gemm_amx.h"

namespace tiledraw::test {

// The amx backend's kernel run on scalar tile emulation: checks its layouts,
// blocking and epilogue on any machine with AVX-512 (the epilogue's ISA).
accel::amx::AmxTasksFn emulated_amx_tasks();

}  // namespace tiledraw::test
