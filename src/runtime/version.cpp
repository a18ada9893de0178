#include "tiledraw/tiledraw.h"

namespace tiledraw {

const char* version() { return TILEDRAW_VERSION; }

}  // namespace tiledraw
