#include <ft2build.h>
#include FT_FREETYPE_H
#include <unicode/utf8.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "tiledraw/error.h"
#include "tiledraw/image.h"

namespace tiledraw {
namespace {

constexpr int64_t kGap = 2;
constexpr size_t kMostLabelLines = 3;
constexpr const char* kDefaultFont = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

std::string font_path() {
  const char* env = std::getenv("TILEDRAW_FONT");
  return env && *env ? env : kDefaultFont;
}

// Code points of UTF-8 text; malformed bytes become U+FFFD (ICU's U8_NEXT gives
// a negative value for them).
std::vector<char32_t> code_points(const std::string& text) {
  std::vector<char32_t> points;
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  const int32_t length = static_cast<int32_t>(text.size());
  for (int32_t i = 0; i < length;) {
    UChar32 c;
    U8_NEXT(bytes, i, length, c);
    // A label is drawn as one paragraph: line breaks and tabs are spaces.
    const bool space = c == '\n' || c == '\r' || c == '\t';
    points.push_back(c < 0 ? U'\uFFFD' : space ? U' ' : static_cast<char32_t>(c));
  }
  return points;
}

// One face of the label font at one pixel size, for the life of one grid.
class LabelFont {
 public:
  explicit LabelFont(int64_t pixel_size) {
    const std::string path = font_path();
    FT_Library library = nullptr;
    if (FT_Init_FreeType(&library) != 0) throw Error("grid labels: cannot start FreeType");
    library_.reset(library);
    FT_Face face = nullptr;
    if (FT_New_Face(library, path.c_str(), 0, &face) != 0) {
      throw Error("grid labels: cannot read the font " + path +
                  " (install Debian's fonts-dejavu-core, or set TILEDRAW_FONT to a TrueType or OpenType file)");
    }
    face_.reset(face);
    if (FT_Set_Pixel_Sizes(face, 0, static_cast<FT_UInt>(pixel_size)) != 0) {
      throw Error("grid labels: " + path + " has no " + std::to_string(pixel_size) + " px size");
    }
  }

  int64_t line_height() const { return face_->size->metrics.height >> 6; }
  int64_t ascender() const { return face_->size->metrics.ascender >> 6; }

  // Pen movement in pixels between two glyphs beyond the first's advance.
  int64_t kerning(char32_t previous, char32_t c) const {
    if (previous == 0 || !FT_HAS_KERNING(face_.get())) return 0;
    FT_Vector kerning{};
    FT_Get_Kerning(face_.get(), FT_Get_Char_Index(face_.get(), previous), FT_Get_Char_Index(face_.get(), c),
                   FT_KERNING_DEFAULT, &kerning);
    return kerning.x >> 6;
  }

  int64_t width(const std::vector<char32_t>& text) {
    int64_t w = 0;
    for (size_t i = 0; i < text.size(); ++i) {
      w += kerning(i ? text[i - 1] : 0, text[i]);
      if (FT_Load_Char(face_.get(), text[i], FT_LOAD_DEFAULT) == 0) w += face_->glyph->advance.x >> 6;
    }
    return w;
  }

  // Draws white text with its baseline at `baseline`, clipped to the image;
  // where glyphs overlap the larger coverage wins, as the ground is black.
  void draw(Image& image, const std::vector<char32_t>& text, int64_t left, int64_t baseline) {
    int64_t pen = left;
    for (size_t i = 0; i < text.size(); ++i) {
      pen += kerning(i ? text[i - 1] : 0, text[i]);
      if (FT_Load_Char(face_.get(), text[i], FT_LOAD_RENDER) != 0) continue;
      const FT_GlyphSlot slot = face_->glyph;
      const FT_Bitmap& bitmap = slot->bitmap;
      for (unsigned row = 0; row < bitmap.rows; ++row) {
        const int64_t y = baseline - slot->bitmap_top + row;
        if (y < 0 || y >= image.height) continue;
        for (unsigned col = 0; col < bitmap.width; ++col) {
          const int64_t x = pen + slot->bitmap_left + col;
          if (x < 0 || x >= image.width) continue;
          const uint8_t coverage = bitmap.buffer[row * bitmap.pitch + col];
          uint8_t* pixel = &image.pixels[static_cast<size_t>((y * image.width + x) * image.channels)];
          for (int64_t c = 0; c < image.channels; ++c) pixel[c] = std::max(pixel[c], coverage);
        }
      }
      pen += slot->advance.x >> 6;
    }
  }

