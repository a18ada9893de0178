// PNG output, read back with libpng's own reader.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <png.h>

#include <cstdio>

#include "test_util.h"
#include "tiledraw/error.h"
#include "tiledraw/image.h"

namespace tiledraw {
namespace {

struct Decoded {
  int64_t width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;
  std::map<std::string, std::string> text;
};

bool read_png(const std::string& path, Decoded& out) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    std::fclose(f);
    return false;
  }
  png_init_io(png, f);
  png_read_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  out.width = png_get_image_width(png, info);
  out.height = png_get_image_height(png, info);
  out.channels = png_get_channels(png, info);
  png_bytepp rows = png_get_rows(png, info);
  for (int64_t r = 0; r < out.height; ++r) out.pixels.insert(out.pixels.end(), rows[r], rows[r] + out.width * out.channels);
  png_textp texts = nullptr;
  const int count = png_get_text(png, info, &texts, nullptr);
  for (int i = 0; i < count; ++i) out.text[texts[i].key] = std::string(texts[i].text, texts[i].itxt_length ? texts[i].itxt_length : texts[i].text_length);
  png_destroy_read_struct(&png, &info, nullptr);
  std::fclose(f);
  return true;
}

TEST(Png, WritesPixelsAndParametersThatLibpngReadsBack) {
  test::TempDir dir;
  // Two planes of 3 x 2 in [-1, 1]: -1 -> 0, 0 -> 128 (127.5 rounds to even), 1 -> 255; beyond clamps.
  const std::vector<float> planes = {-1, 0, 1, -2, 2, 0.5f,    // channel 0
                                     1, 1, 1, 1, 1, 1,         // channel 1
                                     -1, -1, -1, -1, -1, -1};  // channel 2
  const Image rgb = image_from_planes(planes.data(), 3, 2, 3);
  EXPECT_EQ(std::vector<uint8_t>(rgb.pixels.begin(), rgb.pixels.begin() + 6), (std::vector<uint8_t>{0, 255, 0, 128, 255, 0}));
  const std::string parameters = "class 207, Steps: 50, Sampler: ddim, CFG scale: 4, Seed: 42, Size: 256x256";
  write_png(dir.file("rgb.png"), rgb, {{"parameters", parameters}, {"note", "caf\u00e9"}});
  Decoded d;
  ASSERT_TRUE(read_png(dir.file("rgb.png"), d));
  EXPECT_EQ(d.width, 3);
  EXPECT_EQ(d.height, 2);
  EXPECT_EQ(d.channels, 3);
  EXPECT_EQ(d.pixels, rgb.pixels);
  EXPECT_EQ(d.text["parameters"], parameters);
  EXPECT_EQ(d.text["note"], "caf\u00e9");

  const Image gray = image_from_planes(planes.data(), 1, 2, 3);
  write_png(dir.file("gray.png"), gray);
  Decoded g;
  ASSERT_TRUE(read_png(dir.file("gray.png"), g));
  EXPECT_EQ(g.channels, 1);
  EXPECT_EQ(g.pixels, (std::vector<uint8_t>{0, 128, 255, 0, 255, 191}));
}

TEST(Png, RefusesImpossibleImagesAndLeavesNoFile) {
  test::TempDir dir;
  Image bad{2, 2, 4, std::vector<uint8_t>(16)};
  EXPECT_THROW(write_png(dir.file("bad.png"), bad), Error);
  const Image ok{1, 1, 1, {7}};
  EXPECT_THAT([&] { write_png(dir.file("missing/x.png"), ok); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("cannot create a file there")));
  EXPECT_TRUE(dir.entries().empty());
}

