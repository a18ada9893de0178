#include "cli/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>

namespace tiledraw::cli {
namespace {

size_t terminal_width() {
  winsize ws{};
  return ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
}

std::string clock_string(double seconds) {
  const auto s = static_cast<long>(seconds + 0.5);
  char text[32];
  std::snprintf(text, sizeof text, "%ld:%02ld", s / 60, s % 60);
  return text;
}

}  // namespace

Progress::Progress(std::string label, std::string unit, bool quiet)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      quiet_(quiet),
      terminal_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()) {}

void Progress::update(size_t done, size_t total, std::string_view item) {
  if (quiet_ || total == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (terminal_ && done != total && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = elapsed > 0.0 ? static_cast<double>(done) / elapsed : 0.0;
  const double eta = rate > 0.0 ? static_cast<double>(total - done) / rate : 0.0;
  char stats[96];
  std::snprintf(stats, sizeof stats, "%zu/%zu  %.1f %s/s  ETA %s", done, total, rate, unit_.c_str(),
                clock_string(eta).c_str());
  if (terminal_) {
    constexpr size_t kBarWidth = 24;
    const size_t filled = done * kBarWidth / total;
    std::string line = label_ + " [" + std::string(filled, '#') + std::string(kBarWidth - filled, '.') + "] " + stats;
    if (!item.empty()) line += "  " + std::string(item);
    line.resize(std::min(line.size(), terminal_width() - 1));
    std::fprintf(stderr, "\r%s\033[K", line.c_str());
    drawn_ = true;
  } else {
    const size_t tenth = done * 10 / total;
    if (tenth == last_tenth_ && done != total) return;
    last_tenth_ = tenth;
    std::fprintf(stderr, "%s: %s%s%s\n", label_.c_str(), stats, item.empty() ? "" : "  ", std::string(item).c_str());
  }
  std::fflush(stderr);
}

void Progress::finish() {
  if (drawn_) std::fputc('\n', stderr);
  drawn_ = false;
}

}  // namespace tiledraw::cli
