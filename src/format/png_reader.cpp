#include <png.h>

#include "tiledraw/error.h"
#include "tiledraw/image.h"

namespace tiledraw {

namespace {

// Reads the PNG `begin` opened; errors name `source`.
template <typename Begin>
Image read_png_with(const std::string& path, int64_t channels, Begin begin) {
  if (channels != 1 && channels != 3) throw Error(path + ": can read PNGs as 1 or 3 channels only");
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  if (!begin(&png)) throw Error(path + ": not a readable PNG (" + png.message + ")");
  png.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  // Bounded so that a header claiming a huge image cannot exhaust memory.
  constexpr png_uint_32 kMaxSide = 1 << 14;
  if (png.width == 0 || png.height == 0 || png.width > kMaxSide || png.height > kMaxSide) {
    png_image_free(&png);
    throw Error(path + ": a PNG of " + std::to_string(png.width) + " x " + std::to_string(png.height) +
                " pixels is outside 1..16384 a side");
  }
  Image image{png.width, png.height, channels, std::vector<uint8_t>(PNG_IMAGE_SIZE(png))};
  if (!png_image_finish_read(&png, nullptr, image.pixels.data(), 0, nullptr)) {
    const std::string message = png.message;
    png_image_free(&png);
    throw Error(path + ": damaged PNG (" + message + ")");
  }
  return image;
}

}  // namespace

Image read_png(const std::string& path, int64_t channels) {
  return read_png_with(path, channels, [&](png_image* png) { return png_image_begin_read_from_file(png, path.c_str()); });
}

Image decode_png(std::span<const uint8_t> bytes, int64_t channels, const std::string& source) {
  return read_png_with(source, channels,
                       [&](png_image* png) { return png_image_begin_read_from_memory(png, bytes.data(), bytes.size()); });
}

}  // namespace tiledraw
