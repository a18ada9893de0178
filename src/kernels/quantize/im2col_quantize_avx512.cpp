#include <immintrin.h>

#include <cfloat>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/layout/transpose_avx512.h"
#include "kernels/quantize/im2col_quantize.h"

namespace tiledraw::kernels {
// The helpers' names say the ISA too (tests/check_isa_confinement.sh), where they are not inlined.
namespace avx512 {
namespace {

constexpr int kLanes = 16;
constexpr int64_t kChannelBlock = 16;  // channels per pass: 16 x kernel^2 columns, whole transposed blocks

// Sixteen consecutive output pixels, one per lane: where each one's window
// starts (its first input row and column may lie outside the image).
struct PixelLanes {
  PixelLanes(const ConvGeometry& g, int64_t first, int count) {
    alignas(64) int32_t tops[kLanes] = {}, lefts[kLanes] = {}, images[kLanes] = {};
    int64_t b = first / (g.out_height * g.out_width), oy = first / g.out_width % g.out_height, ox = first % g.out_width;
    one_row = g.stride == 1 && ox + count <= g.out_width;
    for (int i = 0; i < count; ++i) {
      tops[i] = static_cast<int32_t>(oy * g.stride - g.padding);
      lefts[i] = static_cast<int32_t>(ox * g.stride - g.padding);
      images[i] = static_cast<int32_t>(b);
      if (++ox == g.out_width) ox = 0, ++oy;
      if (oy == g.out_height) oy = 0, ++b;
    }
    live = static_cast<__mmask16>((1u << count) - 1u);
    top = _mm512_load_si512(tops);
    left = _mm512_load_si512(lefts);
    image = _mm512_load_si512(images);
    top0 = tops[0], left0 = lefts[0], image0 = images[0];
  }

  __mmask16 live;
  __m512i top, left, image;
  int64_t top0, left0, image0;
  bool one_row;  // stride 1 within one output row: each window row is one contiguous run
};

// One window position (ky, kx) for the sixteen pixels: the lanes inside the
// image, and where each lane reads relative to a channel's plane (lane 0's
// offset when the sixteen read one contiguous run, else one per lane, the
// image's offset included). Worked out once per group of pixels and window
// position, not once per channel.
struct Tap {
  __m512i index;
  int64_t offset;
  __mmask16 inside;
  bool prefetch;  // the first column of a window row, read contiguously
};

// The taps of t [batch, channels, height, width], in (ky, kx) order.
void window_taps(int64_t channels, const ConvGeometry& g, const PixelLanes& p, std::vector<Tap>& taps) {
  const int64_t plane = g.height * g.width;
  taps.clear();
  for (int64_t ky = 0; ky < g.kernel; ++ky) {
    for (int64_t kx = 0; kx < g.kernel; ++kx) {
      Tap tap{_mm512_setzero_si512(), 0, 0, false};
      if (p.one_row) {
        const int64_t row = p.top0 + ky, column = p.left0 + kx;  // of lane 0
        const int64_t begin = column < 0 ? -column : 0, end = g.width - column < kLanes ? g.width - column : kLanes;
        if (row >= 0 && row < g.height && begin < end) {
          tap.inside = static_cast<__mmask16>(((1u << end) - 1u) & ~((1u << begin) - 1u) & p.live);
          tap.offset = p.image0 * channels * plane + row * g.width + column;
          tap.prefetch = kx == 0;
        }
      } else {
        const __m512i row = _mm512_add_epi32(p.top, _mm512_set1_epi32(static_cast<int32_t>(ky)));
        const __m512i column = _mm512_add_epi32(p.left, _mm512_set1_epi32(static_cast<int32_t>(kx)));
        const __m512i zero = _mm512_setzero_si512();
        __mmask16 inside = _mm512_mask_cmpge_epi32_mask(p.live, row, zero);
        inside = _mm512_mask_cmplt_epi32_mask(inside, row, _mm512_set1_epi32(static_cast<int32_t>(g.height)));
        inside = _mm512_mask_cmpge_epi32_mask(inside, column, zero);
        inside = _mm512_mask_cmplt_epi32_mask(inside, column, _mm512_set1_epi32(static_cast<int32_t>(g.width)));
        // (image * channels * height + row) * width + column
        __m512i index = _mm512_mullo_epi32(p.image, _mm512_set1_epi32(static_cast<int32_t>(channels * plane)));
        index = _mm512_add_epi32(index, _mm512_mullo_epi32(row, _mm512_set1_epi32(static_cast<int32_t>(g.width))));
        tap.index = _mm512_add_epi32(index, column);
        tap.inside = inside;
      }
      taps.push_back(tap);
    }
  }
}

// A tap's sixteen values in one channel's plane, zero outside the image.
inline __m512 tap_value(const float* plane, const Tap& tap, bool one_row) {
  // The run two groups on: the rows of 16 channels x the window's height are
  // too many streams for the hardware prefetcher to follow.
  if (tap.prefetch) _mm_prefetch(reinterpret_cast<const char*>(plane + tap.offset + 2 * kLanes), _MM_HINT_T0);
  // Lanes outside the image are masked off, so their addresses are never read.
  if (one_row) return _mm512_maskz_loadu_ps(tap.inside, plane + tap.offset);
  return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), tap.inside, tap.index, plane, 4);
}

}  // namespace
}  // namespace avx512

