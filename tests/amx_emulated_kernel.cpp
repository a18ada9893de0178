// Compiled with AVX-512 flags: the AMX kernel's epilogue needs them.
#include <cstring>

#include "accel/amx/gemm_amx_kernel.h"
#include "amx_emulation.h"

namespace tiledraw::test {
namespace {

// The eight 1 KiB tile registers and the AMX-INT8 semantics, in plain C++.
struct EmulatedTiles {
  static thread_local uint8_t tiles[8][16][64];

  static void configure(const accel::amx::TileConfig* config) {
    for (int t = 0; t < 8; ++t) {
      if (config->rows[t] != 16 || config->bytes_per_row[t] != 64) std::abort();  // the kernel assumes full tiles
    }
  }
  static void release() {}
  template <int kTile>
  static void zero() {
    std::memset(tiles[kTile], 0, sizeof tiles[kTile]);
  }
  template <int kTile>
  static void load(const void* data, int64_t stride) {
    for (int r = 0; r < 16; ++r) std::memcpy(tiles[kTile][r], static_cast<const uint8_t*>(data) + r * stride, 64);
  }
  template <int kTile>
  static void store(void* data, int64_t stride) {
    for (int r = 0; r < 16; ++r) std::memcpy(static_cast<uint8_t*>(data) + r * stride, tiles[kTile][r], 64);
  }
  // TDPBSUD: C[m][n] += sum over 16 rows g of B and 4 bytes i of A[m][4g + i] (signed) * B[g][4n + i] (unsigned).
  template <int kC, int kA, int kB>
  static void dot_signed_unsigned() {
    for (int m = 0; m < 16; ++m) {
      for (int n = 0; n < 16; ++n) {
        int32_t sum;
        std::memcpy(&sum, &tiles[kC][m][4 * n], 4);
        for (int g = 0; g < 16; ++g) {
          for (int i = 0; i < 4; ++i) {
            sum += int32_t{static_cast<int8_t>(tiles[kA][m][4 * g + i])} * int32_t{tiles[kB][g][4 * n + i]};
          }
        }
        std::memcpy(&tiles[kC][m][4 * n], &sum, 4);
      }
    }
  }
};

thread_local uint8_t EmulatedTiles::tiles[8][16][64];

}  // namespace

accel::amx::AmxTasksFn emulated_amx_tasks() { return accel::amx::amx_gemm_tasks_avx512<EmulatedTiles>; }

}  // namespace tiledraw::test
