#include "accel/panel_weight.h"

#include <cstring>

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
  std::memset(data_.data(), offset, data_.size());
  for (int64_t n = 0; n < w.n; ++n) {
    int8_t* column = data_.data() + (n / kPanel) * k_groups_ * kGroupBytes + (n % kPanel) * 4;
    for (int64_t k = 0; k < w.k; ++k) {
      column[(k / 4) * kGroupBytes + k % 4] = static_cast<int8_t>(w.q[n * w.k + k] ^ offset);
    }
    scale_[static_cast<size_t>(n)] = w.scale[n];
  }
}

}  // namespace tiledraw::accel
