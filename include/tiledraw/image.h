#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace tiledraw {

// 8-bit pixels, rows top to bottom, channels interleaved: 1 (gray) or 3 (RGB).
struct Image {
  int64_t width = 0;
  int64_t height = 0;
  int64_t channels = 0;
  std::vector<uint8_t> pixels;
};

// A model's output planes [channels, height, width] in [-1, 1] as pixels:
// (x + 1) / 2 * 255, rounded and clamped.
Image image_from_planes(const float* planes, int64_t channels, int64_t height, int64_t width);

// Images of one size and channel count laid out in rows of `columns`, with
// 2 pixels of black between them. With `row_labels` (one per row), each row
// gets a black band above it with its label in white, wrapped to the row's
// width in up to three lines; the font is DejaVu Sans (Debian's
// fonts-dejavu-core) or the file $TILEDRAW_FONT names.
Image image_grid(const std::vector<Image>& images, int64_t columns, const std::vector<std::string>& row_labels = {});
// Throws the error image_grid would give with labels when the font cannot be
// read: a program checks before a long generation rather than after it.
void check_label_font();

// The image resampled to width x height with a Lanczos-3 filter, widened by
// the scale when shrinking so that every source pixel counts (as PIL's
// Image.resize with LANCZOS, which the A1111 web UI's "just resize" uses).
Image resize_image(const Image& image, int64_t width, int64_t height);

// Reads a PNG as 8-bit gray (channels 1) or RGB (3), converting whatever it stores.
Image read_png(const std::string& path, int64_t channels);
// The same from a PNG in memory; errors name `source` (where the bytes came from).
Image decode_png(std::span<const uint8_t> png, int64_t channels, const std::string& source);

// Writes a PNG with text chunks (A1111's "parameters" carries how an image was
// made). ASCII values go in tEXt chunks, others in UTF-8 iTXt. Written through
// a temporary file like every file tiledraw writes.
void write_png(const std::string& path, const Image& image, const std::map<std::string, std::string>& text = {});
// The PNG write_png would write, in memory; errors name `name`.
std::vector<uint8_t> encode_png(const Image& image, const std::map<std::string, std::string>& text, const std::string& name);

}  // namespace tiledraw
