#include "tiledraw/tiledraw.h"

#include <cstdlib>

namespace tiledraw {

const char* version() { return TILEDRAW_VERSION; }

std::string default_model_path() {
  const char* dir = std::getenv("TILEDRAW_MODEL_DIR");
  return std::string(dir && *dir ? dir : TILEDRAW_MODEL_DIR) + "/fashion-sd-8bit-s.safetensors";
}

}  // namespace tiledraw
