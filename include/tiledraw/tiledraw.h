#pragma once

// The whole public API of the tiledraw library.
#include "tiledraw/accel.h"
#include "tiledraw/convert.h"
#include "tiledraw/cpu.h"
#include "tiledraw/dtype.h"
#include "tiledraw/error.h"
#include "tiledraw/image.h"
#include "tiledraw/quant8s.h"
#include "tiledraw/safetensors.h"

namespace tiledraw {

const char* version();

}  // namespace tiledraw
