#include "accel/backends.h"
#include "tiledraw/cpu.h"

namespace tiledraw::accel {

std::unique_ptr<Accelerator> make_amx_backend(std::string* why) {
  if (why) {
    *why = cpu_features().amx_int8 ? "the AMX kernel is not written yet" : cpu_features().amx_status;
  }
  return nullptr;
}

}  // namespace tiledraw::accel
