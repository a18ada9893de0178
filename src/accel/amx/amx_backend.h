#pragma once

#include <memory>

#include "accel/amx/gemm_amx.h"
#include "tiledraw/accel.h"

namespace tiledraw::accel {

// The amx backend around a given tile kernel: the hardware one, or (in tests)
// the emulated one. `measure_fallback` times the AVX512-VNNI kernel against the
// tiles for each new shape and keeps the faster (pointless when emulated).
std::unique_ptr<Accelerator> make_amx_backend_with(amx::AmxTasksFn tasks, const char* kernel_name,
                                                   bool measure_fallback);

}  // namespace tiledraw::accel
