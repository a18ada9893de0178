#include "accel/panel_weight.h"

#include <algorithm>

#include "accel/backends.h"
#include "tiledraw/cpu.h"

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

namespace {

const WeightView& nonempty(const WeightView& w) {
  if (w.n <= 0 || w.k <= 0) validate_weight(w);
  return w;
}

}  // namespace

PanelWeight::PanelWeight(const WeightView& w, bool shifted)
    : PackedWeight(nonempty(w)),
      panels_((w.n + kPanel - 1) / kPanel),
      k_groups_((w.k + QuantizedActivation::kRowAlign - 1) / QuantizedActivation::kRowAlign *
                QuantizedActivation::kRowAlign / 4),
      shifted_(shifted),
      data_(static_cast<size_t>(panels_ * k_groups_ * kGroupBytes)),
      scale_(static_cast<size_t>(panels_ * kPanel)) {
  // Loading a large model is dominated by this pass: each thread writes whole
  // panels, in order, and checks the values as it reads them.
  const auto pack_panel = for_isa(isa_level(), pack_panel_scalar, pack_panel_scalar, pack_panel_avx512);
  bool holds_min = false;
#pragma omp parallel for schedule(static) reduction(|| : holds_min) if (w.n * w.k > (1 << 16))
  for (int64_t p = 0; p < panels_; ++p) {
    holds_min = pack_panel(w, p, k_groups_, shifted, data_.data() + p * k_groups_ * kGroupBytes) || holds_min;
  }
  if (holds_min) validate_weight(w);  // throws, naming the row
  std::copy_n(w.scale, w.n, scale_.data());
}

}  // namespace tiledraw::accel
