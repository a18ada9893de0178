#pragma once

// The AMX kernel, written once against a tile-operations policy: the hardware
// one (gemm_amx.cpp) and a scalar emulation that lets the tests check layouts,
// blocking and epilogue on machines without AMX. Include from AVX-512 (or AMX)
// translation units only.
#include <algorithm>
#include <cstdint>

#include "accel/amx/gemm_amx.h"
#include "kernels/activation/vector_math_avx512.h"

namespace tiledraw::accel::amx {

// Tiles 0-3 hold sums (C), 4-5 activation rows (A), 6-7 weight columns (B);
// each 16 rows of 64 bytes.
enum Tile : int { kC00 = 0, kC01 = 1, kC10 = 2, kC11 = 3, kA0 = 4, kA1 = 5, kB0 = 6, kB1 = 7 };

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes_per_row[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

template <class Tiles>
void amx_gemm_tasks_avx512(const AmxGemm& g, int64_t begin, int64_t end) {
  static const TileConfig config;
  Tiles::configure(&config);
  alignas(64) int32_t sums[32][32];
  const QuantizedActivation& x = *g.x;
  const PanelWeight& w = *g.weight;
  const int64_t m = x.rows();
  for (int64_t task = begin; task < end; ++task) {
    const int64_t panel = task / g.row_tasks;
    const int64_t row_begin = (task % g.row_tasks) * g.rows_per_task;
    const int64_t row_end = std::min(m, row_begin + g.rows_per_task);
    const int8_t* panel_data = w.panel(panel);
    for (int64_t row0 = row_begin; row0 < row_end; row0 += 32) {
      const int8_t* a0 = x.data() + row0 * x.stride();
      const int8_t* a1 = a0 + 16 * x.stride();
      for (int64_t half = 0; half < 2; ++half) {
        const int64_t col0 = panel * kPanel + half * 32;
        if (col0 >= w.n()) break;
        Tiles::template zero<kC00>();
        Tiles::template zero<kC01>();
        Tiles::template zero<kC10>();
        Tiles::template zero<kC11>();
        const int8_t* b = panel_data + half * 128;
        for (int64_t group = 0; group < w.k_groups(); group += 16) {
          Tiles::template load<kA0>(a0 + 4 * group, x.stride());
          Tiles::template load<kA1>(a1 + 4 * group, x.stride());
          Tiles::template load<kB0>(b + group * kGroupBytes, kGroupBytes);
          Tiles::template load<kB1>(b + group * kGroupBytes + 64, kGroupBytes);
          Tiles::template dot_signed_unsigned<kC00, kA0, kB0>();
          Tiles::template dot_signed_unsigned<kC01, kA0, kB1>();
          Tiles::template dot_signed_unsigned<kC10, kA1, kB0>();
          Tiles::template dot_signed_unsigned<kC11, kA1, kB1>();
        }
        Tiles::template store<kC00>(&sums[0][0], sizeof(sums[0]));
        Tiles::template store<kC01>(&sums[0][16], sizeof(sums[0]));
        Tiles::template store<kC10>(&sums[16][0], sizeof(sums[0]));
        Tiles::template store<kC11>(&sums[16][16], sizeof(sums[0]));
        const int64_t rows = std::min<int64_t>(32, row_end - row0);
        for (int64_t j = 0; j < 2; ++j) {
          const int64_t left = w.n() - col0 - 16 * j;
          if (left <= 0) break;
          const __mmask16 mask = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
          const __m512 col_scale = _mm512_load_ps(w.scale() + col0 + 16 * j);
          for (int64_t r = 0; r < rows; ++r) {
            const __m512i shift = _mm512_set1_epi32(x.row_sums()[row0 + r] * 128);
            const __m512 sum = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(&sums[r][16 * j]), shift));
            kernels::linear_epilogue_avx512(sum, x.scales()[row0 + r], col_scale,
                                            g.bias ? g.bias + col0 + 16 * j : nullptr, g.activation, g.accumulate,
                                            g.y + (row0 + r) * g.ldy + col0 + 16 * j, mask);
          }
        }
      }
    }
  }
  Tiles::release();
}

}  // namespace tiledraw::accel::amx