void f32_qs8_im2col_quantize__avx512(const float* x, const ConvGeometry& g, int64_t first, int64_t count,
                                     const float* pixel_absmax, const QuantizedRows& out) {
  using avx512::PixelLanes, avx512::Tap, avx512::window_taps, avx512::tap_value, avx512::kLanes, avx512::kChannelBlock;
  // Lanes address x with 32-bit offsets.
  if (g.batch * g.channels * g.height * g.width >= (int64_t{1} << 31)) {
    f32_qs8_im2col_quantize__avx2(x, g, first, count, pixel_absmax, out);
    return;
  }
  const int64_t window = g.kernel * g.kernel, k = g.channels * window;
  const __m512 infinity = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
  thread_local std::vector<PixelLanes> groups;
  thread_local std::vector<Tap> taps;
  groups.clear();
  for (int64_t p0 = 0; p0 < count; p0 += kLanes) {
    groups.emplace_back(g, first + p0, static_cast<int>(count - p0 < kLanes ? count - p0 : kLanes));
  }
  // Each pixel's scale, as quantize_rows makes it: max(absmax / 127, FLT_MIN)
  // over its window, NaN (the row all zeros) when the window holds NaN or Inf.
  for (size_t i = 0; i < groups.size(); ++i) {
    const PixelLanes& p = groups[i];
    __m512 absmax = _mm512_setzero_ps();
    __mmask16 not_finite = 0;
    window_taps(1, g, p, taps);
    for (const Tap& tap : taps) {
      const __m512 a = tap_value(pixel_absmax, tap, p.one_row);
      absmax = _mm512_max_ps(absmax, a);
      not_finite |= _mm512_cmp_ps_mask(a, infinity, _CMP_NLT_UQ);
    }
    const __m512 scale = _mm512_max_ps(_mm512_div_ps(absmax, hi), _mm512_set1_ps(FLT_MIN));
    const int64_t p0 = static_cast<int64_t>(i) * kLanes;
    _mm512_mask_storeu_ps(out.scales + p0, p.live,
                          _mm512_mask_blend_ps(not_finite, scale, _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN())));
    _mm512_mask_storeu_epi32(out.sums + p0, p.live, _mm512_setzero_si512());
  }
  // Sixteen channels at a time across every pixel, so that the few input rows
  // of each channel stay in cache from one group of pixels to the next; their
  // columns transposed sixteen at a time into the pixels' rows.
  for (int64_t c0 = 0; c0 < g.channels; c0 += kChannelBlock) {
    const int64_t c1 = c0 + kChannelBlock < g.channels ? c0 + kChannelBlock : g.channels;
    for (size_t i = 0; i < groups.size(); ++i) {
      const PixelLanes& p = groups[i];
      const int64_t p0 = static_cast<int64_t>(i) * kLanes;
      const int lanes = static_cast<int>(count - p0 < kLanes ? count - p0 : kLanes);
      const __m512 stored_scale = _mm512_maskz_loadu_ps(p.live, out.scales + p0);
      const __mmask16 finite = _mm512_cmp_ps_mask(stored_scale, stored_scale, _CMP_ORD_Q);
      const __m512 scale = _mm512_mask_blend_ps(finite, _mm512_set1_ps(1.0f), stored_scale);
      __m512i sums = _mm512_maskz_loadu_epi32(p.live, out.sums + p0);
      __m512i staged[kLanes];
      int filled = 0;
      int64_t k0 = c0 * window;
      const auto write_staged = [&] {
        for (int j = filled; j < kLanes; ++j) staged[j] = _mm512_setzero_si512();
        transpose_16x16_dwords_avx512(staged);
        for (int lane = 0; lane < lanes; ++lane) {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(out.q + (p0 + lane) * out.stride + k0),
                           _mm512_cvtsepi32_epi8(staged[lane]));
        }
        k0 += kLanes;
        filled = 0;
      };
      window_taps(g.channels, g, p, taps);
      for (int64_t c = c0; c < c1; ++c) {
        const float* plane = x + c * g.height * g.width;
        for (const Tap& tap : taps) {
          const __m512 v = _mm512_div_ps(tap_value(plane, tap, p.one_row), scale);
          const __m512i q = _mm512_maskz_cvtps_epi32(finite, _mm512_min_ps(_mm512_max_ps(v, lo), hi));
          sums = _mm512_add_epi32(sums, q);
          staged[filled++] = q;
          if (filled == kLanes) write_staged();
        }
      }
      if (filled > 0) write_staged();
      _mm512_mask_storeu_epi32(out.sums + p0, p.live, sums);
    }
  }
  const int64_t k_written = (k + kLanes - 1) / kLanes * kLanes;  // in whole transposed blocks
  for (int64_t i = 0; i < count; ++i) {
    std::memset(out.q + i * out.stride + k_written, 0, static_cast<size_t>(out.stride - k_written));
  }
}

}  // namespace tiledraw::kernels
