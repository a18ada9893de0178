#include "cli/interrupt.h"

#include <csignal>

#include "tiledraw/safetensors.h"

namespace tiledraw::cli {
namespace {

std::atomic<bool> g_interrupted{false};

void cancel(int) {
  g_interrupted.store(true);
  remove_partial_files_on_interrupt();  // the next signal ends the process
}

}  // namespace

const std::atomic<bool>& cancel_on_interrupt() {
  struct sigaction action {};
  action.sa_handler = cancel;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  return g_interrupted;
}

}  // namespace tiledraw::cli