TEST(ImageResize, LanczosKeepsConstantsAveragesPairsWhenHalvingAndCommutesWithMirroring) {
  const Image flat{5, 3, 3, std::vector<uint8_t>(45, 77)};
  for (const auto& [w, h] : {std::pair{11, 7}, std::pair{2, 1}, std::pair{5, 3}, std::pair{64, 64}}) {
    const Image out = resize_image(flat, w, h);
    EXPECT_EQ(out.width, w);
    EXPECT_EQ(out.height, h);
    EXPECT_EQ(out.pixels, std::vector<uint8_t>(static_cast<size_t>(w * h * 3), 77)) << w << " x " << h;
  }
  // Halving: each output pixel is centred between two inputs, whose weights
  // lanczos3(+-0.25) are equal; the filter, twice as wide, reaches 6 pixels out.
  EXPECT_EQ(resize_image(Image{2, 1, 1, {10, 30}}, 1, 1).pixels, (std::vector<uint8_t>{20}));
  // Mirroring the input mirrors the output, shrinking or growing.
  Image picture{9, 6, 3, std::vector<uint8_t>(9 * 6 * 3)};
  for (size_t i = 0; i < picture.pixels.size(); ++i) picture.pixels[i] = static_cast<uint8_t>((i * 97 + 13) % 251);
  const auto mirrored = [](const Image& image) {
    Image out = image;
    for (int64_t y = 0; y < image.height; ++y) {
      for (int64_t x = 0; x < image.width; ++x) {
        for (int64_t c = 0; c < 3; ++c) {
          out.pixels[static_cast<size_t>((y * image.width + x) * 3 + c)] =
              image.pixels[static_cast<size_t>((y * image.width + image.width - 1 - x) * 3 + c)];
        }
      }
    }
    return out;
  };
  for (const auto& [w, h] : {std::pair{4, 3}, std::pair{20, 13}}) {
    EXPECT_EQ(resize_image(mirrored(picture), w, h).pixels, mirrored(resize_image(picture, w, h)).pixels);
  }
  const Image step{8, 1, 1, {0, 0, 0, 0, 200, 200, 200, 200}};
  EXPECT_THROW(resize_image(step, 0, 4), Error);
}

// Ink of a grid's rows y0..y1 (exclusive): its bounding box, or an empty one.
struct Ink {
  int64_t left = INT64_MAX, right = -1, top = INT64_MAX, bottom = -1;
  bool gray = true;  // every inked pixel has equal channels: white text, anti-aliased
  int64_t width() const { return right < left ? 0 : right - left + 1; }
  int64_t height() const { return bottom < top ? 0 : bottom - top + 1; }
};

Ink ink_in(const Image& image, int64_t y0, int64_t y1) {
  Ink ink;
  for (int64_t y = y0; y < y1; ++y) {
    for (int64_t x = 0; x < image.width; ++x) {
      const uint8_t* p = &image.pixels[static_cast<size_t>((y * image.width + x) * image.channels)];
      if (p[0] == 0 && p[image.channels - 1] == 0) continue;
      ink.left = std::min(ink.left, x), ink.right = std::max(ink.right, x);
      ink.top = std::min(ink.top, y), ink.bottom = std::max(ink.bottom, y);
      ink.gray = ink.gray && p[0] == p[image.channels - 1];
    }
  }
  return ink;
}

Image flat_image(int64_t size, uint8_t value) { return Image{size, size, 3, std::vector<uint8_t>(size_t(size * size * 3), value)}; }

// Checks that `image` sits in the grid with its top-left corner at (left, top).
void expect_cell(const Image& grid, const Image& image, int64_t left, int64_t top, const std::string& what) {
  for (int64_t y = 0; y < image.height; ++y) {
    for (int64_t x = 0; x < image.width * 3; ++x) {
      ASSERT_EQ(grid.pixels[size_t((top + y) * grid.width * 3 + left * 3 + x)], image.pixels[size_t(y * image.width * 3 + x)])
          << what << " at " << x / 3 << ", " << y;
    }
  }
}

