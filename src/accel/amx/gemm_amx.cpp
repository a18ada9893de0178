#include <immintrin.h>

#include "accel/amx/gemm_amx_kernel.h"

namespace tiledraw::accel::amx {
namespace {

// GCC's tile intrinsics paste their tile numbers into assembly text, so each
// needs a literal: these expand one `if constexpr` branch per tile register.
#define TD_EACH_TILE(call)                                                                    \
  if constexpr (kTile == 0) call(0);                                                           \
  if constexpr (kTile == 1) call(1);                                                           \
  if constexpr (kTile == 2) call(2);                                                           \
  if constexpr (kTile == 3) call(3);                                                           \
  if constexpr (kTile == 4) call(4);                                                           \
  if constexpr (kTile == 5) call(5);                                                           \
  if constexpr (kTile == 6) call(6);                                                           \
  if constexpr (kTile == 7) call(7)
#define TD_ZERO(t) _tile_zero(t)
#define TD_LOAD(t) _tile_loadd(t, data, stride)
#define TD_STORE(t) _tile_stored(t, data, stride)

struct AmxTiles {
  static void configure(const TileConfig* config) { _tile_loadconfig(config); }
  static void release() { _tile_release(); }
  template <int kTile>
  static void zero() {
    TD_EACH_TILE(TD_ZERO);
  }
  template <int kTile>
  static void load(const void* data, int64_t stride) {
    TD_EACH_TILE(TD_LOAD);
  }
  template <int kTile>
  static void store(void* data, int64_t stride) {
    TD_EACH_TILE(TD_STORE);
  }
  // The kernel's four products, C00 = A0 B0, C01 = A0 B1, C10 = A1 B0, C11 = A1 B1.
  template <int kC, int kA, int kB>
  static void dot_signed_unsigned() {
    if constexpr (kC == kC00) _tile_dpbsud(0, 4, 6);
    if constexpr (kC == kC01) _tile_dpbsud(1, 4, 7);
    if constexpr (kC == kC10) _tile_dpbsud(2, 5, 6);
    if constexpr (kC == kC11) _tile_dpbsud(3, 5, 7);
    static_assert(kA == kA0 + (kC >= kC10 ? 1 : 0) && kB == kB0 + (kC % 2), "operands other than the kernel's");
  }
};

#undef TD_EACH_TILE
#undef TD_ZERO
#undef TD_LOAD
#undef TD_STORE

}  // namespace

void qs8_qc8w_gemm_f32__amx_32x32(const AmxGemm& gemm, int64_t begin, int64_t end) {
  amx_gemm_tasks_avx512<AmxTiles>(gemm, begin, end);
}

}  // namespace tiledraw::accel::amx