  // The text broken into at most `max_lines` lines no wider than `max_width`:
  // at spaces where it can, inside a word only when the word alone is too
  // wide; what does not fit is cut, and the last line ends in an ellipsis.
  std::vector<std::vector<char32_t>> wrap(const std::vector<char32_t>& text, int64_t max_width, size_t max_lines) {
    std::vector<std::vector<char32_t>> lines;
    std::vector<char32_t> line;
    size_t i = 0;
    while (i < text.size()) {
      size_t word_end = i;
      while (word_end < text.size() && text[word_end] != U' ') ++word_end;
      std::vector<char32_t> candidate = line;
      if (!candidate.empty()) candidate.push_back(U' ');
      candidate.insert(candidate.end(), text.begin() + static_cast<std::ptrdiff_t>(i),
                       text.begin() + static_cast<std::ptrdiff_t>(word_end));
      if (width(candidate) <= max_width) {
        line = std::move(candidate);
      } else if (!line.empty()) {
        lines.push_back(std::move(line));
        line.clear();
        continue;  // the same word again, on a fresh line
      } else {
        for (size_t j = i; j < word_end; ++j) {
          line.push_back(text[j]);
          if (line.size() > 1 && width(line) > max_width) {
            line.pop_back();
            lines.push_back(std::move(line));
            line = {text[j]};
          }
        }
      }
      i = word_end;
      while (i < text.size() && text[i] == U' ') ++i;
    }
    if (!line.empty()) lines.push_back(std::move(line));
    if (lines.size() > max_lines) {
      lines.resize(max_lines);
      std::vector<char32_t>& last = lines.back();
      last.push_back(U'\u2026');
      while (last.size() > 1 && width(last) > max_width) last.erase(last.end() - 2);
    }
    return lines;
  }

 private:
  struct LibraryDone {
    void operator()(FT_Library library) const { FT_Done_FreeType(library); }
  };
  struct FaceDone {
    void operator()(FT_Face face) const { FT_Done_Face(face); }
  };
  // The face is declared last so that it is released before its library.
  std::unique_ptr<std::remove_pointer_t<FT_Library>, LibraryDone> library_;
  std::unique_ptr<std::remove_pointer_t<FT_Face>, FaceDone> face_;
};

}  // namespace

void check_label_font() { LabelFont font(12); }

Image image_grid(const std::vector<Image>& images, int64_t columns, const std::vector<std::string>& row_labels) {
  if (images.empty() || columns <= 0) throw Error("image grid: needs images and a positive column count");
  const Image& first = images.front();
  for (const Image& image : images) {
    if (image.width != first.width || image.height != first.height || image.channels != first.channels) {
      throw Error("image grid: images differ in size or channels");
    }
  }
  const int64_t count = static_cast<int64_t>(images.size());
  const int64_t rows = (count + columns - 1) / columns, cols = std::min(columns, count);
  if (!row_labels.empty() && static_cast<int64_t>(row_labels.size()) != rows) {
    throw Error("image grid: " + std::to_string(row_labels.size()) + " row labels for " + std::to_string(rows) + " rows");
  }
  const int64_t width = cols * first.width + (cols - 1) * kGap;

  // Every row gets a band as tall as its longest label needs, so that rows line up.
  // The type grows with the images (A1111's grids scale it the same way) but
  // stays readable on small ones.
  std::unique_ptr<LabelFont> font;
  std::vector<std::vector<std::vector<char32_t>>> label_lines;
  int64_t band = 0, margin = 0;
  if (!row_labels.empty()) {
    const int64_t pixel_size = std::max<int64_t>(12, (first.width + first.height) / 40);
    font = std::make_unique<LabelFont>(pixel_size);
    margin = pixel_size / 4;
    size_t most_lines = 1;
    for (const std::string& label : row_labels) {
      label_lines.push_back(font->wrap(code_points(label), width - 2 * margin, kMostLabelLines));
      most_lines = std::max(most_lines, label_lines.back().size());
    }
    band = static_cast<int64_t>(most_lines) * font->line_height() + 2 * margin;
  }

  const int64_t row_height = band + first.height;
  Image grid{width, rows * row_height + (rows - 1) * kGap, first.channels, {}};
  grid.pixels.assign(static_cast<size_t>(grid.width * grid.height * grid.channels), 0);
  for (int64_t r = 0; r < static_cast<int64_t>(label_lines.size()); ++r) {
    int64_t baseline = r * (row_height + kGap) + margin + font->ascender();
    for (const auto& line : label_lines[static_cast<size_t>(r)]) {
      font->draw(grid, line, margin, baseline);
      baseline += font->line_height();
    }
  }
  const int64_t row_bytes = first.width * first.channels;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t left = (i % columns) * (first.width + kGap), top = (i / columns) * (row_height + kGap) + band;
    for (int64_t y = 0; y < first.height; ++y) {
      std::copy_n(images[static_cast<size_t>(i)].pixels.begin() + y * row_bytes, row_bytes,
                  grid.pixels.begin() + ((top + y) * grid.width + left) * grid.channels);
    }
  }
  return grid;
}

}  // namespace tiledraw
