#pragma once

#include <cstdint>
#include <string>

namespace tiledraw {

// "1.5 KiB", "361.1 MiB": sizes as people read them.
std::string human_bytes(uint64_t bytes);

}  // namespace tiledraw
