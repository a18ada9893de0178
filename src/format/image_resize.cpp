#include <algorithm>
#include <cmath>
#include <numbers>

#include "tiledraw/error.h"
#include "tiledraw/image.h"

namespace tiledraw {
namespace {

double sinc(double x) {
  if (x == 0.0) return 1.0;
  const double px = std::numbers::pi * x;
  return std::sin(px) / px;
}

double lanczos3(double x) { return std::abs(x) < 3.0 ? sinc(x) * sinc(x / 3.0) : 0.0; }

// For each output position along one axis: the first source index and the
// normalised weights of the source pixels that feed it.
struct Taps {
  std::vector<int64_t> first;
  std::vector<std::vector<double>> weights;
};

Taps taps(int64_t in_size, int64_t out_size) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double stretch = std::max(scale, 1.0);  // widen the filter when shrinking
  const double support = 3.0 * stretch;
  Taps t;
  for (int64_t o = 0; o < out_size; ++o) {
    const double center = (static_cast<double>(o) + 0.5) * scale;
    const int64_t begin = std::max<int64_t>(0, static_cast<int64_t>(std::floor(center - support)));
    const int64_t end = std::min<int64_t>(in_size, static_cast<int64_t>(std::ceil(center + support)));
    std::vector<double> w;
    double total = 0.0;
    for (int64_t i = begin; i < end; ++i) {
      w.push_back(lanczos3((static_cast<double>(i) + 0.5 - center) / stretch));
      total += w.back();
    }
    for (double& v : w) v /= total;
    t.first.push_back(begin);
    t.weights.push_back(std::move(w));
  }
  return t;
}

}  // namespace

Image resize_image(const Image& image, int64_t width, int64_t height) {
  if (width <= 0 || height <= 0 || image.width <= 0 || image.height <= 0) {
    throw Error("cannot resize a " + std::to_string(image.width) + " x " + std::to_string(image.height) + " image to " +
                std::to_string(width) + " x " + std::to_string(height));
  }
  if (width == image.width && height == image.height) return image;
  const int64_t c = image.channels;
  const Taps across = taps(image.width, width), down = taps(image.height, height);
  // Rows first, kept in double, then columns, rounded once at the end.
  std::vector<double> rows(static_cast<size_t>(image.height * width * c));
  for (int64_t y = 0; y < image.height; ++y) {
    for (int64_t x = 0; x < width; ++x) {
      const std::vector<double>& w = across.weights[static_cast<size_t>(x)];
      for (int64_t ch = 0; ch < c; ++ch) {
        double sum = 0.0;
        for (size_t k = 0; k < w.size(); ++k) {
          sum += w[k] * image.pixels[static_cast<size_t>((y * image.width + across.first[static_cast<size_t>(x)] +
                                                           static_cast<int64_t>(k)) * c + ch)];
        }
        rows[static_cast<size_t>((y * width + x) * c + ch)] = sum;
      }
    }
  }
  Image out{width, height, c, std::vector<uint8_t>(static_cast<size_t>(width * height * c))};
  for (int64_t y = 0; y < height; ++y) {
    const std::vector<double>& w = down.weights[static_cast<size_t>(y)];
    for (int64_t x = 0; x < width * c; ++x) {
      double sum = 0.0;
      for (size_t k = 0; k < w.size(); ++k) {
        sum += w[k] * rows[static_cast<size_t>((down.first[static_cast<size_t>(y)] + static_cast<int64_t>(k)) * width * c + x)];
      }
      out.pixels[static_cast<size_t>(y * width * c + x)] = static_cast<uint8_t>(std::clamp(std::lround(sum), 0L, 255L));
    }
  }
  return out;
}

}  // namespace tiledraw
