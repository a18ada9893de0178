#include "accel/panel_weight.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "accel/backends.h"
#include "tiledraw/cpu.h"
#include "tiledraw/error.h"

namespace tiledraw::accel {

bool pack_panel_scalar(const WeightView& w, int64_t panel, int64_t k_groups, bool shifted, int8_t* out) {
  const auto offset = static_cast<int8_t>(shifted ? 0x80 : 0);
  const int64_t columns = std::min<int64_t>(kPanel, w.n - panel * kPanel);
  bool holds_min = false;
  for (int64_t g = 0; g < k_groups; ++g) {
    for (int64_t c = 0; c < kPanel; ++c, out += 4) {
      if (c >= columns) {
        std::fill_n(out, 4, offset);
        continue;
      }
      const int8_t* row = w.q + (panel * kPanel + c) * w.k;
      for (int64_t i = 0; i < 4; ++i) {
        const int8_t value = g * 4 + i < w.k ? row[g * 4 + i] : 0;
        holds_min = holds_min || value == -128;
        out[i] = static_cast<int8_t>(value ^ offset);
      }
    }
  }
  return holds_min;
}

void pack_stored_panels(const int8_t* q, int64_t n, int64_t k, uint8_t* out) {
  const auto pack_panel = for_isa(isa_level(), pack_panel_scalar, pack_panel_scalar, pack_panel_avx512);
  const WeightView w{q, nullptr, n, k};
  const int64_t panel_bytes = kPanel * k;
  bool holds_min = false;
#pragma omp parallel for schedule(static) reduction(|| : holds_min) if (n * k > (1 << 16))
  for (int64_t p = 0; p < n / kPanel; ++p) {
    holds_min = pack_panel(w, p, k / 4, true, reinterpret_cast<int8_t*>(out) + p * panel_bytes) || holds_min;
  }
  if (holds_min) validate_weight(w);
}

void unpack_stored_panels(const uint8_t* panels, int64_t n, int64_t k, int8_t* q) {
#pragma omp parallel for schedule(static) if (n * k > (1 << 16))
  for (int64_t p = 0; p < n / kPanel; ++p) {
    const uint8_t* in = panels + p * kPanel * k;
    for (int64_t g = 0; g < k / 4; ++g) {
      for (int64_t c = 0; c < kPanel; ++c, in += 4) {
        for (int64_t i = 0; i < 4; ++i) q[(p * kPanel + c) * k + g * 4 + i] = static_cast<int8_t>(in[i] ^ 0x80);
      }
    }
  }
}

namespace {

const WeightView& nonempty(const WeightView& w) {
  if (w.n <= 0 || w.k <= 0) validate_weight(w);
  if (w.panels && !fits_stored_panels(w.n, w.k)) {
    throw Error("8-bit S weight of shape [" + std::to_string(w.n) + ", " + std::to_string(w.k) +
                "] cannot be stored as panels (rows and columns must be multiples of 64)");
  }
  return w;
}

// Stored panels serve as they are when shifted and aligned as the kernels load
// them (a file written by tiledraw starts them on pages); otherwise they are copied.
bool in_place(const WeightView& w, bool shifted) {
  return w.panels && shifted && reinterpret_cast<uintptr_t>(w.panels) % QuantizedActivation::kRowAlign == 0;
}

}  // namespace

PanelWeight::PanelWeight(const WeightView& w, bool shifted)
    : PackedWeight(nonempty(w)),
      panels_((w.n + kPanel - 1) / kPanel),
      k_groups_((w.k + QuantizedActivation::kRowAlign - 1) / QuantizedActivation::kRowAlign *
                QuantizedActivation::kRowAlign / 4),
      shifted_(shifted),
      packed_(in_place(w, shifted) ? AlignedArray<int8_t>() : AlignedArray<int8_t>(static_cast<size_t>(panels_ * k_groups_ * kGroupBytes))),
      data_(in_place(w, shifted) ? reinterpret_cast<const int8_t*>(w.panels) : packed_.data()),
      scale_(static_cast<size_t>(panels_ * kPanel)) {
  // Loading a large model is dominated by this pass: each thread writes (or,
  // for stored panels, reads) whole panels, in order, and checks the values.
  const auto pack_panel = for_isa(isa_level(), pack_panel_scalar, pack_panel_scalar, pack_panel_avx512);
  const size_t panel_bytes = static_cast<size_t>(k_groups_ * kGroupBytes);
  bool holds_min = false;
#pragma omp parallel for schedule(static) reduction(|| : holds_min) if (w.n * w.k > (1 << 16))
  for (int64_t p = 0; p < panels_; ++p) {
    if (!w.panels) {
      holds_min = pack_panel(w, p, k_groups_, shifted, packed_.data() + p * panel_bytes) || holds_min;
      continue;
    }
    const uint8_t* stored = w.panels + p * panel_bytes;
    holds_min = std::memchr(stored, 0, panel_bytes) != nullptr || holds_min;  // 0 is -128 shifted
    if (packed_.data()) {
      const uint8_t offset = shifted ? 0 : 0x80;
      for (size_t i = 0; i < panel_bytes; ++i) packed_.data()[p * panel_bytes + i] = static_cast<int8_t>(stored[i] ^ offset);
    }
  }
  if (holds_min) validate_weight(w);  // throws, naming the row
  std::copy_n(w.scale, w.n, scale_.data());
}

}  // namespace tiledraw::accel
