#include "tiledraw/memory.h"

#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cmath>
#include <utility>

#include "runtime/text.h"
#include "tiledraw/error.h"

namespace tiledraw {
namespace {

std::atomic<uint64_t> g_limit{physical_memory_bytes()};
std::atomic<uint64_t> g_reserved{0};
std::string g_limit_hint;  // set once, before any work

void take(uint64_t bytes, const std::string& what) {
  uint64_t reserved = g_reserved.load();
  const uint64_t limit = g_limit.load();
  do {
    if (bytes > limit || reserved > limit - bytes) {
      std::string message = what + " would take " + human_bytes(bytes);
      if (reserved) message += " beyond the " + human_bytes(reserved) + " already in use";
      throw Error(message + ", over the memory limit of " + human_bytes(limit) +
                  (g_limit_hint.empty() ? "" : " (" + g_limit_hint + ")"));
    }
  } while (!g_reserved.compare_exchange_weak(reserved, reserved + bytes));
}

}  // namespace

uint64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : UINT64_MAX;
}

uint64_t memory_limit() { return g_limit.load(); }
void set_memory_limit(uint64_t bytes) { g_limit.store(bytes); }
void set_memory_limit_hint(std::string hint) { g_limit_hint = std::move(hint); }
uint64_t memory_reserved() { return g_reserved.load(); }

uint64_t parse_memory_size(const std::string& text, const std::string& flag) {
  size_t used = 0;
  double value = 0.0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit;
  for (size_t i = used; i < text.size(); ++i) unit += static_cast<char>(std::toupper(static_cast<unsigned char>(text[i])));
  const std::pair<const char*, double> units[] = {{"", 1.0},          {"B", 1.0},          {"K", 0x1p10}, {"KB", 0x1p10},
                                                  {"KIB", 0x1p10},    {"M", 0x1p20},       {"MB", 0x1p20}, {"MIB", 0x1p20},
                                                  {"G", 0x1p30},      {"GB", 0x1p30},      {"GIB", 0x1p30}, {"T", 0x1p40},
                                                  {"TB", 0x1p40},     {"TIB", 0x1p40}};
  for (const auto& [name, scale] : units) {
    const double bytes = value * scale;
    if (used > 0 && unit == name && std::isfinite(bytes) && bytes >= 1.0 && bytes < 0x1p63) return static_cast<uint64_t>(bytes);
  }
  throw Error(flag + ": '" + text + "' is not a memory size (for example 512M, 4G, or a number of bytes)");
}

MemoryReservation::MemoryReservation(uint64_t bytes, const std::string& what) { grow(bytes, what); }

MemoryReservation::MemoryReservation(MemoryReservation&& other) noexcept : bytes_(std::exchange(other.bytes_, 0)) {}

MemoryReservation& MemoryReservation::operator=(MemoryReservation&& other) noexcept {
  if (this != &other) {
    g_reserved -= bytes_;
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

MemoryReservation::~MemoryReservation() { g_reserved -= bytes_; }

void MemoryReservation::grow(uint64_t bytes, const std::string& what) {
  take(bytes, what);
  bytes_ += bytes;
}

}  // namespace tiledraw
