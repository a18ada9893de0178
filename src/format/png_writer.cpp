#include <png.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "format/atomic_file.h"
#include "runtime/text.h"
#include "tiledraw/error.h"
#include "tiledraw/image.h"

namespace tiledraw {
namespace {

void append_to_buffer(png_structp png, png_bytep data, png_size_t size) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + size);
}

void flush_nothing(png_structp) {}

// A keyword libpng stores unchanged: 1 to 79 printable Latin-1 characters, no
// leading, trailing or doubled space. It would silently rewrite any other key
// (and the C string it is given ends at a NUL).
bool storable_key(const std::string& key) {
  const auto printable = [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u >= 0x20 && u <= 0x7E) || u >= 0xA1;
  };
  return !key.empty() && key.size() <= 79 && key.front() != ' ' && key.back() != ' ' &&
         key.find("  ") == std::string::npos && std::all_of(key.begin(), key.end(), printable);
}

// libpng reports errors by longjmp: keep this frame free of C++ objects that
// need destructors, and turn the jump into a return value.
bool encode(png_structp png, png_infop info, const Image& image, png_text* texts, int text_count,
            std::vector<png_bytep>& rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_IHDR(png, info, static_cast<png_uint_32>(image.width), static_cast<png_uint_32>(image.height), 8,
               image.channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (text_count > 0) png_set_text(png, info, texts, text_count);
  png_set_rows(png, info, rows.data());
  png_write_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  return true;
}

}  // namespace

Image image_from_planes(const float* planes, int64_t channels, int64_t height, int64_t width) {
  Image image{width, height, channels, std::vector<uint8_t>(static_cast<size_t>(width * height * channels))};
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t i = 0; i < width * height; ++i) {
      const float v = std::nearbyint((planes[c * width * height + i] + 1.0f) * 127.5f);
      image.pixels[static_cast<size_t>(i * channels + c)] = static_cast<uint8_t>(std::clamp(v, 0.0f, 255.0f));
    }
  }
  return image;
}

std::vector<uint8_t> encode_png(const Image& image, const std::map<std::string, std::string>& text, const std::string& path) {
  if ((image.channels != 1 && image.channels != 3) || image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != static_cast<size_t>(image.width * image.height * image.channels)) {
    throw Error(path + ": cannot write a " + std::to_string(image.width) + " x " + std::to_string(image.height) +
                " image of " + std::to_string(image.channels) + " channels as PNG");
  }
  std::vector<png_text> texts;
  for (const auto& [key, value] : text) {
    if (!storable_key(key)) {
      throw Error(path + ": cannot store a PNG text key of " + std::to_string(key.size()) +
                  " bytes: keys are 1 to 79 printable Latin-1 characters without leading, trailing or double spaces");
    }
    const bool ascii = std::all_of(value.begin(), value.end(), [](char c) { return static_cast<unsigned char>(c) < 128; });
    if (value.find('\0') != std::string::npos || !(ascii || is_utf8(value))) {
      throw Error(path + ": PNG text '" + key + "' must be ASCII or UTF-8 without NUL bytes");
    }
    png_text t{};
    t.compression = ascii ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
    t.key = const_cast<char*>(key.c_str());
    t.text = const_cast<char*>(value.c_str());
    t.text_length = ascii ? value.size() : 0;
    t.itxt_length = ascii ? 0 : value.size();
    texts.push_back(t);
  }
  std::vector<png_bytep> rows;
  for (int64_t r = 0; r < image.height; ++r) {
    rows.push_back(const_cast<png_bytep>(image.pixels.data() + r * image.width * image.channels));
  }
  std::vector<uint8_t> encoded;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    throw std::bad_alloc();
  }
  png_set_write_fn(png, &encoded, append_to_buffer, flush_nothing);
  const bool ok = encode(png, info, image, texts.data(), static_cast<int>(texts.size()), rows);
  png_destroy_write_struct(&png, &info);
  if (!ok) throw Error(path + ": libpng could not encode the image");
  return encoded;
}

void write_png(const std::string& path, const Image& image, const std::map<std::string, std::string>& text) {
  const std::vector<uint8_t> encoded = encode_png(image, text, path);
  AtomicFile file(path);
  file.write_all(encoded.data(), encoded.size());
  file.commit();
}

}  // namespace tiledraw