TEST(ImageGrid, LaysOutRowsTwoPixelsApartAndHeadsEachWithItsLabel) {
  std::vector<Image> images;
  for (uint8_t i = 1; i <= 5; ++i) images.push_back(flat_image(32, static_cast<uint8_t>(40 * i)));
  const Image plain = image_grid(images, 3);
  EXPECT_EQ(plain.width, 3 * 32 + 2 * 2);
  EXPECT_EQ(plain.height, 2 * 32 + 2);
  for (int64_t i = 0; i < 5; ++i) expect_cell(plain, images[size_t(i)], (i % 3) * 34, (i / 3) * 34, "unlabelled " + std::to_string(i));
  EXPECT_EQ(ink_in(plain, 32, 34).width(), 0) << "the gap between rows is black";
  EXPECT_EQ(ink_in(plain, 34, 66).right, 34 + 31) << "the missing sixth cell is black";

  // DejaVu Sans has 2048 units per em, ascender 1901, descender -483 and no
  // line gap (its hhea table): at the 12 px the labels of 32-pixel images
  // use, a line is 2384 / 2048 x 12 = 13.97, 14 px; with a 3 px margin above
  // and below, each band is 20 px.
  const Image labelled = image_grid(images, 3, {"Hamburg", ""});
  const int64_t band = 20, row = band + 32 + 2;
  ASSERT_EQ(labelled.height, 2 * row - 2);
  for (int64_t i = 0; i < 5; ++i) {
    expect_cell(labelled, images[size_t(i)], (i % 3) * 34, (i / 3) * row + band, "labelled " + std::to_string(i));
  }
  const Ink label = ink_in(labelled, 0, band);
  EXPECT_TRUE(label.gray);
  EXPECT_EQ(label.left, 3 + 1) << "H's stem starts one pixel into its box";
  EXPECT_EQ(label.top, 3 + 2) << "the cap height (1493 units, 8.75 px) under the ascender (11.14 px)";
  EXPECT_GE(label.height(), 12) << "'b' rises above the caps and 'g' descends below the baseline";
  EXPECT_GT(label.width(), 40);
  EXPECT_LT(label.width(), 70);
  EXPECT_EQ(ink_in(labelled, row, row + band).width(), 0) << "an empty label leaves its band black";

  // Glyph shapes: a capital I is a tall bar, a dash a flat one; more letters take more room.
  const auto ink_of = [](const std::string& text) { return ink_in(image_grid({flat_image(32, 0)}, 1, {text}), 0, 20); };
  EXPECT_GE(ink_of("I").height(), 8);
  EXPECT_LE(ink_of("I").width(), 2);
  EXPECT_LE(ink_of("-").height(), 2);
  EXPECT_GE(ink_of("-").width(), 3);
  EXPECT_GT(ink_of("WWW").width(), ink_of("iii").width() + 10);
  EXPECT_GT(ink_of("\xc3\x89").width(), 0) << "UTF-8 text, here an E with acute";
  EXPECT_GT(ink_of("\xff\xfe").width(), 0) << "bytes that are not UTF-8 are drawn as replacement characters";
}

TEST(ImageGrid, WrapsLongLabelsAtSpacesInUpToThreeLinesWithinTheRow) {
  // Two rows of 100 px, 94 px inside the margins: "a dark ankle boot" is
  // some 110 px wide at 12 px.
  const Image wrapped = image_grid(std::vector<Image>(6, flat_image(32, 0)), 3, {"a dark ankle boot", "boot"});
  EXPECT_EQ(wrapped.height, 2 * (2 * 14 + 6 + 32) + 2) << "both bands as tall as the longest label's two lines";
  const Ink first = ink_in(wrapped, 0, 34);
  EXPECT_GE(first.left, 3);
  EXPECT_LE(first.right, 100 - 3);
  EXPECT_GT(first.right, 100 / 2) << "the first line holds as many words as fit";
  EXPECT_GT(ink_in(wrapped, 3 + 14, 3 + 28).width(), 0) << "a second line";

  // Rows of 66 px, 60 px inside the margins.
  const Image capped = image_grid(std::vector<Image>(4, flat_image(32, 0)), 2, {std::string(400, 'x'), "a b c d e f g h i j k l m n o p q r s t u v w x y z"});
  EXPECT_EQ(capped.height, 2 * (3 * 14 + 6 + 32) + 2) << "at most three lines";
  EXPECT_LE(ink_in(capped, 0, capped.height).right, 66 - 3) << "a word wider than the row breaks inside itself";
}

TEST(ImageGrid, RefusesMismatchedLabelsAndNamesAMissingFont) {
  const std::vector<Image> images(4, flat_image(8, 0));
  EXPECT_THAT([&] { image_grid(images, 2, {"one"}); },
              testing::ThrowsMessage<Error>(testing::HasSubstr("image grid: 1 row labels for 2 rows")));
  EXPECT_THROW(image_grid({flat_image(8, 0), flat_image(9, 0)}, 2), Error);
  test::ScopedEnvironment env;
  env.set("TILEDRAW_FONT", "/nonexistent/font.ttf");
  EXPECT_THAT([&] { image_grid(images, 2, {"one", "two"}); },
              testing::ThrowsMessage<Error>(testing::HasSubstr("cannot read the font /nonexistent/font.ttf")));
  EXPECT_THROW(check_label_font(), Error);
  EXPECT_NO_THROW(image_grid(images, 2)) << "no labels, no font needed";
}

}  // namespace
}  // namespace tiledraw
