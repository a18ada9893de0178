#pragma once

#include <atomic>

namespace tiledraw::cli {

// Ctrl-C (or SIGTERM) sets the returned flag, which a generation polls between
// ops: it stops within one step and writes nothing. A second signal removes
// partial files and ends the process at once, as for every other command.
const std::atomic<bool>& cancel_on_interrupt();

}  // namespace tiledraw::cli
