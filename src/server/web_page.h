#pragma once

#include <string_view>

namespace tiledraw::server {

// The web page at `/` (src/server/web/index.html), built into the program.
std::string_view web_page();

}  // namespace tiledraw::server
