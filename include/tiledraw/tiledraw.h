#pragma once

#include <string>

// The whole public API of the tiledraw library.
#include "tiledraw/accel.h"
#include "tiledraw/checkpoint.h"
#include "tiledraw/convert.h"
#include "tiledraw/cpu.h"
#include "tiledraw/dtype.h"
#include "tiledraw/error.h"
#include "tiledraw/image.h"
#include "tiledraw/memory.h"
#include "tiledraw/pipeline.h"
#include "tiledraw/quant8s.h"
#include "tiledraw/safetensors.h"
#include "tiledraw/sampling.h"

namespace tiledraw {

const char* version();

// The model `tiledraw generate` uses without -m: $TILEDRAW_MODEL_DIR, else the
// source tree's models/ folder, holding fashion-dit-8bit-s.safetensors.
std::string default_model_path();

}  // namespace tiledraw
