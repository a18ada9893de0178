#include "accel/panel_weight.h"

#include <algorithm>

namespace tiledraw::accel {

PanelWeight::PanelWeight(const WeightView& w, bool shifted)
    : PackedWeight(w),
      panels_((w.n + kPanel - 1) / kPanel),
      k_groups_((w.k + QuantizedActivation::kRowAlign - 1) / QuantizedActivation::kRowAlign *
                QuantizedActivation::kRowAlign / 4),
      shifted_(shifted),
      data_(static_cast<size_t>(panels_ * k_groups_ * kGroupBytes)),
      scale_(static_cast<size_t>(panels_ * kPanel)) {
  const auto offset = static_cast<int8_t>(shifted ? 0x80 : 0);
  // Panel by panel, writing each panel's bytes in order (loading a large model
  // is dominated by this pass); rows and columns past the weight hold zero.
#pragma omp parallel for schedule(static) if (w.n * w.k > (1 << 16))
  for (int64_t p = 0; p < panels_; ++p) {
    int8_t* out = data_.data() + p * k_groups_ * kGroupBytes;
    const int64_t columns = std::min<int64_t>(kPanel, w.n - p * kPanel);
    for (int64_t g = 0; g < k_groups_; ++g) {
      for (int64_t c = 0; c < kPanel; ++c, out += 4) {
        if (c >= columns) {
          std::fill_n(out, 4, offset);
          continue;
        }
        const int8_t* row = w.q + (p * kPanel + c) * w.k;
        for (int64_t i = 0; i < 4; ++i) out[i] = g * 4 + i < w.k ? static_cast<int8_t>(row[g * 4 + i] ^ offset) : offset;
      }
    }
  }
  std::copy_n(w.scale, w.n, scale_.data());
}

}  // namespace tiledraw::accel
