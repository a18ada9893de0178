// write_png with hostile text: keys and values of any bytes (NUL, non-UTF-8,
// empty, longer than the 79 bytes PNG allows a keyword, values of a few KB) on
// a tiny image. write_png either refuses them with tiledraw::Error or keeps
// its word (include/tiledraw/image.h): the file reads back as the same image,
// and every key and value comes back byte for byte, ASCII values in tEXt
// chunks and others in iTXt chunks as UTF-8. A libpng error or abort, a crash
// or a value that does not come back is a bug.
//
// Input layout (fuzz/make_corpus.py writes seeds in it): width, height and
// channel bytes, the pixels, an entry count, then per entry a key length byte,
// the key, a two-byte value length and the value.

#include <png.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <optional>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "tiledraw/error.h"
#include "tiledraw/image.h"

namespace {

constexpr int64_t kChannels[] = {1, 3, 1, 3, 2};  // 2 is not writable: an Error
constexpr size_t kMaxEntries = 4;
constexpr size_t kMaxValueBytes = 4096;

struct TextChunk {
  std::string key;
  int compression;  // PNG_TEXT_COMPRESSION_NONE for tEXt, PNG_ITXT_COMPRESSION_NONE for iTXt...
  std::string text;
};

bool is_ascii(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past U+10FFFF.
bool is_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto byte = [&](size_t at) { return at < s.size() ? static_cast<unsigned char>(s[at]) : 0u; };
    const unsigned lead = byte(i);
    size_t length = 0;
    unsigned low = 0x80, high = 0xBF;  // the range of the second byte
    if (lead < 0x80) {
      length = 1;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) low = 0xA0;
      if (lead == 0xED) high = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) low = 0x90;
      if (lead == 0xF4) high = 0x8F;
    } else {
      return false;
    }
    for (size_t k = 1; k < length; ++k) {
      const unsigned b = byte(i + k);
      if (k == 1 ? (b < low || b > high) : (b < 0x80 || b > 0xBF)) return false;
    }
    i += length;
  }
  return true;
}

void ignore_warning(png_structp, png_const_charp) {}

// libpng reports errors by longjmp: this frame holds nothing that needs a
// destructor, and turns the jump into a return value.
bool read_all(png_structp png, png_infop info, png_textp* text, int* count) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  *count = png_get_text(png, info, text, nullptr);
  return true;
}

// Every text chunk of the file as libpng reads it, or nothing if libpng fails.
std::optional<std::vector<TextChunk>> text_chunks(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  fuzz::check(file != nullptr, "the PNG written is not there");
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, ignore_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  fuzz::check(info != nullptr, "libpng could not allocate its read structures");
  png_init_io(png, file);
  png_textp text = nullptr;
  int count = 0;
  std::optional<std::vector<TextChunk>> chunks;
  if (read_all(png, info, &text, &count)) {
    chunks.emplace();
    for (int i = 0; i < count; ++i) {
      const size_t length = text[i].compression >= PNG_ITXT_COMPRESSION_NONE ? text[i].itxt_length : text[i].text_length;
      chunks->push_back({text[i].key, text[i].compression, std::string(text[i].text, length)});
    }
  }
  png_destroy_read_struct(&png, &info, nullptr);
  std::fclose(file);
  return chunks;
}

void check_written(const std::string& path, const tiledraw::Image& image, const std::map<std::string, std::string>& text) {
  const tiledraw::Image back = tiledraw::read_png(path, image.channels);
  fuzz::check(back.width == image.width && back.height == image.height && back.pixels == image.pixels,
              "the image does not read back as written");

  const std::optional<std::vector<TextChunk>> chunks = text_chunks(path);
  fuzz::check(chunks.has_value(), "libpng cannot read the PNG written");
  std::set<std::string> keys;
  for (const TextChunk& chunk : *chunks) {
    const auto it = text.find(chunk.key);
    fuzz::check(it != text.end(), "a text chunk's key is not one that was given (changed by the writer?)");
    fuzz::check(keys.insert(chunk.key).second, "two text chunks with one key");
    fuzz::check(chunk.text == it->second, "a text value does not read back as given");
    const bool ascii = is_ascii(it->second);
    fuzz::check(chunk.compression == (ascii ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE),
                "an ASCII value not in tEXt, or another not in uncompressed iTXt");
    fuzz::check(ascii || is_utf8(chunk.text), "an iTXt value that is not UTF-8");
  }
  fuzz::check(keys.size() == text.size(), "an entry without its text chunk");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::ScratchDir scratch;
  static const std::string path = scratch.file("out.png");

  fuzz::ByteReader in(data, size);
  tiledraw::Image image;
  image.width = 1 + static_cast<int64_t>(in.below(4));
  image.height = 1 + static_cast<int64_t>(in.below(4));
  image.channels = in.pick(kChannels);
  const std::string pixels = in.bytes(static_cast<size_t>(image.width * image.height * image.channels));
  image.pixels.assign(pixels.begin(), pixels.end());
  image.pixels.resize(static_cast<size_t>(image.width * image.height * image.channels));

  std::map<std::string, std::string> text;
  for (size_t entries = in.below(kMaxEntries + 1); entries > 0; --entries) {
    std::string key = in.bytes(in.byte());
    text[std::move(key)] = in.bytes(in.u16() % (kMaxValueBytes + 1));
  }

  try {
    tiledraw::write_png(path, image, text);
  } catch (const tiledraw::Error& error) {
    fuzz::refused(error);  // a key, value or image PNG cannot hold
    return 0;
  }
  check_written(path, image, text);
  return 0;
}
