#pragma once

#include <cstdint>

#include "accel/aligned.h"
#include "tiledraw/accel.h"

namespace tiledraw::accel {

// The packed weight layout of the vnni and amx backends.
//
// Weights are packed in panels of 64 output columns. Within a panel, for each
// group of 4 consecutive k (K padded to a multiple of 64, like the activation
// rows), 64 columns x 4 bytes: 256 bytes, the operand of VPDPBUSD (and, 16
// columns at a time with a row stride of 256 bytes, of an AMX B tile). Padding
// holds the value zero.
//
// Shifted panels store w + 128 (= w ^ 0x80) as unsigned bytes, for kernels that
// multiply unsigned weights by signed activations (VPDPBUSD, TDPBSUD); they
// remove 128 * sum_k x[m, k] in the epilogue.
inline constexpr int64_t kPanel = 64;
inline constexpr int64_t kGroupBytes = 256;

// Writes panel `panel` of w (k_groups * 256 bytes) to out, and says whether its
// rows hold -128 (not 8-bit S), so that packing is also the check. The same
// layout from a portable loop and from 16 x 16 transposes of 4-byte groups in
// ZMM registers.
bool pack_panel_scalar(const WeightView& w, int64_t panel, int64_t k_groups, bool shifted, int8_t* out);
bool pack_panel_avx512(const WeightView& w, int64_t panel, int64_t k_groups, bool shifted, int8_t* out);

// Files may store an 8-bit S weight as its shifted panels when no padding is
// needed (docs/FORMAT.md): then loading it is mapping it.
inline bool fits_stored_panels(int64_t n, int64_t k) { return n > 0 && k > 0 && n % kPanel == 0 && k % 64 == 0; }
// The whole weight as shifted panels (n * k bytes), for writing a file.
void pack_stored_panels(const int8_t* q, int64_t n, int64_t k, uint8_t* out);
// The rows q[n, k] of stored panels (n * k bytes each).
void unpack_stored_panels(const uint8_t* panels, int64_t n, int64_t k, int8_t* q);

class PanelWeight final : public PackedWeight {
 public:
  // Refuses what validate_weight refuses, with its message. Stored shifted
  // panels are used in place when the backend wants them shifted (the
  // mapped file must outlive this weight).
  PanelWeight(const WeightView& w, bool shifted);

  const int8_t* panel(int64_t p) const { return data_ + p * k_groups_ * kGroupBytes; }
  int64_t panels() const { return panels_; }
  int64_t k_groups() const { return k_groups_; }
  bool shifted() const { return shifted_; }
  bool reads_source() const override { return packed_.data() == nullptr; }
  const float* scale() const { return scale_.data(); }  // padded with zeros to panels() * 64

 private:
  int64_t panels_;
  int64_t k_groups_;
  bool shifted_;
  AlignedArray<int8_t> packed_;  // empty when the stored panels are used in place
  const int8_t* data_;
  AlignedArray<float> scale_;
};

}  // namespace tiledraw::accel
