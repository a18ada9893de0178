#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tiledraw {

// "1.5 KiB", "361.1 MiB": sizes as people read them.
std::string human_bytes(uint64_t bytes);

// Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past U+10FFFF.
bool is_utf8(std::string_view text);
// The text with every byte that is not part of well-formed UTF-8 replaced by
// U+FFFD, for text that must be UTF-8 (a PNG's iTXt) but comes from elsewhere
// (a file name).
std::string to_utf8(std::string_view text);

}  // namespace tiledraw
